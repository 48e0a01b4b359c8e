"""The controller's view of the Kubernetes API: informer caches, and the few writes it makes.

Built on lightkube's async client with generic resources, so every object is a plain dict in the API's own JSON
shape; nothing is converted to and from typed models on the hot path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from aibrix.controller.spec import GROUP, KIND, PLURAL, VERSION

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

ModelAdapter = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
Pod = create_namespaced_resource("", "v1", "Pod", "pods")
Service = create_namespaced_resource("", "v1", "Service", "services")
Secret = create_namespaced_resource("", "v1", "Secret", "secrets")
Event = create_namespaced_resource("", "v1", "Event", "events")
EndpointSlice = create_namespaced_resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
Lease = create_namespaced_resource("coordination.k8s.io", "v1", "Lease", "leases")

log = logging.getLogger("aibrix.controller")


def timestamp(at: float | None = None, *, micro: bool = False) -> str:
    """RFC 3339 in UTC; ``micro`` keeps microseconds (for times the controller acts on, like retry deadlines)."""
    moment = datetime.fromtimestamp(at, UTC) if at is not None else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


Handler = Callable[[str, Obj | None, Obj], None]


class Informer:
    """A list-then-watch cache of one resource; ``handler(event, old, new)`` runs for every change."""

    def __init__(
        self, client: AsyncClient, resource: Any, namespace: str | None, handler: Handler, labels: Any = None
    ) -> None:
        self.client, self.resource, self.handler, self.labels = client, resource, handler, labels
        self.namespace = namespace or ALL_NS
        self.objects: dict[Key, Obj] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                version = await self._relist()
                self.synced.set()
                delay = 0.2
                async for event, obj in self.client.watch(
                    self.resource,
                    namespace=self.namespace,
                    labels=self.labels,
                    resource_version=version,
                    server_timeout=300,
                ):
                    self._apply(event, dict(obj))
            except asyncio.CancelledError:
                raise
            except ApiError as exc:  # 410 Gone: our version is too old; relist
                log.info("watch of %s ended: %s; listing again", self.resource.__name__, exc.status.message)
            except Exception as exc:  # noqa: BLE001 - the API server went away; keep trying with backoff
                log.warning("watch of %s failed: %s; retrying in %.1fs", self.resource.__name__, exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 10.0)

    async def _relist(self) -> str:
        listing = self.client.list(self.resource, namespace=self.namespace, labels=self.labels)
        fresh = {key_of(obj): dict(obj) for obj in [o async for o in listing]}
        version = listing.resourceVersion
        for key, gone in list(self.objects.items()):
            if key not in fresh:
                del self.objects[key]
                self.handler("DELETED", gone, gone)
        for key, obj in fresh.items():
            old = self.objects.get(key)
            self.objects[key] = obj
            if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self.handler("ADDED" if old is None else "MODIFIED", old, obj)
        return version

    def _apply(self, event: str, obj: Obj) -> None:
        key = key_of(obj)
        old = self.objects.get(key)
        if event == "DELETED":
            self.objects.pop(key, None)
        else:
            if old is not None and _newer(old, obj):
                return  # we already stored a newer copy from our own write
            self.objects[key] = obj
        self.handler(event, old, obj)

    def store(self, obj: Obj) -> None:
        """Remember an object we just wrote, so the next reconcile does not act on a stale copy. An object being
        deleted whose last finalizer we removed is gone from the server: it is dropped, never kept (its DELETED
        event may have arrived before our write's reply)."""
        key = key_of(obj)
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects.pop(key, None)
            return
        old = self.objects.get(key)
        if old is None or not _newer(old, obj):
            self.objects[key] = obj


def _newer(a: Obj, b: Obj) -> bool:
    """Whether ``a`` is newer than ``b`` (resourceVersions are opaque, but compare as integers on real servers)."""
    ra, rb = a["metadata"].get("resourceVersion", ""), b["metadata"].get("resourceVersion", "")
    return ra.isdigit() and rb.isdigit() and int(ra) > int(rb)


class Kube:
    """The writes and point reads the controller makes."""

    def __init__(self, client: AsyncClient, component: str = "aibrix-controller") -> None:
        self.client, self.component = client, component
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._applied: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def patch_status(self, namespace: str, name: str, status: Obj) -> Obj:
        result = await self.client.patch(
            ModelAdapter.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
        )
        return dict(result)

    async def set_finalizers(self, obj: Obj, finalizers: list[str]) -> Obj:
        """Replace the finalizer list, refused with 409/422 if the object changed since we read it."""
        meta = obj["metadata"]
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]
        result = await self.client.patch(
            ModelAdapter, meta["name"], ops, namespace=meta["namespace"], patch_type=PatchType.JSON
        )
        return dict(result)

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The secret's values as text; ValueError names a key whose value is not UTF-8 text (never the value)."""
        secret = await self.client.get(Secret, name, namespace=namespace)
        values = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                values[key] = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                raise ValueError(f"secret {name}: the value of {key!r} is not UTF-8 text") from None
        return values

    async def ensure(self, resource: Any, desired: Obj) -> None:
        """Create ``desired`` or merge it into what exists (only the fields we own change)."""
        meta = desired["metadata"]
        try:
            await self.client.create(resource.from_dict(desired))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            await self.client.patch(
                resource, meta["name"], desired, namespace=meta["namespace"], patch_type=PatchType.MERGE
            )

    async def apply_once(self, resource: Any, desired: Obj, *, memory: float = 300.0) -> None:
        """``ensure``, skipped when this exact object was applied in the last ``memory`` seconds."""
        meta = desired["metadata"]
        key = (resource.__name__, meta["namespace"], meta["name"])
        fingerprint = json.dumps(desired, sort_keys=True)
        applied = self._applied.get(key)
        if applied is not None and applied[0] == fingerprint and time.monotonic() - applied[1] < memory:
            return
        await self.ensure(resource, desired)
        self._applied[key] = (fingerprint, time.monotonic())

    def forget_applied(self, resource: Any, namespace: str, name: str) -> None:
        """The object is gone: the next ``apply_once`` writes it again at once."""
        self._applied.pop((resource.__name__, namespace, name), None)

    def event(self, adapter: Obj, type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes event in the background; a failure to record never holds up reconciling."""
        task = asyncio.create_task(self._post_event(adapter, type_, reason, message))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _post_event(self, adapter: Obj, type_: str, reason: str, message: str) -> None:
        meta, now = adapter["metadata"], timestamp()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component},
        }
        try:
            await self.client.create(Event.from_dict(body))
        except Exception as exc:  # noqa: BLE001
            log.debug("could not record event %s for %s: %s", reason, meta["name"], exc)
