"""Adapter load/unload with idempotency and one-at-a-time handling per adapter name."""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aibrix.engines import Engine, ModelCard
from aibrix.engines.errors import AdapterAlreadyLoaded, AdapterNotFound


class KeyedLocks:
    """An asyncio lock per key, dropped again when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass(frozen=True)
class LoadResult:
    message: str
    already_loaded: bool


def same_path(a: str | None, b: str) -> bool:
    if a is None:
        return False
    if a.startswith("/") and b.startswith("/"):
        return posixpath.normpath(a) == posixpath.normpath(b)
    return a.rstrip("/") == b.rstrip("/")


class AdapterService:
    """Loads and unloads adapters in the engine and remembers where each one came from."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.locks = KeyedLocks()
        self.loaded: dict[str, str] = {}

    async def load(self, name: str, path: str, *, auth: str | None = None) -> LoadResult:
        async with self.locks.hold(name):
            try:
                message = await self.engine.load_adapter(name, path, auth=auth)
            except AdapterAlreadyLoaded as exc:
                current = await self.engine.adapter_path(name, auth=auth) or self.loaded.get(name)
                if not same_path(current, path):
                    where = f"from {current!r}" if current else "from a path the engine does not report"
                    raise AdapterAlreadyLoaded(
                        f"adapter {name!r} is already loaded {where}; unload it before loading it from {path!r}"
                    ) from exc
                self.loaded[name] = current or path
                return LoadResult(f"adapter {name!r} is already loaded from {path!r}", already_loaded=True)
            self.loaded[name] = path
            return LoadResult(message, already_loaded=False)

    async def unload(self, name: str, *, auth: str | None = None) -> str:
        async with self.locks.hold(name):
            try:
                message = await self.engine.unload_adapter(name, auth=auth)
            except AdapterNotFound:
                self.loaded.pop(name, None)
                raise AdapterNotFound(f"adapter {name!r} is not loaded") from None
            self.loaded.pop(name, None)
            return message

    async def models(self, *, auth: str | None = None) -> list[ModelCard]:
        """The engine's model cards, plus cards for adapters this runtime loaded that the engine does not list."""
        cards = [{"object": "model", "parent": None, **card} for card in await self.engine.list_models(auth=auth)]
        listed = {card["id"] for card in cards}
        base = next((card for card in cards if not card.get("parent")), None)
        for name, path in self.loaded.items():
            if name not in listed:
                cards.append(
                    {
                        "id": name,
                        "object": "model",
                        "created": base.get("created") if base else None,
                        "owned_by": base.get("owned_by") if base else self.engine.name,
                        "root": path,
                        "parent": base["id"] if base else None,
                    }
                )
        return cards
