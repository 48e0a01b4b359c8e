"""Kubernetes Events about ModelAdapters, posted in the background: a failure to record one never holds up a
reconcile."""

from __future__ import annotations

import asyncio
import logging

from lightkube import AsyncClient

from aibrix.controller.resources import Event, Obj, timestamp
from aibrix.controller.vocabulary import GROUP, KIND, VERSION
from aibrix.errors import capped

log = logging.getLogger("aibrix.controller")


QUEUED = 10_000  # Events waiting to be posted; more are dropped (client-go's recorder drops beyond 1000)
SENDERS = 4  # Events in flight at once when no adapter waits: status writes keep the API client's other connections


class EventRecorder:
    """Events go out in the order recorded, behind the writes that decide placement: one at a time while adapters
    wait to be reconciled (``calm`` is clear), a few at a time once none does. A burst of Events (a thousand adapters
    placed at once) follows the burst of placements instead of taking its CPU and connections: the status says where
    each adapter is first, the record of how it got there trails by seconds. When the queue is full, new Events are
    dropped and counted: Events are best effort."""

    def __init__(self, client: AsyncClient, component: str) -> None:
        self.client, self.component = client, component
        self._queue: asyncio.Queue[tuple[Obj, str, str, str]] = asyncio.Queue(QUEUED)
        self._senders: list[asyncio.Task[None]] = []
        self.calm: asyncio.Event | None = None  # set while no adapter waits to be reconciled; None: always calm
        self.dropped = 0

    def record(self, adapter: Obj, type_: str, reason: str, message: str) -> None:
        """Queue a Kubernetes event; a failure to record never holds up reconciling."""
        if not self._senders:
            self._senders = [asyncio.create_task(self._send(helper=i > 0)) for i in range(SENDERS)]
        try:
            self._queue.put_nowait((adapter, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%d Events dropped: more than %d waiting to be posted", self.dropped, QUEUED)

    async def _send(self, helper: bool) -> None:
        while True:
            if helper and self.calm is not None:
                await self.calm.wait()
            await self._post_event(*await self._queue.get())

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
            "message": capped(message),
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component},
        }
        try:
            await self.client.create(Event.from_dict(body))
        except Exception as exc:  # noqa: BLE001
            log.debug("could not record event %s for %s: %s", reason, meta["name"], exc)
