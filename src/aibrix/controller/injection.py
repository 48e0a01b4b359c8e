"""The sidecar injection webhook's decision: the JSON-patch operations that give a pod spec the aibrix-runtime
container and the adapter-storage volume it shares with the engine. Pure: ``admission.py`` speaks AdmissionReview."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aibrix.controller.engine_args import limits_env, metrics_port
from aibrix.controller.pods import DEFAULT_RUNTIME_PORT, RUNTIME_KEY_ENV, engine_port
from aibrix.controller.runtime_keys import KEY_FIELD, KEY_SECRET
from aibrix.controller.vocabulary import ENGINE_LABEL, METRIC_PORT_LABEL, PORT_LABEL, RUNTIME_CONTAINER
from aibrix.engines import ENGINES

INJECT_ANNOTATION = "model.aibrix.ai/sidecar-injection"
IMAGE_ANNOTATION = "model.aibrix.ai/sidecar-runtime-image"
VOLUME = "adapter-storage"
MOUNT_PATH = "/tmp/aibrix/adapters"  # the runtime's default AIBRIX_ADAPTER_DIR
DEFAULT_ENGINE = "vllm"
_IMAGE = re.compile(r"[^\s]{1,1024}")
_IMAGE_HINTS = (("sglang", "sglang"), ("xllm", "xllm"), ("tensorrt", "trtllm"), ("trtllm", "trtllm"),
                ("text-generation-inference", "tgi"), ("llama.cpp", "llamacpp"), ("llama-cpp", "llamacpp"))  # fmt: skip
# Resources: a modest share for a process that idles at ~45 MB and streams downloads to disk. A pod whose every
# container has requests equal to limits (QoS Guaranteed, common for GPU engines) keeps that class: the sidecar's
# requests then equal its limits too.
REQUESTS = {"cpu": "100m", "memory": "128Mi"}
LIMITS = {"cpu": "1", "memory": "512Mi"}
GUARANTEED = {"cpu": "250m", "memory": "512Mi"}


@dataclass
class Plan:
    """What the webhook answers: patch operations (empty: leave the object alone) and warnings for the user."""

    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def wants_sidecar(annotations: dict[str, str]) -> bool:
    return annotations.get(INJECT_ANNOTATION, "").strip().lower() == "true"


def plan_injection(
    spec: dict[str, Any], labels: dict[str, str], annotations: dict[str, str], default_image: str, prefix: str
) -> Plan:
    """Operations on the pod spec at JSON pointer ``prefix`` (``/spec`` for a Pod, ``/spec/template/spec`` for a
    Deployment). A spec that already has the sidecar gets none; one whose labels ask for the impossible gets a
    warning and none (a half-working sidecar is worse than none, and the warning says what to fix)."""
    containers = spec.get("containers")
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        return Plan(warnings=["aibrix sidecar not injected: the pod spec has no list of containers"])
    if any(c.get("name") == RUNTIME_CONTAINER for c in containers):
        return Plan()
    engine, port, problems = _engine(labels, annotations, containers)
    image = (annotations.get(IMAGE_ANNOTATION) or "").strip() or default_image
    if not _IMAGE.fullmatch(image):
        problems.append(f"annotation {IMAGE_ANNOTATION} is not an image reference")
    if problems:
        return Plan(warnings=[f"aibrix sidecar not injected: {p}" for p in problems])
    volume, ops = _shared_volume(spec, prefix)
    for index, container in enumerate(containers):
        if not any(m.get("mountPath") == MOUNT_PATH for m in container.get("volumeMounts") or []):
            ops.append(
                _append(
                    f"{prefix}/containers/{index}/volumeMounts",
                    container.get("volumeMounts"),
                    {"name": volume, "mountPath": MOUNT_PATH},
                )
            )
    sidecar = runtime_container(image, engine, port, _free_port(containers, port), volume, _guaranteed(containers))
    sidecar["env"] += limits_env(engine, containers, annotations)
    scrape_port = metrics_port(labels)
    if scrape_port is not None:
        sidecar["env"].append({"name": "INFERENCE_ENGINE_METRICS_ENDPOINT", "value": f"http://localhost:{scrape_port}"})
    ops.append({"op": "add", "path": f"{prefix}/containers/-", "value": sidecar})
    return Plan(patch=ops)


def runtime_container(image: str, engine: str, port: int, listen: int, volume: str, guaranteed: bool) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": listen}, "periodSeconds": 10, "timeoutSeconds": 3}
    return {
        "name": RUNTIME_CONTAINER,
        "image": image,
        "command": ["aibrix_runtime", "--port", str(listen)],
        "env": [
            {"name": "INFERENCE_ENGINE", "value": engine},
            {"name": "INFERENCE_ENGINE_ENDPOINT", "value": f"http://localhost:{port}"},
            # the runtime's own key, per namespace, when that namespace has the Secret (the controller reads it
            # from the same place, for this pod only)
            {
                "name": RUNTIME_KEY_ENV,
                "valueFrom": {"secretKeyRef": {"name": KEY_SECRET, "key": KEY_FIELD, "optional": True}},
            },
        ],
        "ports": [{"name": "aibrix-runtime", "containerPort": listen, "protocol": "TCP"}],
        "volumeMounts": [{"name": volume, "mountPath": MOUNT_PATH}],
        "livenessProbe": {**probe, "initialDelaySeconds": 3, "failureThreshold": 3},
        "readinessProbe": {**probe, "httpGet": {"path": "/ready", "port": listen}, "periodSeconds": 5},
        "resources": {"requests": GUARANTEED, "limits": GUARANTEED}
        if guaranteed
        else {"requests": REQUESTS, "limits": LIMITS},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _engine(
    labels: dict[str, str], annotations: dict[str, str], containers: list[dict[str, Any]]
) -> tuple[str, int, list[str]]:
    """The engine kind (label, then annotation as upstream reads it, then the engine image's name, then vLLM) and
    its port (the label, else the first declared port, else 8000), with what is wrong with them."""
    problems = []
    engine = (labels.get(ENGINE_LABEL) or annotations.get(ENGINE_LABEL) or "").strip().lower()
    engine = engine or _engine_from_images(containers)
    if engine not in ENGINES:
        problems.append(f"{ENGINE_LABEL}={engine!r} is not one of {', '.join(ENGINES)}")
    label_port = labels.get(PORT_LABEL)
    port = engine_port(labels, containers)
    if label_port is not None and not (label_port.isdigit() and 0 < int(label_port) < 65536):
        problems.append(f"{PORT_LABEL}={label_port!r} is not a port number")
    scrape = labels.get(METRIC_PORT_LABEL)
    if scrape is not None and not (scrape.isdigit() and 0 < int(scrape) < 65536):
        problems.append(f"{METRIC_PORT_LABEL}={scrape!r} is not a port number")
    return engine, port, problems


def _engine_from_images(containers: list[dict[str, Any]]) -> str:
    images = " ".join(str(c.get("image", "")).lower() for c in containers)
    return next((engine for hint, engine in _IMAGE_HINTS if hint in images), DEFAULT_ENGINE)


def _shared_volume(spec: dict[str, Any], prefix: str) -> tuple[str, list[dict[str, Any]]]:
    """The volume the engine already mounts at the adapter path (the user's choice is kept), else adapter-storage
    (an emptyDir, added unless a volume of that name exists)."""
    for container in spec["containers"]:
        for mount in container.get("volumeMounts") or []:
            if mount.get("mountPath") == MOUNT_PATH and mount.get("name"):
                return str(mount["name"]), []
    if any(v.get("name") == VOLUME for v in spec.get("volumes") or []):
        return VOLUME, []
    return VOLUME, [_append(f"{prefix}/volumes", spec.get("volumes"), {"name": VOLUME, "emptyDir": {}})]


def _append(path: str, existing: list[Any] | None, value: dict[str, Any]) -> dict[str, Any]:
    """A JSON-patch add that appends to a list, creating it when the object has none."""
    if existing:
        return {"op": "add", "path": f"{path}/-", "value": value}
    return {"op": "add", "path": path, "value": [value]}


def _free_port(containers: list[dict[str, Any]], engine: int) -> int:
    """8080 unless the engine listens there (declared or not: the label or the default may name it) or another
    container declares it: the runtime must neither fail to bind nor point its engine endpoint at itself."""
    taken = {p.get("containerPort") for c in containers for p in c.get("ports") or []} | {engine}
    return next(port for port in range(DEFAULT_RUNTIME_PORT, DEFAULT_RUNTIME_PORT + 100) if port not in taken)


# Kubernetes resource quantities (k8s.io/apimachinery/pkg/api/resource, quantity.go): a number, then a binary
# suffix, a decimal suffix or an exponent.
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?")
_SUFFIX: dict[str, Decimal | int] = {
    **{"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60},
    **{"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3")},
    **{"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18},
}


def quantity(value: object) -> Decimal | None:
    """The amount a quantity string (or number) stands for, so "1000m" equals "1" and "1Gi" equals "1024Mi";
    None when it is not one."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        return None
    number, suffix = Decimal(match[1]), match[2] or ""
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number * _SUFFIX.get(suffix, 1)


def _guaranteed(containers: list[dict[str, Any]]) -> bool:
    """Every container limits CPU and memory, and requests what it limits (or nothing, which defaults to it),
    compared as amounts: "1000m" and "1" are the same CPU."""
    for container in containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if not {"cpu", "memory"} <= limits.keys():
            return False
        for kind in ("cpu", "memory"):
            limit = quantity(limits[kind])
            if limit is None or quantity(requests.get(kind, limits[kind])) != limit:
                return False
    return True
