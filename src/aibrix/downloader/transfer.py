"""The download engine: many files at once, large files in ranged parts, all written in place.

Safety rules it keeps:
- bytes land in ``<dest>/.aibrix/partial/<path>.part`` and are renamed to ``<dest>/<path>`` only once the size and
  the source's checksum match, so a final name never holds a partial file;
- finished parts are recorded (atomically) beside the partial file, so a killed download resumes without refetching
  them, and restarts when the remote object changed;
- a finished file gets a record of its size, mtime and remote version, so a re-run skips it without hashing;
- one process at a time works on a destination (``flock`` on ``<dest>/.aibrix/lock``); a second one waits, then
  finds the files done.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import http.client
import json
import os
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from aibrix.storage.base import (
    LocalWriteError,
    NoSpace,
    RemoteFile,
    StorageError,
    TransientError,
    safe_relative,
)
from aibrix.storage.fetch import classify, keeps_credentials

STATE_DIR = ".aibrix"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


BOOT_ID = _boot_id()
CHUNK = 4 << 20  # per read and write; 1 MiB reads cost ~15% more wall time on loopback
MIN_PART = 8 << 20
MAX_ATTEMPTS = 5


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


@dataclass
class _Part:
    job: _FileJob
    index: int
    start: int
    end: int  # inclusive; -1 for "to the end" of a file of unknown size


class _FileJob:
    """One file being downloaded: its partial file, its resume record, its parts still to fetch."""

    def __init__(self, remote: RemoteFile, target: Path, state: Path, part_size: int, durable: bool) -> None:
        self.remote, self.target, self.durable = remote, target, durable
        self.partial = state / "partial" / (remote.path + ".part")
        self.record = state / "partial" / (remote.path + ".json")
        self.part_size = part_size
        self.lock = threading.Lock()
        size = remote.size
        if size == 0:
            self.count = 0
        elif size is None or not remote.ranges or size <= part_size:
            self.count = 1
        else:
            self.count = -(-size // part_size)
        self.done: set[int] = set()
        self.resumable = False
        self.fd = -1
        self.hasher = _new_hasher(remote.digest, size) if remote.digest else None
        self._hash_lock = threading.Lock()
        self._hashed_parts = 0  # parts 0.._hashed_parts-1 are in the hash

    def plan(self) -> list[_Part]:
        """The parts still to fetch, from the resume record; no file is opened yet."""
        previous = _read_json(self.record)
        self.resumable = (
            previous is not None
            and self.partial.exists()
            and previous.get("version") == self.remote.version
            and previous.get("size") == self.remote.size
            and previous.get("part_size") == self.part_size
            and self.remote.version is not None
        )
        self.done = set(previous["done"]) if self.resumable and previous else set()
        size = self.remote.size
        parts = []
        for index in range(self.count):
            if index in self.done:
                continue
            start = index * self.part_size
            end = -1 if size is None else (size - 1 if index == self.count - 1 else start + self.part_size - 1)
            parts.append(_Part(self, index, start, end))
        return parts

    def ensure_open(self) -> None:
        """Open (and reserve) the partial file when a worker first needs it, so a repository with more files than
        the open-file limit never has them all open at once: files are opened in queue order and closed when done."""
        with self.lock:
            if self.fd >= 0:
                return
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | (0 if self.resumable else os.O_TRUNC)
            self.fd = os.open(self.partial, flags, 0o644)
            if self.remote.size:
                _reserve(self.fd, self.remote.size, self.remote.path)
            self._save()

    def finish_part(self, index: int) -> bool:
        """Record a finished part; True when it was the file's last one."""
        with self.lock:
            self.done.add(index)
            self._save()
            last = len(self.done) == self.count
        if self.durable:
            _start_writeback(self.fd, index * self.part_size, self.part_size)
        self.hash_ready_parts()
        return last

    def hash_ready_parts(self) -> None:
        """Feed the hash with the finished parts that follow the hashed ones, while other parts still download:
        the checksum is then ready almost as soon as the last byte lands."""
        if self.hasher is None or not self._hash_lock.acquire(blocking=False):
            return  # another worker is already hashing this file; it will pick up this part too
        try:
            self._hash_done_parts()
        finally:
            self._hash_lock.release()

    def digest_matches(self) -> bool:
        """Whether the file's bytes have the source's checksum; waits for (and then finishes) any hashing under
        way, so another worker hashing at this moment can never make a good file look corrupt."""
        assert self.remote.digest is not None and self.hasher is not None
        with self._hash_lock:
            self._hash_done_parts()
            return self._hashed_parts == self.count and self.hasher.hexdigest() == self.remote.digest[1].lower()

    def _hash_done_parts(self) -> None:
        """Hash the finished parts in order from the first one not hashed yet; the caller holds the hash lock."""
        assert self.hasher is not None
        while self._hashed_parts < self.count and self._hashed_parts in self.done:
            start = self._hashed_parts * self.part_size
            end = min(start + self.part_size, self.remote.size or 0)
            while start < end:
                chunk = os.pread(self.fd, min(2 * CHUNK, end - start), start)
                if not chunk:
                    raise StorageError(f"{self.remote.path}: partial file shorter than expected")
                self.hasher.update(chunk)
                start += len(chunk)
            self._hashed_parts += 1

    def _save(self) -> None:
        record = {"version": self.remote.version, "size": self.remote.size, "part_size": self.part_size}
        _write_json(self.record, {**record, "done": sorted(self.done)})

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Downloader:
    """Fetches a list of remote files into ``dest`` with ``threads`` connections in all."""

    def __init__(
        self,
        *,
        threads: int = 16,
        part_size: int = 64 << 20,
        timeout: float = 60.0,
        fsync: bool = False,
        url_guard: Callable[[str], None] | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self.fsync = fsync
        self.url_guard = url_guard  # called with every URL fetched, redirects included (SSRF checks)
        self.part_size = part_size
        self.timeout = timeout
        self._local = threading.local()
        self._ssl: ssl.SSLContext | None = None

    def download(
        self, files: list[RemoteFile], dest: Path, *, on_progress: Callable[[Progress], None] | None = None
    ) -> Result:
        started = time.monotonic()
        dest.mkdir(parents=True, exist_ok=True)
        state = dest / STATE_DIR
        state.mkdir(exist_ok=True)
        with _exclusive(state / "lock"):
            jobs, skipped = [], 0
            for remote in files:
                target = _target(dest, remote.path)
                if _is_complete(target, remote, state):
                    skipped += 1
                    continue
                jobs.append(_FileJob(remote, target, state, self._part_size_for(remote, len(files)), self.fsync))
            total = sum(job.remote.size or 0 for job in jobs)
            _check_space(dest, total)
            progress = Progress(total, on_progress)
            self._run(jobs, progress, state)
            if on_progress is not None:
                on_progress(progress)
        return Result(dest, len(files), len(jobs), progress.done, skipped, time.monotonic() - started)

    def _part_size_for(self, remote: RemoteFile, file_count: int) -> int:
        """Parts small enough to keep every connection busy, never below 8 MiB nor above the configured size."""
        if remote.size is None:
            return self.part_size
        spread = remote.size * max(1, min(file_count, self.threads)) // self.threads
        return max(MIN_PART, min(self.part_size, spread))

    def _run(self, jobs: list[_FileJob], progress: Progress, state: Path) -> None:
        work: queue.Queue[_Part | None] = queue.Queue()
        try:
            for job in jobs:
                parts = job.plan()
                if not parts:  # every part was already fetched before an interruption
                    work.put(_Part(job, -1, 0, 0))
                for part in parts:
                    work.put(part)
            errors: list[BaseException] = []
            stop = threading.Event()
            workers = [
                threading.Thread(target=self._worker, args=(work, progress, state, errors, stop), daemon=True)
                for _ in range(min(self.threads, max(1, work.qsize())))
            ]
            for _ in workers:
                work.put(None)
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            if errors:
                raise errors[0]
        finally:
            for job in jobs:
                job.close()

    def _worker(
        self,
        work: queue.Queue[_Part | None],
        progress: Progress,
        state: Path,
        errors: list[BaseException],
        stop: threading.Event,
    ) -> None:
        try:
            while (part := work.get()) is not None:
                if stop.is_set():
                    continue
                try:
                    part.job.ensure_open()
                    if part.index >= 0:
                        self._fetch_with_retries(part, progress)
                    if part.index < 0 or part.job.finish_part(part.index):
                        _complete(part.job, state)
                        part.job.close()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                    errors.append(exc)
                    stop.set()
        finally:
            for conn in getattr(self._local, "conns", {}).values():
                conn.close()

    def _fetch_with_retries(self, part: _Part, progress: Progress) -> None:
        delay = 0.5
        for attempt in range(1, MAX_ATTEMPTS + 1):
            written = 0

            def count(n: int) -> None:
                nonlocal written
                written += n
                progress.add(n)

            try:
                self._fetch(part, count)
                return
            except StorageError as exc:
                error: StorageError = exc
            except (OSError, http.client.HTTPException) as exc:
                error = TransientError(f"{part.job.remote.path}: {type(exc).__name__}: {exc}")
                self._drop_connection(part.job.remote.url)
            progress.add(-written)  # the part is fetched again from its start
            if not error.transient or attempt == MAX_ATTEMPTS:
                raise error
            time.sleep(delay)
            delay *= 2

    def _fetch(self, part: _Part, count: Callable[[int], None]) -> None:
        remote = part.job.remote
        if remote.url.startswith("file://"):
            _copy_local(remote.url[len("file://") :], part, count)
            return
        headers = dict(remote.headers)
        if part.job.count > 1 or part.start > 0:
            headers["Range"] = f"bytes={part.start}-{'' if part.end < 0 else part.end}"
        url = remote.url
        for _ in range(6):  # redirects
            if self.url_guard is not None:
                self.url_guard(url)
            response = self._request(url, headers)
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("location", "")
                response.read()
                next_url = urljoin(url, location)
                if not keeps_credentials(url, next_url):
                    headers.pop("Authorization", None)  # never hand a token to another origin
                url = next_url
                continue
            break
        else:
            raise StorageError(f"{remote.path}: too many redirects")
        if response.status not in (200, 206):
            body = response.read(300).decode(errors="replace")
            raise classify(response.status, remote.path, body)
        if "Range" in headers and response.status != 206:
            raise StorageError(f"{remote.path}: the server ignored a Range request (HTTP {response.status})")
        expected = None if part.end < 0 else part.end - part.start + 1
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        offset, remaining = part.start, expected
        fd = part.job.fd
        while remaining is None or remaining > 0:
            n = response.readinto(view if remaining is None else view[: min(CHUNK, remaining)])
            if not n:
                if remaining is None:
                    break
                raise TransientError(f"{remote.path}: connection closed {remaining} bytes early")
            _write(fd, view[:n], offset, remote.path)
            offset += n
            count(n)
            if remaining is not None:
                remaining -= n
        if remaining is None:
            os.ftruncate(fd, offset)

    def _request(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        conn = self._connection(parts.scheme, parts.netloc)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request("GET", path, headers=headers)
            return conn.getresponse()
        except (OSError, http.client.HTTPException):
            # A kept-alive connection the server closed meanwhile: one fresh try.
            self._drop_connection(url)
            conn = self._connection(parts.scheme, parts.netloc)
            conn.request("GET", path, headers=headers)
            return conn.getresponse()

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        conns: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        conn = conns.get((scheme, netloc))
        if conn is None:
            if scheme == "https":
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                conn = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._ssl)
            elif scheme == "http":
                conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
            else:
                raise StorageError(f"unsupported URL scheme {scheme!r}")
            conns[(scheme, netloc)] = conn
        return conn

    def _drop_connection(self, url: str) -> None:
        parts = urlsplit(url)
        conn = self._local.__dict__.get("conns", {}).pop((parts.scheme, parts.netloc), None)
        if conn is not None:
            conn.close()


def _copy_local(source: str, part: _Part, count: Callable[[int], None]) -> None:
    with open(source, "rb") as src:
        offset = part.start
        end = os.fstat(src.fileno()).st_size - 1 if part.end < 0 else part.end
        while offset <= end:
            data = os.pread(src.fileno(), min(2 * CHUNK, end - offset + 1), offset)
            if not data:
                raise StorageError(f"{source}: shorter than expected")
            _write(part.job.fd, data, offset, part.job.remote.path)
            offset += len(data)
            count(len(data))


def _check_space(dest: Path, needed: int) -> None:
    """Fail before the first byte when the destination's filesystem cannot hold the download."""
    stat = os.statvfs(dest)
    free = stat.f_bavail * stat.f_frsize
    if needed > free:
        raise NoSpace(f"{dest}: not enough disk space: the download needs {needed} bytes, {free} are free")


def _reserve(fd: int, size: int, path: str) -> None:
    """Claim the file's disk space up front, so a full disk fails at once and clearly, not mid-way."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"{path}: not enough disk space for {size} bytes ({exc.strerror})") from None
        os.ftruncate(fd, size)  # filesystems without fallocate
    os.ftruncate(fd, size)  # a resumed file may have been longer


def _write(fd: int, data: memoryview | bytes, offset: int, path: str) -> None:
    try:
        os.pwrite(fd, data, offset)
    except OSError as exc:  # a local write failure (disk full, read-only) will not pass with a retry
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"{path}: the local disk is full ({exc.strerror})") from None
        raise LocalWriteError(f"{path}: cannot write the local file ({exc.strerror})") from None


def _complete(job: _FileJob, state: Path) -> None:
    """Verify the partial file, then move it to its final name and record it as complete."""
    remote = job.remote
    size = os.fstat(job.fd).st_size
    if remote.size is not None and size != remote.size:
        raise StorageError(f"{remote.path}: got {size} bytes, expected {remote.size}")
    if remote.digest is not None and not job.digest_matches():
        os.unlink(job.record)  # start over next time: the bytes are wrong
        raise StorageError(f"{remote.path}: {remote.digest[0]} checksum mismatch after download")
    if job.durable:
        os.fsync(job.fd)
    job.target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(job.partial, job.target)
    _record_complete(job.target, remote, state, durable=job.durable)
    os.unlink(job.record)


def _record_complete(target: Path, remote: RemoteFile, state: Path, *, durable: bool) -> None:
    """Remember that ``target`` is complete. Without fsync the bytes may still sit in the page cache, so the record
    holds only until the machine reboots (boot id); after that the file is checked again."""
    stat = target.stat()
    record = {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "version": remote.version,
        "digest": remote.digest,
        "durable": durable,
        "boot_id": BOOT_ID,
    }
    _write_json(state / "complete" / (remote.path + ".json"), record)


def _is_complete(target: Path, remote: RemoteFile, state: Path) -> bool:
    """True when ``target`` holds this remote file: by its completion record, else by size and checksum."""
    try:
        stat = target.stat()
    except FileNotFoundError:
        return False
    if remote.size is not None and stat.st_size != remote.size:
        return False
    record = _read_json(state / "complete" / (remote.path + ".json"))
    if (
        record is not None
        and record.get("size") == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
        and record.get("version") == remote.version
        and remote.version is not None
        and (record.get("durable") or record.get("boot_id") == BOOT_ID)
    ):
        return True
    if remote.digest is None:
        return False  # nothing to prove the bytes right: fetch again
    fd = os.open(target, os.O_RDONLY)
    try:
        matches = _digest_matches(fd, remote.digest, stat.st_size)
    finally:
        os.close(fd)
    if matches:
        _record_complete(target, remote, state, durable=False)
    return matches


def _new_hasher(digest: tuple[str, str], size: int | None) -> Any:
    algorithm = digest[0]
    if algorithm == "git-sha1":
        return hashlib.sha1(f"blob {size}\0".encode())
    if algorithm in ("md5", "sha256"):
        return hashlib.new(algorithm)
    raise StorageError(f"unknown checksum algorithm {algorithm!r}")


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a finished part to disk now (Linux sync_file_range), so the final fsync
    waits for little instead of the whole file."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE: start, do not wait


def _load_sync_file_range() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


_sync_file_range = _load_sync_file_range()


def _digest_matches(fd: int, digest: tuple[str, str], size: int) -> bool:
    hasher = _new_hasher(digest, size)
    expected = digest[1]
    offset = 0
    while chunk := os.pread(fd, 2 * CHUNK, offset):
        hasher.update(chunk)
        offset += len(chunk)
    return hasher.hexdigest() == expected.lower()


def _target(dest: Path, path: str) -> Path:
    """``dest/path``, refusing paths that leave ``dest``, also through symlinks planted inside it."""
    relative = safe_relative(path)
    if relative.split("/")[0] == STATE_DIR:
        raise StorageError(f"refusing file name {path!r}: {STATE_DIR} is the downloader's own directory")
    target = dest / relative
    root = dest.resolve()
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.resolve().is_relative_to(root) or (target.is_symlink()):
        raise StorageError(f"refusing to write {path!r}: it resolves outside {dest}")
    return target


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One download per destination at a time. A second one says on stderr whom it waits for, and gives up after
    DOWNLOADER_LOCK_TIMEOUT seconds (default an hour) with an error naming the holder, rather than hang silently."""
    timeout = float(os.environ.get("DOWNLOADER_LOCK_TIMEOUT") or 3600)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, said = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                where = f"another download into {lock_path.parent.parent} (pid {holder})"
                if time.monotonic() >= deadline:
                    raise StorageError(f"{where} is still running after {timeout:g}s; try again when it ends") from None
                if not said:
                    print(f"waiting for {where} to finish", file=sys.stderr, flush=True)
                    said = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
