"""Engine pods as the controller sees them: where to reach them and whether they may host adapters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aibrix.controller.engine_args import PodLimits, metrics_port, pod_limits
from aibrix.controller.vocabulary import ENABLED_LABEL, ENGINE_LABEL, PORT_LABEL, RUNTIME_CONTAINER

DEFAULT_ENGINE_PORT = 8000
DEFAULT_RUNTIME_PORT = 8080
RUNTIME_KEY_ENV = "AIBRIX_RUNTIME_API_KEY"


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class KeySource:
    """Where a pod's runtime sidecar reads AIBRIX_RUNTIME_API_KEY: a literal, or a key of a Secret."""

    value: str | None = None
    secret: str | None = None
    key: str | None = None
    optional: bool = False  # a missing Secret or key then means no key, as the kubelet reads it


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    ip: str | None
    ready_since: float | None  # when the Ready condition last turned True; None when not Ready
    terminating: bool
    engine_port: int
    runtime_port: int | None  # None: no runtime sidecar in the pod
    engine: str
    runtime_key: KeySource | None = None  # None: the runtime takes no key
    metrics_port: int | None = None  # model.aibrix.ai/metric-port: the engine's metrics are served there
    limits: PodLimits = PodLimits()  # rank limit and adapter slots (engine arguments, annotations)

    @property
    def host(self) -> str:
        """The pod IP as a URL host: IPv6 addresses in brackets."""
        return f"[{self.ip}]" if self.ip and ":" in self.ip else str(self.ip)

    @property
    def engine_url(self) -> str:
        return f"http://{self.host}:{self.engine_port}"

    @property
    def metrics_url(self) -> str:
        """Where the engine serves its metrics: its own port unless the metric-port label names another."""
        return f"http://{self.host}:{self.metrics_port}" if self.metrics_port else self.engine_url

    @property
    def runtime_url(self) -> str | None:
        return f"http://{self.host}:{self.runtime_port}" if self.runtime_port else None

    def eligible(self, now: float, stability: float) -> bool:
        """Ready for at least ``stability`` seconds, not going away, and opted in to hosting adapters."""
        return (
            self.ready_since is not None
            and now - self.ready_since >= stability
            and not self.terminating
            and bool(self.ip)
            and self.labels.get(ENABLED_LABEL) == "true"
        )

    def alive(self) -> bool:
        """Still able to serve an adapter it holds (a pod briefly flapping between stability checks counts)."""
        return self.ready_since is not None and self.reachable()

    def reachable(self) -> bool:
        """Has an address and is not going away: it may hold an adapter even when not Ready."""
        return bool(self.ip) and not self.terminating


def _ports(container: dict[str, Any]) -> list[int]:
    return [p["containerPort"] for p in container.get("ports") or [] if isinstance(p.get("containerPort"), int)]


def engine_port(labels: dict[str, str], containers: list[dict[str, Any]]) -> int:
    """The engine's port: the ``model.aibrix.ai/port`` label, else the first port a non-runtime container declares,
    else 8000 (the controller and the sidecar injection webhook read it the same way)."""
    label_port = labels.get(PORT_LABEL, "")
    if label_port.isdigit():
        return int(label_port)
    ports = [port for c in containers if c.get("name") != RUNTIME_CONTAINER for port in _ports(c)]
    return (ports or [DEFAULT_ENGINE_PORT])[0]


def pod_from_object(obj: dict[str, Any]) -> Pod:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    containers = spec.get("containers") or []
    runtime = next((c for c in containers if c.get("name") == RUNTIME_CONTAINER), None)
    runtime_port = (_ports(runtime) or [DEFAULT_RUNTIME_PORT])[0] if runtime is not None else None
    ready_since = None
    if status.get("phase") == "Running":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                ready_since = parse_time(condition.get("lastTransitionTime")) or 0.0
    return Pod(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", "default"),
        uid=meta.get("uid", ""),
        labels=labels,
        ip=status.get("podIP"),
        ready_since=ready_since,
        terminating=bool(meta.get("deletionTimestamp")),
        engine_port=engine_port(labels, containers),
        runtime_port=runtime_port,
        engine=labels.get(ENGINE_LABEL, "vllm"),
        runtime_key=_key_source(runtime),
        metrics_port=metrics_port(labels),
        limits=pod_limits(labels.get(ENGINE_LABEL, "vllm"), containers, meta.get("annotations") or {}),
    )


def _key_source(runtime: dict[str, Any] | None) -> KeySource | None:
    """Where the runtime container takes its API key from, as its env declares it."""
    for entry in (runtime or {}).get("env") or []:
        if not isinstance(entry, dict) or entry.get("name") != RUNTIME_KEY_ENV:
            continue
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
        if ref.get("name") and ref.get("key"):
            return KeySource(secret=str(ref["name"]), key=str(ref["key"]), optional=ref.get("optional") is True)
        return KeySource(value=str(entry.get("value") or "")) if entry.get("value") else None
    return None
