"""Archive bombs that attack the unpacker's memory rather than the disk: long names, pax records, member counts."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from aibrix.downloader.archives import MAX_MEMBERS, unpack
from aibrix.errors import MAX_ERROR_TEXT, AibrixError


def _tar(path: Path, infos: list[tuple[tarfile.TarInfo, bytes]], fmt: int) -> None:
    with tarfile.open(path, mode="w:gz", format=fmt) as tar:
        for info, data in infos:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _long_name(path: Path) -> None:
    _tar(path, [(tarfile.TarInfo("n" * (32 << 20)), b"x")], tarfile.GNU_FORMAT)


def _pax_record(path: Path) -> None:
    info = tarfile.TarInfo("ok")
    info.pax_headers = {"comment": "c" * (32 << 20)}
    _tar(path, [(info, b"x")], tarfile.PAX_FORMAT)


def _many_tar_members(path: Path) -> None:
    _tar(path, [(tarfile.TarInfo(f"f{i}"), b"") for i in range(MAX_MEMBERS + 1)], tarfile.USTAR_FORMAT)


def _many_zip_members(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zipped:
        for i in range(MAX_MEMBERS + 1):
            zipped.writestr(f"f{i}", b"")


@pytest.mark.parametrize(
    "make, suffix, complaint",
    [(_long_name, ".tar.gz", "extended header"),
     (_pax_record, ".tar.gz", "extended header"),
     (_many_tar_members, ".tar.gz", f"more than {MAX_MEMBERS} members"),
     (_many_zip_members, ".zip", f"{MAX_MEMBERS + 1} entries")],
)  # fmt: skip
def test_an_archive_cannot_grow_the_unpackers_memory_or_its_error_text(make, suffix, complaint, tmp_path: Path) -> None:
    dest = tmp_path / "adapter"
    dest.mkdir()
    packed = dest / f"a{suffix}"
    make(packed)
    assert packed.stat().st_size < 2 << 20  # small on the wire
    tracemalloc.start()
    try:
        with pytest.raises(AibrixError, match=complaint) as raised:
            unpack(packed, dest, max_bytes=1 << 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"unpacking held {peak >> 20} MiB"
    assert len(raised.value.message) <= MAX_ERROR_TEXT + 40
    assert [p.name for p in dest.iterdir()] == [packed.name]


def test_a_long_error_is_capped_and_says_how_much_was_left_out() -> None:
    error = AibrixError("x" * 5000)
    assert error.message.startswith("x" * MAX_ERROR_TEXT) and error.message.endswith("(4000 more characters)")
    assert str(error) == error.message
