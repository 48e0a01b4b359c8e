"""Checksums as the sources give them: md5 (S3 ETags, GCS), sha256 (HuggingFace LFS), git blob sha1."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from aibrix.storage.base import StorageError

READ = 8 << 20


def new_hasher(digest: tuple[str, str], size: int | None) -> Any:
    algorithm = digest[0]
    if algorithm == "git-sha1":
        return hashlib.sha1(f"blob {size}\0".encode())
    if algorithm in ("md5", "sha256"):
        return hashlib.new(algorithm)
    raise StorageError(f"unknown checksum algorithm {algorithm!r}")


def file_matches(fd: int, digest: tuple[str, str], size: int) -> bool:
    """Whether the whole file behind ``fd`` has ``digest``."""
    hasher = new_hasher(digest, size)
    offset = 0
    while chunk := os.pread(fd, READ, offset):
        hasher.update(chunk)
        offset += len(chunk)
    return bool(hasher.hexdigest() == digest[1].lower())
