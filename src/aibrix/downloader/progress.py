"""What a download reports: progress while it runs, a result when it ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    path: Path
    files: int
    downloaded_files: int
    downloaded_bytes: int
    skipped_files: int
    seconds: float


class Progress:
    """Thread-safe byte counter with a total, for progress bars and summaries."""

    def __init__(self, total: int, on_update: Callable[[Progress], None] | None = None) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self._lock = threading.Lock()
        self._on_update = on_update
        self._last_report = 0.0

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
        now = time.monotonic()
        if self._on_update is not None and now - self._last_report >= 0.2:
            self._last_report = now
            self._on_update(self)
