"""vLLM: runtime LoRA through /v1/load_lora_adapter and /v1/unload_lora_adapter.

Facts (vllm-project/vllm): the routes exist only with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; success is a
plain-text 200 ("Success: LoRA adapter '<name>' added successfully."); errors are an ErrorResponse, flat
``{"object":"error","message","type","code"}`` up to ~0.9 and nested ``{"error":{...}}`` after
(vllm/entrypoints/openai/serving_models.py, vllm/entrypoints/openai/models/serving.py). A duplicate load is 400
"... has already been loaded"; unloading an unknown name is 404 NotFoundError (400 InvalidUserInput in 0.6.x).

Any other exception of ``add_lora`` is a 500 ``InternalServerError`` carrying only ``str(exc)``
(vllm/entrypoints/openai/models/serving.py, 0.32). Most of them are the adapter's fault and never pass: a rank above
``--max-lora-rank`` or a bias (lora/peft_helper.py ``validate_legal``), a file given as the folder (``open`` of
``<path>/adapter_config.json`` raises NotADirectoryError), a bad config or weights (lora/lora_model.py,
lora/utils.py). Those become 422, so the controller fails fast with the reason instead of retrying from pod to pod.
"""

from __future__ import annotations

from aibrix.engines.base import Engine, engine_error, error_message
from aibrix.engines.client import Response
from aibrix.engines.errors import AdapterAlreadyLoaded, AdapterNotFound, AdapterRejected, NotSupported, RankTooHigh

ROUTE_MISSING = {"detail": "Not Found"}
# Fragments of add_lora's messages that say the adapter itself cannot be loaded by this engine (see above).
ADAPTER_FAULTS = (
    "is greater than max_lora_rank",
    "bias is not supported",
    "must be a positive integer",
    "Missing required configuration",
    "Not a directory",
    "Is a directory",
    "doesn't contain tensors",
    "is unsupported LoRA weight",
    "is missing weight",
    "is not supported for LoRA",
    "Expecting value",  # adapter_config.json is not JSON
    "Permission denied",
    "File name too long",
)


class VLLMEngine(Engine):
    name = "vllm"
    lists_adapters = True

    replaces_in_place = True  # load_inplace (serve/lora/protocol.py), in 0.32

    async def load_adapter(self, lora_name: str, lora_path: str, *, auth: str | None = None) -> str:
        return await self._load(lora_name, lora_path, auth=auth, in_place=False)

    async def replace_adapter(self, lora_name: str, new_path: str, old_path: str, *, auth: str | None = None) -> str:
        """One load with load_inplace: vLLM swaps the weights under its lock for the name, with no gap. A new path,
        never the old one: vLLM keeps prefix-cache blocks computed with the old weights for the same path
        (entrypoints/openai/models/serving.py warns so)."""
        return await self._load(lora_name, new_path, auth=auth, in_place=True)

    async def _load(self, lora_name: str, lora_path: str, *, auth: str | None, in_place: bool) -> str:
        body: dict[str, object] = {"lora_name": lora_name, "lora_path": lora_path}
        if in_place:
            body["load_inplace"] = True
        response = await self.client.request("POST", "/v1/load_lora_adapter", json=body, auth=auth)
        if response.is_success:
            return response.text
        self._raise_if_route_missing(response)
        message = error_message(response)
        if response.status_code == 400 and "has already been" in message:
            raise AdapterAlreadyLoaded(message)
        if response.status_code == 500 and "greater than max_lora_rank" in message:  # lora/peft_helper.py
            raise RankTooHigh(f"vllm cannot load adapter {lora_name!r} from {lora_path!r}: {message}")
        if response.status_code == 500 and any(fault in message for fault in ADAPTER_FAULTS):
            raise AdapterRejected(f"vllm cannot load adapter {lora_name!r} from {lora_path!r}: {message}")
        raise engine_error(response)

    async def unload_adapter(self, lora_name: str, *, auth: str | None = None) -> str:
        response = await self.client.request(
            "POST", "/v1/unload_lora_adapter", json={"lora_name": lora_name}, auth=auth
        )
        if response.is_success:
            return response.text
        self._raise_if_route_missing(response)
        message = error_message(response)
        if response.status_code in (400, 404) and "cannot be found" in message:
            raise AdapterNotFound(message)
        raise engine_error(response)

    @staticmethod
    def _raise_if_route_missing(response: Response) -> None:
        if response.status_code == 404 and _json_or_none(response) == ROUTE_MISSING:
            raise NotSupported(
                "vllm does not expose the LoRA adapter API: start it with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
                "and --enable-lora"
            )


def _json_or_none(response: Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
