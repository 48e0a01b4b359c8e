"""Simulated engine state: the base model, loaded adapters, a request queue and token generation timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aibrix.sim.lora_cache import LoRACache
from aibrix.sim.metrics import EngineMetrics, FinishedRequest


@dataclass
class Timing:
    """Latency model: time to first token grows with the prompt; then one token per ``itl``."""

    ttft: float = 0.02
    prefill_per_token: float = 0.0001
    itl: float = 0.005
    lora_load: float = 0.0
    lora_load_per_rank: float = 0.0  # seconds more per unit of the adapter's rank (sim/lora_cache.py)
    lora_load_per_mb: float = 0.0  # seconds more per MB of its files


@dataclass
class SimEngine:
    model: str
    metrics: EngineMetrics
    timing: Timing = field(default_factory=Timing)
    max_running: int = 64
    kv_capacity_tokens: int = 65536
    adapters: dict[str, str] = field(default_factory=dict)
    metrics_payload: bytes | None = None  # served instead of live metrics when set (replay a capture)
    created: int = field(default_factory=lambda: int(time.time()))
    lora_cache: LoRACache | None = None  # vLLM's worker cache (--max-cpu-loras); None: every adapter stays in

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_running)
        self.running = 0
        self.waiting = 0
        self.kv_tokens = 0
        self._publish()

    def serves(self, model: str) -> bool:
        return model == self.model or model in self.adapters

    def _publish(self) -> None:
        self.metrics.set_load(self.running, self.waiting, min(1.0, self.kv_tokens / self.kv_capacity_tokens))

    async def generate(self, prompt_tokens: int, max_tokens: int, adapter: str | None = None) -> AsyncIterator[str]:
        """Yield generated tokens at the configured pace, accounting the request in the metrics."""
        arrived = time.perf_counter()
        self.waiting += 1
        self._publish()
        async with self._slots:
            self.waiting -= 1
            self.running += 1
            started = time.perf_counter()
            reserved = prompt_tokens + max_tokens
            self.kv_tokens += reserved
            self._publish()
            self.metrics.request_started(adapter)
            itls: list[float] = []
            generated = 0
            ttft = 0.0
            try:
                if adapter and self.lora_cache is not None:
                    await self.lora_cache.use(adapter)  # an evicted adapter is loaded again first
                await asyncio.sleep(self.timing.ttft + self.timing.prefill_per_token * prompt_tokens)
                last = time.perf_counter()
                ttft = last - arrived
                for index in range(max_tokens):
                    if index:
                        await asyncio.sleep(self.timing.itl)
                        now = time.perf_counter()
                        itls.append(now - last)
                        last = now
                    generated += 1
                    yield f" tok{index}"
            finally:
                self.metrics.request_ended(adapter)
                self.running -= 1
                self.kv_tokens -= reserved
                self._publish()
                finished = generated == max_tokens
                self.metrics.finished(
                    FinishedRequest(
                        prompt_tokens=prompt_tokens,
                        generated=generated,
                        ttft=ttft,
                        itls=itls,
                        e2e=time.perf_counter() - arrived,
                        queued=started - arrived,
                        reason="length" if finished else "abort",
                    )
                )


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: about four characters a token, at least one."""
    return max(1, (len(text) + 3) // 4)
