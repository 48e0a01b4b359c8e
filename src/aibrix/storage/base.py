"""What every storage backend hands the downloader: files as URLs with sizes and checksums."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from aibrix.errors import AibrixError


class StorageError(AibrixError):
    """A failure the user can act on; ``str()`` is one clear line (the tree: ``aibrix/errors.py``)."""

    status = 502  # the source failed, unless a subclass says otherwise
    transient = False


class NotFound(StorageError):
    status = 404


class AccessDenied(StorageError):
    status = 403


class BadURI(StorageError):
    status = 400


class BadSetting(StorageError):
    status = 400


class NoSpace(StorageError):
    status = 507


class TooLarge(StorageError):
    status = 413


class LocalWriteError(StorageError):
    """The local disk refused a write (read-only, I/O error): the source is fine, retrying will not help."""

    status = 500


class TransientError(StorageError):
    """Worth retrying: connection reset, timeout, 5xx, throttling; ``retry_after`` is the server's wish, if any."""

    transient = True
    retry_after: float | None = None


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch. ``path`` is relative to the model directory; ``version`` changes when the remote changes."""

    path: str
    size: int | None
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    digest: tuple[str, str] | None = None  # ("md5" | "sha256" | "git-sha1", lowercase hex)
    version: str | None = None
    ranges: bool = True  # the server honours Range requests
    # Fresh URL and headers for the same file when credentials expire mid-download (presigned URLs, tokens).
    refresh: Callable[[], RemoteFile] | None = field(default=None, compare=False, repr=False)


def renewable(remote: RemoteFile, renew: Callable[[RemoteFile], RemoteFile]) -> RemoteFile:
    """``remote`` with a ``refresh`` that gives it fresh credentials by ``renew``, as often as they expire."""
    return replace(remote, refresh=lambda: renewable(renew(remote), renew))


def safe_relative(path: str) -> str:
    """``path`` as a clean relative POSIX path, or BadURI when it could escape its directory."""
    if not path or "\x00" in path or "\\" in path:
        raise BadURI(f"refusing file name {path!r}")
    clean = posixpath.normpath(path)
    if clean.startswith("/") or clean == "." or clean.split("/")[0] == ".." or path.startswith("/"):
        raise BadURI(f"refusing file name {path!r}: it would leave the model directory")
    if any(part in ("", ".", "..") for part in path.strip("/").split("/")):
        raise BadURI(f"refusing file name {path!r}: it has '.' or '..' components")
    return clean


def allowed(path: str, suffixes: tuple[str, ...]) -> bool:
    """DOWNLOADER_ALLOW_FILE_SUFFIX filter: suffixes given with or without a leading dot."""
    return not suffixes or any(path.endswith(suffix) for suffix in suffixes)


def parse_suffixes(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple("." + s.strip().lstrip(".") for s in value.split(",") if s.strip())


def select_objects(key: str, names: list[str], what: str) -> tuple[str, list[str]]:
    """Object stores have no directories: ``key`` names one object when an object has exactly that name, else a
    prefix whose objects are all wanted (``dir`` also means ``dir/``, never ``dir2/``). Returns the part of the names
    to strip (their base) and the chosen names; NotFound when nothing matches."""
    if key and not key.endswith("/") and key in names:
        return posixpath.dirname(key), [key]
    prefix = key.rstrip("/") + "/" if key else ""
    chosen = [name for name in names if name.startswith(prefix) and not name.endswith("/")]
    if not chosen:
        raise NotFound(f"{what}: no objects under this prefix")
    return prefix.rstrip("/"), chosen


def relative_to_base(name: str, base: str) -> str:
    return name[len(base) :].lstrip("/") if base else name


def redact(url: str) -> str:
    """A URL fit for replies, logs and listings: no user info, no query (presigned signatures, tokens)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
