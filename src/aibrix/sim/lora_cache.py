"""vLLM's adapter cache as the simulator keeps it, and what a load costs.

vLLM 0.32 (vllm-project/vllm): every load_lora_adapter gets a fresh id (entrypoints/openai/models/serving.py,
``lora_id_counter``) and goes into the worker's cache; lora/worker_manager.py ``LRUCacheWorkerLoRAManager`` holds
``--max-cpu-loras`` adapters (config/lora.py: default ``--max-loras``) and evicts the least recently used one when a
new one comes in; a request for an evicted adapter loads it again from its path. ``unload_lora_adapter`` only deletes
the name from the serving layer's table (``unload_lora_adapter``: ``del self.lora_requests[lora_name]``): the
adapter keeps its place in the cache until evicted. So the names an engine serves are not bounded by the cache; what
the cache bounds is which of them answer without a load first.

A load takes ``--lora-load-ms`` plus ``--lora-load-ms-per-rank`` for each unit of the adapter's rank plus
``--lora-load-ms-per-mb`` for each MB of its files: the work of reading and placing the weights grows with both.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadCost:
    base: float = 0.0  # seconds
    per_rank: float = 0.0  # seconds per unit of rank
    per_mb: float = 0.0  # seconds per MB of adapter files

    def of(self, path: str) -> float:
        """What loading the adapter folder ``path`` takes (a path the simulator cannot read costs the base)."""
        if not (self.per_rank or self.per_mb) or not os.path.isdir(path):
            return self.base
        rank, size = 0, 0
        try:
            with open(os.path.join(path, "adapter_config.json")) as handle:
                config = json.load(handle)
            ranks = [config.get("r", 0), *(config.get("rank_pattern") or {}).values()]
            rank = max(r for r in ranks if isinstance(r, int))
            size = sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())
        except (OSError, ValueError):
            pass
        return self.base + self.per_rank * rank + self.per_mb * size / 1e6


class LoRACache:
    """The adapters in the engine's cache by load id, least recently used first."""

    def __init__(self, capacity: int, cost: LoadCost) -> None:
        self.capacity = max(1, capacity)
        self.cost = cost
        self.ids: dict[str, int] = {}  # served name -> its load id
        self.paths: dict[int, str] = {}
        self._cached: OrderedDict[int, None] = OrderedDict()
        self._next = 0
        self.loads = 0  # loads into the cache, first ones and reloads after eviction

    async def load(self, name: str, path: str) -> None:
        """A load_lora_adapter: a fresh id, loaded into the cache."""
        self._next += 1
        self.ids[name], self.paths[self._next] = self._next, path
        await self._bring_in(self._next)

    def forget(self, name: str) -> None:
        """An unload: the name goes, the cached weights stay until evicted."""
        self.ids.pop(name, None)

    async def use(self, name: str) -> None:
        """A request for ``name``: loaded again first if it was evicted, and now the most recently used."""
        lora_id = self.ids.get(name)
        if lora_id is None:
            return
        if lora_id in self._cached:
            self._cached.move_to_end(lora_id)
        else:
            await self._bring_in(lora_id)

    def cached(self) -> list[str]:
        """The served names whose adapter is in the cache, least recently used first."""
        by_id = {lora_id: name for name, lora_id in self.ids.items()}
        return [by_id[i] for i in self._cached if i in by_id]

    async def _bring_in(self, lora_id: int) -> None:
        await asyncio.sleep(self.cost.of(self.paths[lora_id]))
        self.loads += 1
        self._cached[lora_id] = None
        self._cached.move_to_end(lora_id)
        while len(self._cached) > self.capacity:
            evicted, _ = self._cached.popitem(last=False)
            if evicted not in self.ids.values():
                self.paths.pop(evicted, None)  # nothing can ask for it again
