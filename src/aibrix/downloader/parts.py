"""Fetching one part of one file into its place in the partial file: a ranged GET through the storage transport,
or a copy from a local file."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable

from aibrix.downloader.disk import write_at
from aibrix.downloader.job import Part
from aibrix.storage.base import StorageError, TransientError
from aibrix.storage.http import Transport, classify, transport_error

CHUNK = 4 << 20  # per read and write; 1 MiB reads cost ~15% more wall time on loopback


def fetch_part(transport: Transport, part: Part, count: Callable[[int], None], give_up_at: float) -> None:
    """Write ``part`` in place, calling ``count`` with each chunk's size; stops with an error past ``give_up_at``."""
    remote = part.job.remote
    if remote.url.startswith("file://"):
        _copy_local(remote.url[len("file://") :], part, count)
        return
    headers = dict(remote.headers)
    if part.job.count > 1 or part.start > 0:
        headers["Range"] = f"bytes={part.start}-{'' if part.end < 0 else part.end}"
    with transport.deadline(give_up_at, f"{remote.path}: part {part.index}"):
        url, response = transport.open("GET", remote.url, headers, what=remote.path)
        try:
            _check_response(response, remote.path, "Range" in headers)
            _copy_body(response, part, count, give_up_at)
        except (OSError, http.client.HTTPException) as exc:
            transport.drop(url)
            raise transport_error(exc, remote.path) from None
        except StorageError:
            transport.drop(url)  # a half-read response leaves the connection unusable
            raise


def _check_response(response: http.client.HTTPResponse, path: str, ranged: bool) -> None:
    if response.status not in (200, 206):  # the body is not echoed (see storage.fetch)
        raise classify(response.status, path, response.getheader("retry-after"))
    if ranged and response.status != 206:
        raise StorageError(f"{path}: the server ignored a Range request (HTTP {response.status})")


def _copy_body(response: http.client.HTTPResponse, part: Part, count: Callable[[int], None], give_up_at: float) -> None:
    path, fd = part.job.remote.path, part.job.fd
    expected = None if part.end < 0 else part.end - part.start + 1
    fill = _filler(response, expected, give_up_at, f"{path}: part {part.index}")
    view = memoryview(bytearray(CHUNK))
    offset, remaining = part.start, expected
    while remaining is None or remaining > 0:
        n = fill(view if remaining is None else view[: min(CHUNK, remaining)])
        if not n:
            if remaining is None:
                break
            raise TransientError(f"{path}: connection closed {remaining} bytes early")
        write_at(fd, view[:n], offset, path)
        offset += n
        count(n)
        if remaining is not None:
            remaining -= n
    if remaining is None:
        os.ftruncate(fd, offset)
    response.close()  # every byte is read: the connection is ready for the next request


def _filler(
    response: http.client.HTTPResponse, expected: int | None, give_up_at: float, what: str
) -> Callable[[memoryview], int]:
    """A function that fills a buffer from the body and stops at the deadline, also when a server trickles bytes
    just fast enough never to hit the socket timeout. A plain Content-Length body is read one ``recv`` at a time
    (a buffered ``readinto`` would block until the whole buffer is full)."""

    def check() -> None:
        if time.monotonic() > give_up_at:
            raise StorageError(f"{what} is still not fetched at its deadline; the server is too slow")

    if response.chunked or response.length != expected or response.fp is None:

        def framed(view: memoryview) -> int:
            check()
            return response.readinto(view)

        return framed
    read1 = response.fp.readinto1

    def fill(view: memoryview) -> int:
        got = 0
        while got < len(view):
            n = read1(view[got:])
            if not n:
                break
            got += n
            check()
        return got

    return fill


def _copy_local(source: str, part: Part, count: Callable[[int], None]) -> None:
    with open(source, "rb") as src:
        offset = part.start
        end = os.fstat(src.fileno()).st_size - 1 if part.end < 0 else part.end
        while offset <= end:
            data = os.pread(src.fileno(), min(2 * CHUNK, end - offset + 1), offset)
            if not data:
                raise StorageError(f"{source}: shorter than expected")
            write_at(part.job.fd, data, offset, part.job.remote.path)
            offset += len(data)
            count(len(data))
