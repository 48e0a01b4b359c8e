"""The download engine: many files at once, large files in ranged parts, all written in place.

Safety rules it keeps:
- bytes land in ``<dest>/.aibrix/partial/<path>.part`` and are renamed to ``<dest>/<path>`` only once the size and
  the source's checksum match, so a final name never holds a partial file;
- finished parts are recorded (atomically) beside the partial file, so a killed download resumes without refetching
  them, and restarts when the remote object changed;
- a finished file gets a record of its size, mtime and remote version, so a re-run skips it without hashing;
- one process at a time works on a destination (``flock`` on ``<dest>/.aibrix/lock``); a second one waits, then
  finds the files done;
- every connection goes through the outbound policy; every retry comes from one budget per download.

The pieces: ``job`` (one file), ``parts`` (one ranged fetch), ``disk``, ``records``, ``checksums``, ``progress``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aibrix.downloader.disk import STATE_DIR, check_space, exclusive, target_path
from aibrix.downloader.job import FileJob, Part
from aibrix.downloader.parts import fetch_part
from aibrix.downloader.progress import Progress, Result
from aibrix.downloader.records import is_complete
from aibrix.storage.base import AccessDenied, RemoteFile, StorageError, TooLarge
from aibrix.storage.http import Transport
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy
from aibrix.storage.retry import RetryBudget, RetryPolicy

MIN_PART = 8 << 20


class Downloader:
    """Fetches a list of remote files into ``dest`` with ``threads`` connections in all."""

    def __init__(
        self,
        *,
        threads: int = 16,
        part_size: int = 64 << 20,
        timeout: float = 60.0,
        fsync: bool = False,
        policy: OutboundPolicy = DEFAULT_POLICY,
        retries: RetryPolicy | None = None,
        retry_budget: int | None = None,
        min_rate: int = 64 << 10,
        force: bool = False,
        part_threshold: int | None = None,
    ) -> None:
        """``retries`` per part, ``retry_budget`` retries for a whole download (default: twice the threads, at
        least 20); a part gets ``retries.deadline`` seconds, or as long as ``min_rate`` bytes per second needs.
        ``force`` fetches every file again; files up to ``part_threshold`` bytes are fetched in one part."""
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads, self.part_size, self.timeout, self.fsync = threads, part_size, timeout, fsync
        self.policy = policy
        self.retries = retries or RetryPolicy()
        self.retry_budget = retry_budget if retry_budget is not None else max(20, 2 * threads)
        self.min_rate, self.force, self.part_threshold = min_rate, force, part_threshold

    def download(
        self, files: list[RemoteFile], dest: Path, *, on_progress: Callable[[Progress], None] | None = None
    ) -> Result:
        started = time.monotonic()
        (dest / STATE_DIR).mkdir(parents=True, exist_ok=True)
        with exclusive(dest):
            jobs, skipped = [], 0
            for remote in files:
                target = target_path(dest, remote.path)
                if not self.force and is_complete(target, remote, dest):
                    skipped += 1
                    continue
                jobs.append(FileJob(remote, target, dest, self._part_size_for(remote, len(files)), self.fsync))
            total = sum(job.remote.size or 0 for job in jobs)
            check_space(dest, total)
            progress = Progress(total, on_progress)
            _Run(self, progress).run(jobs)
            if on_progress is not None:
                on_progress(progress)
        return Result(dest, len(files), len(jobs), progress.done, skipped, time.monotonic() - started)

    def _part_size_for(self, remote: RemoteFile, file_count: int) -> int:
        """Parts small enough to keep every connection busy, never below 8 MiB nor above the configured size."""
        if remote.size is None:
            return self.part_size
        if self.part_threshold is not None and remote.size <= self.part_threshold:
            return max(remote.size, 1)
        spread = remote.size * max(1, min(file_count, self.threads)) // self.threads
        return max(MIN_PART, min(self.part_size, spread))


class _Run:
    """One call of ``Downloader.download``: its queue, its workers, its connections and its retry budget."""

    def __init__(self, downloader: Downloader, progress: Progress) -> None:
        self.threads, self.progress = downloader.threads, progress
        self.transport = Transport(downloader.policy, downloader.timeout)
        self.retries, self.budget = downloader.retries, RetryBudget(downloader.retry_budget)
        self.min_rate, self.cap = downloader.min_rate, downloader.policy.max_bytes
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self, jobs: list[FileJob]) -> None:
        work: queue.Queue[Part | None] = queue.Queue()
        try:
            for job in jobs:
                for part in job.plan():
                    work.put(part)
            workers = [
                threading.Thread(target=self._worker, args=(work,), daemon=True)
                for _ in range(min(self.threads, max(1, work.qsize())))
            ]
            for _ in workers:
                work.put(None)
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            if self.errors:
                raise self.errors[0]
        finally:
            for job in jobs:
                job.close()

    def _worker(self, work: queue.Queue[Part | None]) -> None:
        try:
            while (part := work.get()) is not None:
                if self.stop.is_set():
                    continue
                try:
                    part.job.ensure_open()
                    if part.index >= 0:
                        self._fetch(part)
                    if part.index < 0 or part.job.finish_part(part.index):
                        part.job.complete()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                    self.errors.append(exc)
                    self.stop.set()
        finally:
            self.transport.close_thread()

    def _fetch(self, part: Part) -> None:
        """The part, retried by the download's policy; after an access denial (credentials that expired
        mid-download) once more with fresh credentials, when the source can give them."""
        length = part.end - part.start + 1 if part.end >= 0 else part.job.part_size
        deadline = max(self.retries.deadline, length / self.min_rate)
        refreshed = False
        while True:
            generation = part.job.generation
            try:
                self.retries.call(
                    lambda give_up_at: self._attempt(part, give_up_at), budget=self.budget, deadline=deadline
                )
                return
            except AccessDenied:
                if refreshed or not part.job.refresh(generation):
                    raise
                refreshed = True

    def _attempt(self, part: Part, give_up_at: float) -> None:
        written = 0

        def count(n: int) -> None:
            nonlocal written
            written += n
            self.progress.add(n)
            # Declared sizes were checked before the first byte; a file whose size was not declared is read to
            # its end, so the cap is held here too, as the bytes arrive.
            if self.cap is not None and self.progress.done > self.cap:
                raise TooLarge(f"{part.job.remote.path}: the download passed the limit of {self.cap} bytes")

        try:
            fetch_part(self.transport, part, count, give_up_at)
        except StorageError:
            self.progress.add(-written)  # the part is fetched again from its start
            raise
