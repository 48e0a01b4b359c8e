"""The destination on disk: where a file may go, space claimed up front, writes that fail clearly, and one
download per destination at a time."""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aibrix.storage.base import LocalWriteError, NoSpace, StorageError, safe_relative

STATE_DIR = ".aibrix"  # the downloader's own folder inside each destination


def target_path(dest: Path, path: str) -> Path:
    """``dest/path``, refusing paths that leave ``dest``, also through symlinks planted inside it."""
    relative = safe_relative(path)
    if relative.split("/")[0] == STATE_DIR:
        raise StorageError(f"refusing file name {path!r}: {STATE_DIR} is the downloader's own directory")
    target = dest / relative
    root = dest.resolve()
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.resolve().is_relative_to(root) or target.is_symlink():
        raise StorageError(f"refusing to write {path!r}: it resolves outside {dest}")
    return target


def check_space(dest: Path, needed: int) -> None:
    """Fail before the first byte when the destination's filesystem cannot hold the download."""
    stat = os.statvfs(dest)
    free = stat.f_bavail * stat.f_frsize
    if needed > free:
        raise NoSpace(f"{dest}: not enough disk space: the download needs {needed} bytes, {free} are free")


def presize(fd: int, size: int, path: str) -> None:
    """Size the partial file to the declared size, sparse: disk blocks are taken as bytes arrive. A server's
    declared size alone never claims disk (fallocate would take it all before the first byte, and keep it while the
    server trickles); ``check_space`` has already refused, before any byte, a download the disk cannot hold."""
    try:
        os.ftruncate(fd, size)  # also shortens a resumed file that was longer
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise NoSpace(f"{path}: cannot make a file of {size} bytes ({exc.strerror})") from None
        raise LocalWriteError(f"{path}: cannot size the local file ({exc.strerror})") from None


def write_at(fd: int, data: memoryview | bytes, offset: int, path: str) -> None:
    try:
        os.pwrite(fd, data, offset)
    except OSError as exc:  # a local write failure (disk full, read-only) will not pass with a retry
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"{path}: the local disk is full ({exc.strerror})") from None
        raise LocalWriteError(f"{path}: cannot write the local file ({exc.strerror})") from None


@contextmanager
def exclusive(dest: Path) -> Iterator[None]:
    """One download per destination at a time. A second one says on stderr whom it waits for, and gives up after
    DOWNLOADER_LOCK_TIMEOUT seconds (default an hour) with an error naming the holder, rather than hang silently."""
    timeout = float(os.environ.get("DOWNLOADER_LOCK_TIMEOUT") or 3600)
    fd = os.open(dest / STATE_DIR / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, said = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                where = f"another download into {dest} (pid {holder})"
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
