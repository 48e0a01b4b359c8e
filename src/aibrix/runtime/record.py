"""The runtime's record of the adapters it keeps loaded, on disk under the adapter directory.

Written atomically (temporary name, then rename), never on the event loop: by a worker thread of its own, or by the
thread a load already runs its checks in (one trip to a thread instead of two). Each snapshot is numbered when it
is taken, on the loop, and a writer never puts an older snapshot over a newer one, whichever thread writes it; a
snapshot equal to the last one taken is not written again. Credentials are never part of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from aibrix.storage.atomic import write_atomic

log = logging.getLogger("aibrix.runtime")
STATE_FILE = ".runtime-adapters.json"


class Snapshot(NamedTuple):
    number: int
    data: bytes


class AdapterRecord:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adapter-record")
        self._pending: Future[None] | None = None
        self._taken = 0  # the number of the last snapshot taken (event loop)
        self._taken_data: bytes | None = None
        self._lock = threading.Lock()
        self._written = 0  # the number of the snapshot on disk (writers, under the lock)

    def read(self) -> list[dict[str, Any]]:
        """The entries last written, or none when there is no readable record (first start, corrupt file)."""
        if self.folder is None:
            return []
        try:
            raw = json.loads((self.folder / STATE_FILE).read_bytes())
            entries = raw.get("adapters", [])
        except (FileNotFoundError, ValueError, AttributeError, OSError):
            return []
        return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []

    def snapshot(self, entries: list[dict[str, Any]]) -> Snapshot | None:
        """Take a snapshot to ``write`` in a thread; None when there is nothing new to write."""
        if self.folder is None:
            return None
        data = json.dumps({"adapters": entries}, sort_keys=True).encode()
        if data == self._taken_data:
            return None
        self._taken += 1
        self._taken_data = data
        return Snapshot(self._taken, data)

    def write(self, snapshot: Snapshot | None) -> None:
        """Put ``snapshot`` on disk, from any thread but the event loop's, unless a newer one is there already."""
        if snapshot is None or self.folder is None:
            return
        with self._lock:
            if snapshot.number <= self._written:
                return
            try:
                write_atomic(self.folder / STATE_FILE, snapshot.data)
                self._written = snapshot.number
            except OSError as exc:
                self._taken_data = None  # the next snapshot is written, even when it holds the same
                log.warning("cannot persist adapter state under %s: %s", self.folder, exc)

    def save(self, entries: list[dict[str, Any]]) -> None:
        """Start writing ``entries`` in the record's thread; ``flush`` waits until they are on disk."""
        snapshot = self.snapshot(entries)
        if snapshot is not None:
            self._pending = self._executor.submit(self.write, snapshot)

    async def flush(self) -> None:
        """Wait until everything ``save`` was asked so far is on disk."""
        pending = self._pending
        if pending is not None and not pending.done():
            await asyncio.wrap_future(pending)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
