"""A list-then-watch cache of one resource, kept in step with the controller's own writes."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from lightkube import ALL_NS, ApiError, AsyncClient

from aibrix.controller.resources import Key, Obj, key_of

log = logging.getLogger("aibrix.controller")

Handler = Callable[[str, Obj | None, Obj], None]
PAGE = 500  # objects per list reply, as client-go's pager: every reply stays small (api_client.MAX_REPLY_BYTES)


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
        listing = self.client.list(self.resource, namespace=self.namespace, labels=self.labels, chunk_size=PAGE)
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
