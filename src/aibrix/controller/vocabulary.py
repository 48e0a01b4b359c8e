"""The names the controller shares with the API server, pods and people: the ModelAdapter's group and kind, its
finalizer, and the labels and annotations it reads on pods and writes on Services."""

GROUP, VERSION, KIND, PLURAL = "model.aibrix.ai", "v1alpha1", "ModelAdapter", "modeladapters"
FINALIZER = "adapter.model.aibrix.ai/finalizer"
ENABLED_LABEL = "adapter.model.aibrix.ai/enabled"
MODEL_LABEL = "model.aibrix.ai/name"
ADAPTER_LABEL = "adapter.model.aibrix.ai/name"
BASE_MODEL_ANNOTATION = "model.aibrix.ai/base-model"  # on the adapter's Service, for gateways and people
PORT_LABEL = "model.aibrix.ai/port"
METRIC_PORT_LABEL = "model.aibrix.ai/metric-port"  # the engine serves metrics on another port
ENGINE_LABEL = "model.aibrix.ai/engine"
RUNTIME_CONTAINER = "aibrix-runtime"
MAX_RANK_ANNOTATION = "adapter.model.aibrix.ai/max-lora-rank"  # on an engine pod: overrides --max-lora-rank
MAX_ADAPTERS_ANNOTATION = "adapter.model.aibrix.ai/max-adapters"  # on an engine pod: adapters it may hold
