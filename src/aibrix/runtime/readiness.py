"""Engine readiness, probed with a short timeout and cached so probes never pile onto the engine."""

from __future__ import annotations

import asyncio
import time

from aibrix.engines import Engine
from aibrix.engines.errors import EngineError


class ReadinessProbe:
    def __init__(self, engine: Engine, *, timeout: float, cache_seconds: float) -> None:
        self.engine = engine
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._lock = asyncio.Lock()
        self._checked_at = float("-inf")
        self._reason: str | None = "not checked yet"

    async def reason_not_ready(self, *, fresh: bool = False) -> str | None:
        """None when the engine is ready, else why not; at most one probe is in flight at a time.
        ``fresh`` skips the cache (the adapter keeper, watching for the engine to come back)."""
        async with self._lock:
            if fresh or time.monotonic() - self._checked_at >= self.cache_seconds:
                try:
                    await self.engine.ready(timeout=self.timeout)
                    self._reason = None
                except EngineError as exc:
                    self._reason = exc.message
                self._checked_at = time.monotonic()
            return self._reason
