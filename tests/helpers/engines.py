"""Engines in process, for runtime tests that need an exact interleaving rather than a process."""

from __future__ import annotations

import asyncio

from aibrix.engines import Engine


class SlowListing(Engine):
    """An engine whose model list answers after an unload has gone through: the race the keeper must survive."""

    name = "vllm"
    lists_adapters = True

    def __init__(self) -> None:
        self.adapters: dict[str, str] = {}
        self.loads = 0

    async def list_models(self, *, auth: str | None = None) -> list[dict]:
        await asyncio.sleep(0.05)
        cards = [{"id": n, "parent": "base", "root": p} for n, p in self.adapters.items()]
        return [{"id": "base", "parent": None}, *cards]

    async def load_adapter(self, lora_name: str, lora_path: str, *, auth: str | None = None) -> str:
        self.loads += 1
        self.adapters[lora_name] = lora_path
        return "ok"

    async def unload_adapter(self, lora_name: str, *, auth: str | None = None) -> str:
        self.adapters.pop(lora_name)
        return "ok"

    async def aclose(self) -> None:
        pass
