"""What each pod serves: asked once per pod per resync, however many adapters it hosts, and kept in step with the
loads and unloads this controller makes in between."""

from __future__ import annotations

import asyncio
import logging
import time

from aibrix.controller.loader import Loader, LoadError
from aibrix.controller.pods import Pod

log = logging.getLogger("aibrix.controller")


class ServedIndex:
    """What each pod serves, asked once per pod per resync however many adapters it hosts."""

    def __init__(self, loader: Loader, ttl: float) -> None:
        self.loader, self.ttl = loader, ttl
        self._entries: dict[str, tuple[float, set[str]]] = {}
        self._inflight: dict[str, asyncio.Future[set[str] | None]] = {}
        self._loaded: dict[str, dict[str, float]] = {}  # pod uid -> adapter -> when this controller loaded it

    def fresh(self, pod: Pod) -> set[str] | None:
        """The pod's served names if they were asked recently enough, without waiting."""
        entry = self._entries.get(pod.uid)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        return None

    async def names(self, pod: Pod, api_key: str | None) -> set[str] | None:
        """The pod's served names, or None when it cannot be asked right now (the adapter is then assumed there)."""
        known = self.fresh(pod)
        if known is not None:
            return known
        future = self._inflight.get(pod.uid)
        if future is None:
            future = self._inflight[pod.uid] = asyncio.ensure_future(self._fetch(pod, api_key))
            future.add_done_callback(lambda _: self._inflight.pop(pod.uid, None))
        return await asyncio.shield(future)

    async def _fetch(self, pod: Pod, api_key: str | None) -> set[str] | None:
        asked = time.monotonic()
        try:
            names = await self.loader.loaded(pod, api_key)
        except LoadError as exc:
            log.debug("cannot list adapters on %s: %s", pod.name, exc.message)
            return None
        # A load that finished while the listing was on its way may be missing from it: keep it.
        names |= {name for name, at in self._loaded.get(pod.uid, {}).items() if at >= asked}
        self._entries[pod.uid] = (asked, names)
        return names

    def add(self, pod: Pod, name: str) -> None:
        self._loaded.setdefault(pod.uid, {})[name] = time.monotonic()
        entry = self._entries.get(pod.uid)
        if entry is not None:
            entry[1].add(name)

    def discard(self, pod: Pod, name: str) -> None:
        self._loaded.get(pod.uid, {}).pop(name, None)
        entry = self._entries.get(pod.uid)
        if entry is not None:
            entry[1].discard(name)

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)
        self._loaded.pop(uid, None)
