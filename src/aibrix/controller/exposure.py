"""How an adapter is reached: a headless Service named after it and an EndpointSlice listing the pods that serve
it. Pure builders; the reconcile applies what they return."""

from __future__ import annotations

from collections.abc import Sequence

from aibrix.controller.pods import Pod
from aibrix.controller.resources import Obj
from aibrix.controller.spec import AdapterSpec
from aibrix.controller.vocabulary import ADAPTER_LABEL, BASE_MODEL_ANNOTATION, GROUP, KIND, MODEL_LABEL, VERSION

DEFAULT_PORT = 8000


def owner_references(adapter: Obj) -> list[Obj]:
    meta = adapter["metadata"]
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}]  # fmt: skip


def engine_port(instances: Sequence[Pod], candidates: Sequence[Pod]) -> int:
    """Headless: clients resolve the name to pod IPs and connect to this port, so it is the engine's own port."""
    known = instances or candidates
    return known[0].engine_port if known else DEFAULT_PORT


def service(spec: AdapterSpec, owners: list[Obj], port: int) -> Obj:
    labels = {MODEL_LABEL: spec.name, ADAPTER_LABEL: spec.name}
    annotations = {BASE_MODEL_ANNOTATION: spec.base_model} if spec.base_model else {}
    return {
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels, "annotations": annotations,
                     "ownerReferences": owners},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": port}]},
    }  # fmt: skip


def endpoint_slice(
    spec: AdapterSpec, owners: list[Obj], instances: list[Pod], port: int, candidates: Sequence[Pod] = ()
) -> Obj:
    """The pods serving the adapter; with none left, an empty slice (no traffic to pods that lost it)."""
    endpoints = [
        {"addresses": [p.ip], "conditions": {"ready": True},
         "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace, "uid": p.uid}}
        for p in sorted(instances, key=lambda p: p.name)
    ]  # fmt: skip
    labels = {MODEL_LABEL: spec.name, ADAPTER_LABEL: spec.name, "kubernetes.io/service-name": spec.name,
              "endpointslice.kubernetes.io/managed-by": "aibrix-controller"}  # fmt: skip
    slice_: Obj = {
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels, "ownerReferences": owners},
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }
    # Required even on an emptied slice (the API server validates a create before it finds the slice exists) and
    # immutable: the serving pods' family, else the candidates' (the same cluster), else IPv4.
    known = [p.ip for p in [*instances, *candidates] if p.ip]
    slice_["addressType"] = "IPv6" if known and ":" in known[0] else "IPv4"
    return slice_


def sglang_naming(adapter: str) -> str:
    """What clients of an SGLang pod must send: SGLang picks an adapter from ``"model": "<base>:<adapter>"`` or the
    ``lora_path`` field, and runs the base model for a bare adapter name (entrypoints/openai/serving_base.py,
    ``_parse_model_parameter``), without an error."""
    return (
        f'SGLang pods serve {adapter} only to requests naming it "model": "<base model>:{adapter}" or '
        f'"lora_path": "{adapter}"; "model": "{adapter}" alone runs the base model on SGLang, without an error'
    )
