"""Adapter load/unload: idempotent, one operation per adapter name at a time, artifacts downloaded first when the
controller delegates them, and a persisted record so adapters come back after engine or runtime restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibrix.engines import Engine, ModelCard
from aibrix.engines.base import same_path
from aibrix.engines.errors import AdapterAlreadyLoaded, AdapterNotFound, EngineError
from aibrix.errors import capped
from aibrix.runtime.admission import AdapterAdmission, Judge
from aibrix.runtime.artifacts import adapter_folders
from aibrix.runtime.errors import APIError
from aibrix.runtime.fetching import FetchInto, folder_size, run_download
from aibrix.runtime.keyed_locks import KeyedLocks
from aibrix.runtime.managed import WANTED, AdapterState, ManagedAdapter, owned_folder, record_problem
from aibrix.runtime.preflight import preflight
from aibrix.runtime.record import AdapterRecord

log = logging.getLogger("aibrix.runtime")


MAX_DOWNLOADS = 4  # artifact downloads at once; further loads wait for a thread


@dataclass(frozen=True)
class LoadResult:
    message: str
    already_loaded: bool
    lora_path: str
    download_seconds: float | None = None
    load_seconds: float = 0.0
    warnings: tuple[str, ...] = ()
    rank: int | None = None  # from adapter_config.json, when the runtime could read it


class AdapterService:
    """Loads and unloads adapters in the engine and remembers them (in memory and under ``adapter_dir``)."""

    def __init__(
        self, engine: Engine, adapter_dir: Path | None = None, admission: AdapterAdmission | None = None
    ) -> None:
        self.engine, self.admission = engine, admission
        self.locks = KeyedLocks()
        self.adapter_dir = adapter_dir
        self._engine_lists_adapters = False
        self.record = AdapterRecord(adapter_dir)
        # Artifact downloads run in threads of their own, a few at a time: they may last minutes, and the default
        # executor is where the event loop resolves names (every new engine connection to "localhost").
        self._downloads = ThreadPoolExecutor(MAX_DOWNLOADS, thread_name_prefix="adapter-download")
        self.managed: dict[str, ManagedAdapter] = self._read_record()
        # The Authorization each adapter was loaded with, so a re-load after an engine restart is allowed where
        # the load was. Held in memory only: never persisted, never listed.
        self._auth: dict[str, str | None] = {}
        self._inflight: dict[str, ManagedAdapter] = {}  # loads the engine is asked for now: recorded already

    @property
    def loaded(self) -> dict[str, str]:
        return {a.name: a.lora_path for a in self.managed.values() if a.state == AdapterState.LOADED}

    @property
    def wanted(self) -> dict[str, str]:
        """Adapters the runtime keeps in the engine: loaded ones and those it is loading again."""
        return {a.name: a.lora_path for a in self.managed.values() if a.state in WANTED}

    async def load(
        self,
        name: str,
        path: str,
        *,
        auth: str | None = None,
        source: str | None = None,
        delegated: bool = False,
        digest: str | None = None,
    ) -> LoadResult:
        async with self.locks.hold(name):
            judge = await self._judge(name, path, auth, downloaded=False, digest=digest)
            return await self._load_locked(
                name, path, auth=auth, source=source or path, delegated=delegated, judge=judge
            )

    async def load_artifact(
        self,
        name: str,
        source: str,
        fetch_into: FetchInto,
        *,
        auth: str | None = None,
        digest: str | None = None,
    ) -> LoadResult:
        """Download with ``fetch_into`` (blocking; run in a thread that stops when the event it is given is set)
        into the adapter's folder, then load from there.
        A failed download or load leaves neither files nor a half-registered adapter."""
        root = self._download_root()
        async with self.locks.hold(name):
            folder = root / name
            await self._refuse_other_path(name, str(folder), auth)
            previous = self.managed.get(name)
            in_use = (
                previous is not None and previous.state == AdapterState.LOADED and previous.lora_path == str(folder)
            )
            self._set(ManagedAdapter(name, str(folder), source, True, state=AdapterState.DOWNLOADING))
            started = time.monotonic()
            try:
                await run_download(fetch_into(name), self._downloads)
                downloaded = time.monotonic() - started
                judge = await self._judge(name, str(folder), auth, downloaded=True, digest=digest)
                self._set(ManagedAdapter(name, str(folder), source, True, state=AdapterState.LOADING))
                result = await self._load_locked(
                    name, str(folder), auth=auth, source=source, delegated=True, judge=judge
                )
            except BaseException as exc:
                if in_use and previous is not None:
                    self._set(previous)  # the engine still serves it from these files: keep both
                else:
                    shutil.rmtree(folder, ignore_errors=True)
                    self._set(
                        ManagedAdapter(name, str(folder), source, True, state=AdapterState.FAILED, reason=_reason(exc))
                    )
                raise
            return dataclasses.replace(result, download_seconds=downloaded)

    async def prepare(self, name: str, source: str, fetch_into: FetchInto) -> str:
        """Download an adapter the engine loads itself (vLLM's resolver loads the folder this returns). It is recorded
        as loaded at once: the keeper loads it again if the engine never did or lost it, and an unload removes it."""
        root = self._download_root()
        async with self.locks.hold(name):
            managed = self.managed.get(name)
            if managed is not None and managed.state in WANTED:
                return managed.lora_path
            folder = str(root / name)
            self._set(ManagedAdapter(name, folder, source, True, state=AdapterState.DOWNLOADING))
            try:
                await run_download(fetch_into(name), self._downloads)
                _, size, rank = await self._admit(name, folder, None, delegated=True)
            except BaseException as exc:
                shutil.rmtree(folder, ignore_errors=True)
                self._set(ManagedAdapter(name, folder, source, True, state=AdapterState.FAILED, reason=_reason(exc)))
                raise
            resolved = "resolved on first request"
            self._set(ManagedAdapter(name, folder, source, True, size_bytes=size, reason=resolved, rank=rank))
            await self.record.flush()
            return folder

    async def replace(
        self,
        name: str,
        source: str,
        fetch_into: FetchInto | None,
        *,
        path: str | None = None,
        auth: str | None = None,
        digest: str | None = None,
    ) -> LoadResult:
        """Serve ``name`` from a new version while the old one keeps serving: downloaded beside it (``fetch_into``
        a folder name) or read from ``path``, checked, swapped in (vLLM: in place, no gap), then the old files go.
        A failure anywhere leaves the old version serving and its record as it was."""
        async with self.locks.hold(name):
            current = self.managed.get(name)
            if current is None or current.state not in WANTED:
                raise AdapterNotFound(f"adapter {name!r} is not loaded: nothing to replace (load it without replace)")
            new, downloaded, delegated = path, None, fetch_into is not None
            if fetch_into is not None:
                primary, spare = adapter_folders(self._download_root(), name)
                new = str(spare if current.lora_path == str(primary) else primary)
            assert new is not None
            started = time.monotonic()
            try:
                if fetch_into is not None:
                    await run_download(fetch_into(Path(new).name), self._downloads)
                    downloaded = time.monotonic() - started
                warnings, size, rank = await self._admit(name, new, auth, delegated=delegated, digest=digest)
                record = ManagedAdapter(name, new, source, delegated, size_bytes=size, rank=rank)
                self._inflight[name] = record
                self.record.save(self._entries())
                message = await self.engine.replace_adapter(name, new, current.lora_path, auth=auth)
            except BaseException:
                self._inflight.pop(name, None)
                self.record.save(self._entries())
                await self.record.flush()
                if delegated:
                    shutil.rmtree(new, ignore_errors=True)
                raise
            self._inflight.pop(name, None)
            self._set(record)
            await self.record.flush()
            self._auth[name] = auth
            old = self._owned_folder(current)
            if old is not None and str(old) != new:
                await asyncio.to_thread(shutil.rmtree, old, True)
            seconds = time.monotonic() - started - (downloaded or 0.0)
            return LoadResult(message, False, new, downloaded, seconds, warnings)

    def _download_root(self) -> Path:
        if self.adapter_dir is None:
            raise APIError(501, "this runtime has no adapter directory to download into", "NotSupported")
        return self.adapter_dir

    async def _admit(
        self, name: str, path: str, auth: str | None, *, delegated: bool, digest: str | None = None
    ) -> tuple[tuple[str, ...], int, int | None]:
        """The admission checks (aibrix.peft), InvalidAdapter before the engine is asked, else what ``_checks``
        returns: one trip to a thread and one scan of the folder for the checks and its size."""
        judge = await self._judge(name, path, auth, downloaded=delegated, digest=digest)
        return await asyncio.to_thread(_checks, path, delegated, judge)

    async def _judge(
        self, name: str, path: str, auth: str | None, *, downloaded: bool, digest: str | None = None
    ) -> Judge | None:
        if self.admission is None:
            return None
        return await self.admission.judge(name, path, auth=auth, downloaded=downloaded, digest=digest)

    async def _refuse_other_path(self, name: str, path: str, auth: str | None) -> None:
        """409 before any byte is downloaded when ``name`` is already served from somewhere else; the live record
        and the engine's adapter stay as they are."""
        managed = self.managed.get(name)
        current = managed.lora_path if managed is not None and managed.state in WANTED else None
        if self.engine.lists_adapters or self._engine_lists_adapters:
            current = await self.engine.adapter_path(name, auth=auth) or current
        if current is not None and not same_path(current, path):
            raise _loaded_elsewhere(name, current, path)

    async def _load_locked(
        self, name: str, path: str, *, auth: str | None, source: str, delegated: bool, judge: Judge | None = None
    ) -> LoadResult:
        """Check the files (``judge``), then ask the engine while the record, with this adapter in it, is written
        (runtime/preflight.py). The record is on disk before the answer; if the load fails it is written back."""
        started = time.monotonic()
        pending = self._inflight[name] = ManagedAdapter(name, path, source, delegated)
        try:
            snapshot = self.record.snapshot(self._entries())
            checks = functools.partial(_checks, path, delegated, judge)
            (warnings, size, rank), recorded = await preflight(checks, functools.partial(self.record.write, snapshot))
            try:
                message, already = await self.engine.load_adapter(name, path, auth=auth), False
            except AdapterAlreadyLoaded as exc:
                message, already = await self._already_loaded(name, path, auth, exc), True
            await recorded
        except BaseException as exc:
            self._inflight.pop(name, None)
            self.record.save(self._entries())  # numbered after the load's snapshot: it wins whichever lands last
            await self.record.flush()
            if isinstance(exc, EngineError) and self.admission is not None:
                self.admission.learn(exc.message)
            raise
        self._inflight.pop(name, None)
        self._set(dataclasses.replace(pending, size_bytes=size, rank=rank))
        await self.record.flush()  # only a downloaded adapter's size changes it here
        self._auth[name] = auth
        return LoadResult(message, already, path, None, time.monotonic() - started, warnings, rank)

    async def _already_loaded(self, name: str, path: str, auth: str | None, exc: AdapterAlreadyLoaded) -> str:
        """The engine holds ``name``: fine when from ``path`` (loads are idempotent), a conflict otherwise."""
        current = await self.engine.adapter_path(name, auth=auth) or self.loaded.get(name)
        if not same_path(current, path):
            raise _loaded_elsewhere(name, current, path) from exc
        return f"adapter {name!r} is already loaded from {path!r}"

    async def unload(self, name: str, *, auth: str | None = None, cleanup_local: bool = True) -> str:
        async with self.locks.hold(name):
            managed = self.managed.get(name)
            try:
                message = await self.engine.unload_adapter(name, auth=auth)
            except AdapterNotFound:
                await self._forget(name, managed, cleanup_local)
                raise AdapterNotFound(f"adapter {name!r} is not loaded") from None
            await self._forget(name, managed, cleanup_local)
            return message

    async def _forget(self, name: str, managed: ManagedAdapter | None, cleanup_local: bool) -> None:
        """Drop the adapter from memory and from the record (on disk before the unload is answered)."""
        self.managed.pop(name, None)
        self._auth.pop(name, None)
        self.record.save(self._entries())
        await self.record.flush()
        folder = self._owned_folder(managed) if cleanup_local and managed is not None else None
        if folder is not None:
            await asyncio.to_thread(shutil.rmtree, folder, True)

    async def models(self, *, auth: str | None = None) -> list[ModelCard]:
        """The engine's model cards, plus cards for adapters this runtime loaded that the engine does not list."""
        cards = [{"object": "model", "parent": None, **card} for card in await self.engine.list_models(auth=auth)]
        listed = {card["id"] for card in cards}
        complete = self.engine.lists_adapters or self._engine_lists_adapters or any(c.get("parent") for c in cards)
        if complete and not self.engine.restores_evicted:
            return cards  # the engine's list is complete; never show adapters it does not have
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

    async def reconcile(self, *, engine_came_back: bool = False) -> int:
        """Load again the adapters this runtime manages that the engine no longer has (it restarted).

        Engines that list adapters in /v1/models are compared every time. For one that does not (SGLang before
        #12229), or one that evicts adapters and loads them back on their next request (SGLang with
        --max-loaded-loras), an absence proves nothing: the runtime re-loads only when the engine came back from
        being unreachable (a restart forgets every adapter), relying on loads being idempotent. Re-loading an
        evicted adapter would evict another, and the next pass that one: churn. Each re-load carries the
        Authorization its adapter was loaded with."""
        if not self.wanted:
            return 0
        listed = {card["id"] for card in await self._list_for_reconcile() if card.get("parent")}
        self._engine_lists_adapters = self._engine_lists_adapters or bool(listed) or self.engine.lists_adapters
        compare = self._engine_lists_adapters and not self.engine.restores_evicted  # else an absence may be an eviction
        if not compare and not engine_came_back:
            return 0
        missing = [name for name in self.wanted if name not in listed]
        reloaded = sum(await asyncio.gather(*(self._reload(name) for name in missing)))
        if reloaded:
            log.info("re-loaded %d adapter(s) the engine had lost", reloaded)
        return reloaded

    async def _list_for_reconcile(self) -> list[ModelCard]:
        """The engine's model list, with the runtime's own key or, if the engine refuses it, a key an adapter
        was loaded with (the controller sends the engine's key with each load, not to the runtime's environment)."""
        keys = [None] + sorted({auth for auth in self._auth.values() if auth})
        for index, auth in enumerate(keys):
            try:
                return await self.engine.list_models(auth=auth)
            except EngineError as exc:
                if exc.status not in (401, 403) or index == len(keys) - 1:
                    raise
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _reload(self, name: str) -> bool:
        async with self.locks.hold(name):
            managed = self.managed.get(name)
            if managed is None or managed.state not in WANTED:
                return False  # unloaded (or failed) while this pass was on its way
            if managed.delegated and not Path(managed.lora_path).exists():
                self._mark(managed, AdapterState.FAILED, "the engine lost it and its files are gone")
                return False
            self._mark(managed, AdapterState.RELOADING, "the engine lost it; loading it again")
            auth = self._auth.get(name)
            try:
                result = await self._load_locked(
                    name, managed.lora_path, auth=auth, source=managed.source, delegated=managed.delegated
                )
            except EngineError as exc:
                log.warning("re-loading adapter %s failed (%d): %s", name, exc.status, exc.message)
                if exc.status < 500:  # the engine refuses it (path gone, key wrong, ...): stop retrying, say why
                    self._mark(
                        managed, AdapterState.FAILED, f"re-load refused by the engine ({exc.status}): {exc.message}"
                    )
                else:  # may pass: try again next round, and meanwhile never claim it is loaded
                    self._mark(managed, AdapterState.RELOADING, f"the engine lost it; re-load failed: {exc.message}")
                return False
            return not result.already_loaded

    def _mark(self, managed: ManagedAdapter, state: AdapterState, reason: str) -> None:
        self._set(dataclasses.replace(managed, state=state, reason=reason, updated=time.time()))

    def listing(self) -> list[dict[str, Any]]:
        return [adapter.as_dict() for adapter in sorted(self.managed.values(), key=lambda a: a.name)]

    def _set(self, adapter: ManagedAdapter) -> None:
        """Remember ``adapter``; the record changes when it is wanted in the engine or has failed (a download in
        progress leaves the record as it was, so files the engine still serves stay recorded)."""
        self.managed[adapter.name] = adapter
        if adapter.state in (*WANTED, AdapterState.FAILED):
            self.record.save(self._entries())

    def _entries(self) -> list[dict[str, Any]]:
        """What the record holds: the adapters kept in the engine, and those being loaded into it now."""
        adapters = {a.name: a for a in self.managed.values() if a.state in WANTED} | self._inflight
        return [a.as_dict() for a in sorted(adapters.values(), key=lambda a: a.name)]

    def _read_record(self) -> dict[str, ManagedAdapter]:
        """The adapters the record says to keep, each checked as strictly as a request: the file may have been
        edited, and an unload deletes what a delegated entry names."""
        adapters = {}
        for entry in self.record.read():
            try:
                adapter = ManagedAdapter(**entry)
            except TypeError:
                continue
            problem = record_problem(self.adapter_dir, adapter)
            if problem:
                log.warning("adapter record: entry %r ignored: %s", capped(str(adapter.name), 100), problem)
            elif adapter.state in WANTED:
                adapters[adapter.name] = adapter
        return adapters

    def _owned_folder(self, adapter: ManagedAdapter) -> Path | None:
        return owned_folder(self.adapter_dir, adapter)

    def close(self) -> None:
        self.record.close()
        self._downloads.shutdown(wait=False, cancel_futures=True)


def _checks(path: str, delegated: bool, judge: Judge | None) -> tuple[tuple[str, ...], int, int | None]:
    """In a worker thread: the admission checks' warnings, the size a downloaded adapter takes on disk, and the
    adapter's rank when its files say (the controller places by it)."""
    warnings, size, rank = judge() if judge is not None else ([], None, None)
    if delegated and size is None:
        size = folder_size(path)
    return tuple(warnings), size if delegated and size is not None else 0, rank


def _loaded_elsewhere(name: str, current: str | None, path: str) -> AdapterAlreadyLoaded:
    where = f"from {current!r}" if current else "from a path the engine does not report"
    return AdapterAlreadyLoaded(
        f"adapter {name!r} is already loaded {where}; unload it before loading it from {path!r}"
    )


def _reason(exc: BaseException) -> str:
    return capped(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
