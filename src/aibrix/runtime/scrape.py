"""GET /metrics: the engine's payload, its standard ``aibrix:`` families, and the runtime's own metrics."""

from __future__ import annotations

import asyncio
import logging
import time

from aibrix.engines import Engine, EngineClient
from aibrix.engines.errors import EngineError
from aibrix.metrics import Standardizer
from aibrix.metrics.lora import newest_lora_info, vllm_lora_activity
from aibrix.runtime.telemetry import Telemetry

log = logging.getLogger("aibrix.runtime")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsScraper:
    """Scrapes the engine once for any number of concurrent scrapers, and never fails because of the engine.

    ``transform`` False is raw pass-through mode: the engine's bytes followed by the runtime's own metrics.
    """

    def __init__(
        self,
        engine: Engine,
        telemetry: Telemetry,
        *,
        path: str,
        timeout: float,
        transform: bool,
        rate_window: float,
        client: EngineClient | None = None,
    ) -> None:
        """``client``: where the engine serves metrics when not on its API port (default: the engine's client)."""
        self.engine, self.telemetry = engine, telemetry
        self.client = client or engine.client
        self.path, self.timeout, self.transform = path, timeout, transform
        self.standardizer = Standardizer(engine.name, rate_window=rate_window)
        self._inflight: asyncio.Future[bytes] | None = None

    async def scrape(self) -> bytes:
        if self._inflight is None:
            future = asyncio.ensure_future(self._scrape())
            self._inflight = future
            future.add_done_callback(self._clear)
        return await asyncio.shield(self._inflight)

    async def aclose(self) -> None:
        if self.client is not self.engine.client:
            await self.client.aclose()

    def _clear(self, future: asyncio.Future[bytes]) -> None:
        if self._inflight is future:
            self._inflight = None

    async def _scrape(self) -> bytes:
        started = time.perf_counter()
        parts: list[bytes] = []
        try:
            response = await self.client.request("GET", self.path, timeout=self.timeout)
            problem = None if response.status_code == 200 else f"engine answered {response.status_code} on {self.path}"
        except EngineError as exc:
            response, problem = None, exc.message
        if response is not None and problem is None:
            self.telemetry.engine_up.set(1)
            payload = newest_lora_info(response.content) if self.transform else response.content
            parts.append(payload if payload.endswith(b"\n") or not payload else payload + b"\n")
            if self.transform:
                text = payload.decode("utf-8", errors="replace")
                self._adapter_demand(text)
                parts.append(self._standard_families(text))
        else:
            self.telemetry.engine_up.set(0)
            parts.append(f"# engine scrape failed: {' '.join(str(problem).split())}\n".encode())
        self.telemetry.scrape_seconds.observe(time.perf_counter() - started)
        parts.append(self.telemetry.render())
        return b"".join(parts)

    def _adapter_demand(self, text: str) -> None:
        """Per-adapter demand from vLLM's ``vllm:lora_requests_info`` (aibrix.metrics.lora): which adapters have
        requests running or waiting now."""
        self.telemetry.lora_active.clear()
        activity = vllm_lora_activity(text)
        for state in ("running", "waiting"):
            for name in sorted((activity or {}).get(state, ())):
                self.telemetry.lora_active.labels(name, state).set(1)

    def _standard_families(self, text: str) -> bytes:
        try:
            return self.standardizer.render(text).encode()
        except Exception:  # a scrape must never fail because of standardization: fall back to the raw payload
            log.exception("metric standardization failed; serving the engine's raw payload for this scrape")
            self.telemetry.fallbacks.inc()
            return b""
