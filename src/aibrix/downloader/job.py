"""One file being downloaded: its partial file, its resume record, its parts, its running checksum, and the move to
its final name once size and checksum match."""

from __future__ import annotations

import ctypes
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibrix.downloader.checksums import READ, new_hasher
from aibrix.downloader.disk import presize
from aibrix.downloader.records import partial_folder, record_complete
from aibrix.storage.atomic import read_json_object, write_atomic
from aibrix.storage.base import RemoteFile, StorageError


@dataclass
class Part:
    job: FileJob
    index: int  # -1: nothing left to fetch, only to complete (every part was fetched before an interruption)
    start: int
    end: int  # inclusive; -1 for "to the end" of a file of unknown size


class FileJob:
    def __init__(self, remote: RemoteFile, target: Path, dest: Path, part_size: int, durable: bool) -> None:
        self.remote, self.target, self.dest, self.durable = remote, target, dest, durable
        self.partial = partial_folder(dest) / (remote.path + ".part")
        self.record = partial_folder(dest) / (remote.path + ".json")
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
        self.generation = 0  # bumped each time the source's credentials are refreshed
        self.hasher = new_hasher(remote.digest, size) if remote.digest else None
        self._hash_lock = threading.Lock()
        self._hashed_parts = 0  # parts 0.._hashed_parts-1 are in the hash

    def plan(self) -> list[Part]:
        """The parts still to fetch, from the resume record; no file is opened yet."""
        previous = read_json_object(self.record)
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
            parts.append(Part(self, index, start, end))
        return parts or [Part(self, -1, 0, 0)]

    def ensure_open(self) -> None:
        """Open (and size) the partial file when a worker first needs it, so a repository with more files than
        the open-file limit never has them all open at once: files are opened in queue order and closed when done."""
        with self.lock:
            if self.fd >= 0:
                return
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | (0 if self.resumable else os.O_TRUNC)
            self.fd = os.open(self.partial, flags, 0o644)
            if self.remote.size:
                presize(self.fd, self.remote.size, self.remote.path)
            self._save()

    def refresh(self, seen: int) -> bool:
        """After an access denial with the credentials of generation ``seen``: True when fresh ones are there to
        try (fetched now, or already by another part), False when the source cannot refresh."""
        with self.lock:
            if self.generation != seen:
                return True
            if self.remote.refresh is None:
                return False
            fresh = self.remote.refresh()
            if fresh.version != self.remote.version or fresh.size != self.remote.size:
                raise StorageError(f"{self.remote.path}: the remote file changed during the download; run it again")
            self.remote = fresh
            self.generation += 1
            return True

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
        if self.remote.digest is None or self.hasher is None:
            return True
        with self._hash_lock:
            self._hash_done_parts()
            return self._hashed_parts == self.count and self.hasher.hexdigest() == self.remote.digest[1].lower()

    def _hash_done_parts(self) -> None:
        """Hash the finished parts in order from the first one not hashed yet; the caller holds the hash lock."""
        while self.hasher is not None and self._hashed_parts < self.count and self._hashed_parts in self.done:
            start = self._hashed_parts * self.part_size
            end = min(start + self.part_size, self.remote.size or 0)
            while start < end:
                chunk = os.pread(self.fd, min(READ, end - start), start)
                if not chunk:
                    raise StorageError(f"{self.remote.path}: partial file shorter than expected")
                self.hasher.update(chunk)
                start += len(chunk)
            self._hashed_parts += 1

    def complete(self) -> None:
        """Verify the partial file, then move it to its final name and record it as complete."""
        remote = self.remote
        size = os.fstat(self.fd).st_size
        if remote.size is not None and size != remote.size:
            raise StorageError(f"{remote.path}: got {size} bytes, expected {remote.size}")
        if not self.digest_matches():
            os.unlink(self.record)  # start over next time: the bytes are wrong
            raise StorageError(f"{remote.path}: {remote.digest and remote.digest[0]} checksum mismatch after download")
        if self.durable:
            os.fsync(self.fd)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial, self.target)
        record_complete(self.target, remote, self.dest, durable=self.durable)
        os.unlink(self.record)
        self.close()

    def _save(self) -> None:
        record = {"version": self.remote.version, "size": self.remote.size, "part_size": self.part_size}
        write_atomic(self.record, json.dumps({**record, "done": sorted(self.done)}).encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


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
