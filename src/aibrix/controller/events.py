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


class EventRecorder:
    def __init__(self, client: AsyncClient, component: str) -> None:
        self.client, self.component = client, component
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, adapter: Obj, type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes event in the background; a failure to record never holds up reconciling."""
        task = asyncio.create_task(self._post_event(adapter, type_, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
