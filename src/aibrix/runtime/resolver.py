"""Adapters served on their first request. vLLM asks its LoRA resolvers for a model name it does not serve; ours
(``plugins/vllm-lora-resolver``) asks here. The runtime fetches the adapter from ``AIBRIX_LORA_SOURCE`` with its own
credentials, outbound policy and size limits, records it like any adapter it loaded, and answers with the folder;
vLLM then loads that folder itself (the runtime must not call the engine's load API meanwhile: vLLM holds the
name's lock while it resolves).

One download per name however many requests wait for it; a name that could not be resolved is answered at once for
``AIBRIX_LORA_RESOLVE_MISS_SECONDS``, so a burst of requests for an unknown name costs one look-up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from aibrix.errors import AibrixError
from aibrix.runtime.adapters import AdapterService
from aibrix.runtime.delegation import artifact_fetcher
from aibrix.runtime.errors import APIError
from aibrix.runtime.models import LoadAdapterRequest
from aibrix.runtime.settings import Settings
from aibrix.runtime.telemetry import Telemetry
from aibrix.storage.base import NotFound
from aibrix.storage.uri import redact

log = logging.getLogger("aibrix.runtime")

MAX_MISSES = 4096  # names remembered as unresolvable; the oldest is forgotten first


class Result(StrEnum):
    """How a resolve ended (the ``result`` label of aibrix:lora_adapter_resolves_total)."""

    RESOLVED = "resolved"  # downloaded now
    ALREADY = "already"  # the runtime holds it already
    NOT_FOUND = "not_found"  # no source, or the source has no such adapter
    FAILED = "failed"  # the download or its checks failed
    RECENT_MISS = "recent_miss"  # failed a moment ago: answered without asking the source again


@dataclass(frozen=True)
class Resolved:
    lora_path: str
    source: str
    result: Result


@dataclass(frozen=True)
class Miss:
    until: float
    error: AibrixError
    result: Result


class Resolver:
    def __init__(self, settings: Settings, telemetry: Telemetry, adapters: AdapterService) -> None:
        self.settings, self.telemetry, self.adapters = settings, telemetry, adapters
        self._inflight: dict[str, asyncio.Future[Resolved]] = {}
        self._misses: OrderedDict[str, Miss] = OrderedDict()

    async def resolve(self, name: str) -> Resolved:
        """The adapter's folder, downloaded if need be; raises an error with its HTTP status otherwise."""
        started = time.monotonic()
        result = Result.FAILED
        try:
            resolved = await self._resolve(name)
            result = resolved.result
            return resolved
        except _Unresolved as exc:
            result = exc.result
            raise exc.error from None
        finally:
            self.telemetry.resolves.labels(result.value).inc()
            self.telemetry.resolve_seconds.observe(time.monotonic() - started)

    async def _resolve(self, name: str) -> Resolved:
        held = self.adapters.wanted.get(name)
        if held is not None:
            return Resolved(held, self.adapters.managed[name].source, Result.ALREADY)
        miss = self._misses.get(name)
        if miss is not None and miss.until > time.monotonic():
            raise _Unresolved(miss.error, Result.RECENT_MISS)
        self._misses.pop(name, None)
        flight = self._inflight.get(name)
        if flight is None:  # the first request for the name fetches; the others wait for its outcome
            flight = self._inflight[name] = asyncio.ensure_future(self._fetch(name))
            flight.add_done_callback(lambda _: self._inflight.pop(name, None))
        return await asyncio.shield(flight)

    async def _fetch(self, name: str) -> Resolved:
        template = self.settings.lora_source
        if template is None:
            raise _Unresolved(
                APIError(404, f"adapter {name!r} is not loaded and AIBRIX_LORA_SOURCE is not set", "AdapterNotFound"),
                Result.NOT_FOUND,
            )
        url = template.replace("{name}", name)
        body = LoadAdapterRequest(lora_name=name, artifact_url=url, credentials_secret=self.settings.lora_source_secret)
        try:
            fetch_into = await asyncio.to_thread(artifact_fetcher, self.settings, self.telemetry, body)
            path = await self.adapters.prepare(name, redact(url), fetch_into)
        except AibrixError as exc:
            result = Result.NOT_FOUND if isinstance(exc, NotFound) else Result.FAILED
            log.warning("resolving adapter %s from %s failed: %s", name, redact(url), exc.message)
            self._remember_miss(name, exc, result)
            raise _Unresolved(exc, result) from None
        log.info("resolved adapter %s from %s into %s", name, redact(url), path)
        return Resolved(path, redact(url), Result.RESOLVED)

    def _remember_miss(self, name: str, error: AibrixError, result: Result) -> None:
        if self.settings.resolve_miss_seconds <= 0:
            return
        self._misses[name] = Miss(time.monotonic() + self.settings.resolve_miss_seconds, error, result)
        self._misses.move_to_end(name)
        while len(self._misses) > MAX_MISSES:
            self._misses.popitem(last=False)


class _Unresolved(Exception):
    def __init__(self, error: AibrixError, result: Result) -> None:
        super().__init__(error.message)
        self.error, self.result = error, result
