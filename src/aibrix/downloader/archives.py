"""Adapters served over HTTP are often one archive: ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``. Unpacked here,
safely: every member's name must stay inside the folder, links and special files are refused, and the unpacked size
is capped (the declared sizes are checked before anything is written, so a bomb is refused, not half-unpacked)."""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from aibrix.storage.base import BadURI, TooLarge, safe_relative

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def unpack(archive: Path, dest: Path, max_bytes: int) -> list[str]:
    """Unpack ``archive`` into ``dest`` (which it may sit in) and delete it; returns the member files' paths."""
    if archive.name.lower().endswith(".zip"):
        names = _unpack_zip(archive, dest, max_bytes)
    else:
        names = _unpack_tar(archive, dest, max_bytes)
    archive.unlink()
    return names


def _check(name: str, archive: Path) -> str:
    try:
        return safe_relative(name)
    except BadURI:
        raise BadURI(f"{archive.name}: member {name!r} would leave the adapter folder") from None


def _unpack_tar(archive: Path, dest: Path, max_bytes: int) -> list[str]:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            total = 0
            for member in members:
                if not (member.isfile() or member.isdir()):
                    raise BadURI(f"{archive.name}: member {member.name!r} is a link or a special file; refused")
                _check(member.name, archive)
                total += member.size
            if total > max_bytes:
                raise TooLarge(f"{archive.name}: unpacks to {total} bytes, over the limit of {max_bytes}")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadURI(f"{archive.name}: not a readable archive ({exc})") from None
    return [_check(m.name, archive) for m in members if m.isfile()]


def _unpack_zip(archive: Path, dest: Path, max_bytes: int) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
            for info in infos:
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise BadURI(f"{archive.name}: member {info.filename!r} is a link; refused")
                _check(info.filename, archive)
            total = sum(info.file_size for info in infos)
            if total > max_bytes:
                raise TooLarge(f"{archive.name}: unpacks to {total} bytes, over the limit of {max_bytes}")
            for info in infos:
                target = dest / _check(info.filename, archive)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(info) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 4 << 20)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise BadURI(f"{archive.name}: not a readable archive ({exc})") from None
    return [_check(i.filename, archive) for i in infos if not i.is_dir()]
