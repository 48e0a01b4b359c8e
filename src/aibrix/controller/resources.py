"""The Kubernetes resources the controller reads and writes, as lightkube generic resources (every object is a plain
dict in the API's own JSON shape: nothing is converted to and from typed models on the hot path), and the small
helpers every module uses on them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lightkube.generic_resource import create_namespaced_resource

from aibrix.controller.vocabulary import GROUP, KIND, PLURAL, VERSION

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

ModelAdapter = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
Pod = create_namespaced_resource("", "v1", "Pod", "pods")
Service = create_namespaced_resource("", "v1", "Service", "services")
Secret = create_namespaced_resource("", "v1", "Secret", "secrets")
Event = create_namespaced_resource("", "v1", "Event", "events")
EndpointSlice = create_namespaced_resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
Lease = create_namespaced_resource("coordination.k8s.io", "v1", "Lease", "leases")


def timestamp(at: float | None = None, *, micro: bool = False) -> str:
    """RFC 3339 in UTC; ``micro`` keeps microseconds (for times the controller acts on, like retry deadlines)."""
    moment = datetime.fromtimestamp(at, UTC) if at is not None else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]
