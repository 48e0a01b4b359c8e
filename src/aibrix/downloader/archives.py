"""Adapters served over HTTP are often one archive: ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``. Unpacked here,
safely: every member's name must stay inside the folder, links and special files are refused, and the unpacked size
is capped (the declared sizes are checked before anything is written, so a bomb is refused, not half-unpacked).

What the unpacker holds in memory is bounded too: the number of members, and the size of every name and extended
header (a GNU long name or a pax record is read whole by tarfile, so a 32 KB .tar.gz could name a member with 32 MB
of text). An adapter is a handful of files with short names; these bounds are far above any real one."""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from aibrix.storage.base import BadURI, TooLarge, safe_relative

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
MAX_MEMBERS = 10_000  # headers in a tar (extended ones included), entries in a zip
MAX_HEADER_BYTES = 64 << 10  # one GNU long name/link or pax header; PATH_MAX is 4096
MAX_DIRECTORY_BYTES = 16 << 20  # a zip's central directory, or all of a tar's long names and pax headers together
_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
             tarfile.SOLARIS_XHDTYPE)  # fmt: skip


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


class _Bounded(tarfile.TarInfo):
    """A tar header that refuses, before tarfile reads it into memory, an extended header larger than the bounds or
    one member too many; and sparse members (their maps are read block by block without limit)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        seen = tarfile_.__dict__.get("_aibrix_seen", (0, 0))
        count, payload = seen[0] + 1, seen[1] + (self.size if self.type in _EXTENDED else 0)
        tarfile_.__dict__["_aibrix_seen"] = (count, payload)
        name = tarfile_.name.rsplit("/", 1)[-1] if isinstance(tarfile_.name, str) else "archive"
        if count > MAX_MEMBERS:
            raise BadURI(f"{name}: more than {MAX_MEMBERS} members; refused")
        if self.type in _EXTENDED and (self.size > MAX_HEADER_BYTES or payload > MAX_DIRECTORY_BYTES):
            raise BadURI(f"{name}: an extended header (long name or pax record) of {self.size} bytes; refused")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise BadURI(f"{name}: sparse members are not accepted")
        return super()._proc_member(tarfile_)  # type: ignore[misc, no-any-return]  # private in typeshed


def _unpack_tar(archive: Path, dest: Path, max_bytes: int) -> list[str]:
    try:
        with tarfile.open(archive, tarinfo=_Bounded) as tar:
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


def _zip_directory_bounded(archive: Path) -> None:
    """Refuse a zip whose central directory (read whole by zipfile) is over the bounds, from its end record."""
    with open(archive, "rb") as handle:
        end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]  # the end-of-directory record, as zipfile reads it
    if not end:
        return  # not a zip: zipfile says so in its own words
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > MAX_MEMBERS or size > MAX_DIRECTORY_BYTES:
        raise BadURI(f"{archive.name}: {entries} entries in a {size}-byte directory; refused (at most {MAX_MEMBERS})")


def _unpack_zip(archive: Path, dest: Path, max_bytes: int) -> list[str]:
    try:
        _zip_directory_bounded(archive)
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
