"""The runtime's record of the adapters it keeps loaded, on disk under the adapter directory.

Written atomically (temporary name, then rename) by one worker thread of its own: the event loop never waits on
the disk, writes land in the order they were asked for (so an older snapshot never replaces a newer one), and a
snapshot equal to the last one written is not written again. Credentials are never part of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aibrix.storage.atomic import write_atomic

log = logging.getLogger("aibrix.runtime")
STATE_FILE = ".runtime-adapters.json"


class AdapterRecord:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adapter-record")
        self._last: bytes | None = None
        self._pending: Future[None] | None = None

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

    def save(self, entries: list[dict[str, Any]]) -> None:
        """Start writing ``entries``; ``flush`` waits until they are on disk."""
        if self.folder is None:
            return
        data = json.dumps({"adapters": entries}, sort_keys=True).encode()
        self._pending = self._executor.submit(self._write, data)

    async def flush(self) -> None:
        """Wait until everything asked for so far is on disk."""
        pending = self._pending
        if pending is not None and not pending.done():
            await asyncio.wrap_future(pending)

    def _write(self, data: bytes) -> None:
        if data == self._last or self.folder is None:
            return
        try:
            write_atomic(self.folder / STATE_FILE, data)
            self._last = data
        except OSError as exc:
            log.warning("cannot persist adapter state under %s: %s", self.folder, exc)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
