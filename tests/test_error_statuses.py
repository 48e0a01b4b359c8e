"""Failures keep their meaning on the way to the API: a local disk that refuses writes is not the source's fault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aibrix.downloader.transfer import _write
from aibrix.runtime.errors import storage_status as status_of
from aibrix.storage.base import LocalWriteError, NoSpace, NotFound, StorageError, TransientError


def test_a_local_write_failure_is_500_with_the_reason_not_an_upstream_502(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"")
    fd = os.open(target, os.O_RDONLY)  # writes fail with EBADF, as on a disk gone read-only
    try:
        with pytest.raises(LocalWriteError, match="cannot write the local file") as caught:
            _write(fd, b"data", 0, "weights.bin")
    finally:
        os.close(fd)
    assert status_of(caught.value) == 500
    assert not caught.value.transient  # never retried


def test_a_full_disk_while_writing_is_507(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(NoSpace, match="local disk is full") as caught:
            _write(fd, b"data", 0, "weights.bin")
    finally:
        os.close(fd)
    assert status_of(caught.value) == 507


@pytest.mark.parametrize("exc, status", [(NotFound("x"), 404), (TransientError("x"), 502), (StorageError("x"), 502)])
def test_storage_errors_map_by_family(exc: StorageError, status: int) -> None:
    class Subclass(type(exc)):  # type: ignore[misc]
        pass

    assert status_of(exc) == status_of(Subclass("x")) == status
