"""Completion records: which files of a destination are known complete, so a re-run skips them without hashing,
and which downloads were left unfinished (what ``/v1/model/list`` reports)."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

from aibrix.downloader.checksums import file_matches
from aibrix.downloader.disk import STATE_DIR
from aibrix.storage.atomic import read_json_object, write_atomic
from aibrix.storage.base import RemoteFile


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


BOOT_ID = _boot_id()


def partial_folder(dest: Path) -> Path:
    """Where unfinished files and their resume records live."""
    return dest / STATE_DIR / "partial"


UPSTREAM_CACHE = ".cache"  # upstream aibrix (and huggingface_hub) keep <model>/.cache/<source>/download/<path>.metadata


def is_download(folder: Path) -> bool:
    """Whether ``folder`` was written by this downloader, or by upstream aibrix's."""
    return (folder / STATE_DIR).is_dir() or any((folder / UPSTREAM_CACHE).glob("*/download"))


def upstream_complete(remote: RemoteFile, dest: Path) -> bool:
    """Whether upstream aibrix's downloader finished this file, whose size the caller found right: its metadata
    file holds the remote's ETag (or, from huggingface_hub, the blob's hash), the check upstream itself makes."""
    if remote.version is None or remote.size is None:
        return False
    for metadata in (dest / UPSTREAM_CACHE).glob(f"*/download/{glob.escape(remote.path)}.metadata"):
        try:
            lines = metadata.read_text().split()
        except (OSError, UnicodeDecodeError):
            continue
        if remote.version.strip('"') in {line.strip('"') for line in lines}:
            return True
    return False


def is_unfinished(folder: Path) -> bool:
    """Whether a download into ``folder`` stopped before its end (a resume record is left)."""
    return any(partial_folder(folder).rglob("*.json"))


def record_complete(target: Path, remote: RemoteFile, dest: Path, *, durable: bool) -> None:
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
    write_atomic(dest / STATE_DIR / "complete" / (remote.path + ".json"), json.dumps(record).encode())


def is_complete(target: Path, remote: RemoteFile, dest: Path) -> bool:
    """True when ``target`` holds this remote file: by its completion record, else by size and checksum."""
    try:
        stat = target.stat()
    except FileNotFoundError:
        return False
    if remote.size is not None and stat.st_size != remote.size:
        return False
    record = read_json_object(dest / STATE_DIR / "complete" / (remote.path + ".json"))
    if (
        record is not None
        and record.get("size") == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
        and record.get("version") == remote.version
        and remote.version is not None
        and (record.get("durable") or record.get("boot_id") == BOOT_ID)
    ):
        return True
    if upstream_complete(remote, dest):  # the size matched above (upstream_complete needs a known size)
        record_complete(target, remote, dest, durable=False)
        return True
    if remote.digest is None:
        return False  # nothing to prove the bytes right: fetch again
    fd = os.open(target, os.O_RDONLY)
    try:
        matches = file_matches(fd, remote.digest, stat.st_size)
    finally:
        os.close(fd)
    if matches:
        record_complete(target, remote, dest, durable=False)
    return matches
