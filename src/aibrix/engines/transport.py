"""One lean HTTP/1.1 client per server (an engine, a pod's runtime): pooled keep-alive connections and a deadline on
every call. It raises transport errors only; ``engines/client.py`` builds the engine's errors on top.

Built on asyncio streams rather than httpx: an engine call through httpx's async stack costs about 1.2 ms on
loopback against 0.4 ms for the same exchange on plain asyncio streams, and the runtime sits on the scrape path of
every Prometheus, autoscaler and router in the cluster. Engines speak plain HTTP/1.1 (uvicorn, brpc, axum,
cpp-httplib), which is all this client needs: Content-Length, chunked and close-delimited bodies, keep-alive.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aibrix import __version__
from aibrix.auth import bearer
from aibrix.errors import AibrixError

MAX_HEADER_BYTES = 64 * 1024  # one header line, and all of a reply's header lines together
MAX_HEADER_LINES = 100
MAX_BODY_BYTES = 256 * 1024 * 1024  # the default: an engine's /metrics can be large; callers reading less say so
NO_BODY_STATUSES = {204, 304}
_FORBIDDEN_IN_HEAD = ("\r", "\n", "\0")


@dataclass
class Response:
    status_code: int
    reason_phrase: str
    headers: dict[str, str]  # names lower-cased
    content: bytes = field(repr=False)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return jsonlib.loads(self.content)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class _ProtocolError(Exception):
    """The server's reply is not HTTP we can read."""


class TransportError(AibrixError):
    """The server could not be reached, or its reply could not be read; the message starts with its endpoint."""

    status = 502


class TransportTimeout(TransportError):
    """The server accepted the connection but did not answer in time."""

    status = 504


class InvalidHeader(AibrixError):
    """A header value with a line break or NUL: written as is, it would add headers or a second request."""

    status = 400


def check_header(value: str, what: str = "a header value or the path") -> str:
    """``value`` unchanged, or InvalidHeader when it holds a line break or NUL (never echoed: it may be a key)."""
    if any(c in value for c in _FORBIDDEN_IN_HEAD):
        raise InvalidHeader(f"{what} holds a line break or NUL; refused")
    return value


class HTTPClient:
    """Talks HTTP to the server at ``endpoint``; failures to talk raise TransportError or TransportTimeout."""

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 2.0,
        max_idle: int = 16,
        max_body: int = MAX_BODY_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``max_body`` bounds every reply as it arrives: the runtime's engine scrape keeps the large default, the
        controller reads small answers from pods and says so. ``ssl_context`` replaces the default one for https
        (a cluster's own CA, a client certificate)."""
        self.endpoint = endpoint.rstrip("/")
        url = urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"endpoint must be an http(s) URL, not {endpoint!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._host_header = url.netloc.rpartition("@")[2]
        self._prefix = url.path.rstrip("/")
        self._tls = url.scheme == "https"
        self._ssl: ssl.SSLContext | None = ssl_context
        self._default_auth = bearer(api_key) if api_key else None
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._max_body = max_body
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        auth: str | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request; ``auth`` is a full Authorization header value that wins over the default key."""
        body = b"" if json is None else jsonlib.dumps(json).encode()
        headers = [("User-Agent", f"aibrix-runtime/{__version__}"), ("Accept", "*/*")]
        authorization = auth or self._default_auth
        if authorization:
            headers.append(("Authorization", authorization))
        if json is not None:
            headers.append(("Content-Type", "application/json"))
        return await self.send(method, self._prefix + path, headers, body, timeout)

    async def send(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Response:
        """Send one request with the caller's header lines (Host and Content-Length are added here) to ``target``,
        the path and query as they go on the request line."""
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}", *(f"{n}: {v}" for n, v in headers)]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        for line in head:
            check_header(line)
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        waited = self._timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(waited):
                return await self._exchange(message, method)
        except TimeoutError:
            raise TransportTimeout(f"{self.endpoint} did not answer {method} {target} within {waited:g}s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _ProtocolError) as exc:
            detail = str(exc) or "connection closed"
            raise TransportError(f"{self.endpoint} is unreachable ({type(exc).__name__}: {detail})") from exc

    async def _exchange(self, message: bytes, method: str) -> Response:
        # A pooled connection may have been closed by the engine while idle. One the engine already closed is
        # dropped before use; one that fails after the request was written is retried on a fresh connection only
        # for idempotent methods: a POST (an adapter load or unload) may have reached the engine, and sending it
        # again would report the second answer ("not found") for an operation that succeeded.
        while self._idle:
            connection = self._idle.pop()
            if connection.reader.at_eof() or connection.writer.is_closing():
                connection.close()
                continue
            try:
                return await self._send(connection, message, method)
            except _StaleConnection as exc:
                connection.close()
                if method not in IDEMPOTENT:
                    raise _ProtocolError(
                        "the connection closed before the server answered; the request may have been carried out"
                    ) from exc
        connection = await self._connect()
        try:
            return await self._send(connection, message, method)
        except _StaleConnection as exc:
            connection.close()
            raise asyncio.IncompleteReadError(b"", None) from exc

    async def _connect(self) -> _Connection:
        if self._tls and self._ssl is None:
            self._ssl = ssl.create_default_context()  # loads the CA bundle only for https servers
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._ssl if self._tls else None, limit=MAX_HEADER_BYTES
            )
        return _Connection(reader, writer)

    async def _send(self, connection: _Connection, message: bytes, method: str) -> Response:
        reusable = False
        try:
            connection.writer.write(message)
            await connection.writer.drain()
            try:
                status_line = await connection.reader.readuntil(b"\r\n")
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                raise _StaleConnection() from exc
            response, reusable = await self._read_response(connection.reader, status_line, method)
            return response
        finally:
            if reusable and len(self._idle) < self._max_idle:
                self._idle.append(connection)
            elif not reusable:
                connection.close()

    async def _read_response(
        self, reader: asyncio.StreamReader, status_line: bytes, method: str
    ) -> tuple[Response, bool]:
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise _ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(parts[1])
        headers = await _read_headers(reader)
        keep_alive = parts[0] != "HTTP/1.0" and "close" not in headers.get("connection", "").lower()
        if method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            content = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            content = await _read_chunked(reader, self._max_body)
        elif "content-length" in headers:
            length = _content_length(headers["content-length"])
            if length > self._max_body:
                raise _ProtocolError(f"reply of {length} bytes exceeds {self._max_body}")
            content = await reader.readexactly(length)
        else:
            content = await _read_to_eof(reader, self._max_body)
            keep_alive = False
        return Response(status, parts[2] if len(parts) > 2 else "", headers, content), keep_alive

    def close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def aclose(self) -> None:
        self.close_idle()


def _content_length(value: str) -> int:
    """RFC 9110: one non-negative decimal number (repeated identical values tolerated)."""
    values = {part.strip() for part in value.split(",")}
    if len(values) != 1 or not (number := values.pop()).isdigit():
        raise _ProtocolError(f"the server sent an invalid Content-Length: {value[:40]!r}")
    return int(number)


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    """A reply's header lines, bounded in count and in bytes as they arrive."""
    headers: dict[str, str] = {}
    lines = size = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        lines, size = lines + 1, size + len(line)
        if lines > MAX_HEADER_LINES or size > MAX_HEADER_BYTES:
            raise _ProtocolError(f"the reply's header is over {MAX_HEADER_LINES} lines or {MAX_HEADER_BYTES} bytes")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


class _StaleConnection(Exception):
    """The connection failed before any byte of the reply arrived."""


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _ProtocolError(f"bad chunk size line {size_line[:40]!r}") from None
        if size == 0:
            await _read_headers(reader)  # trailers, bounded as headers are
            return b"".join(chunks)
        total += size
        if total > limit:
            raise _ProtocolError(f"reply exceeds {limit} bytes")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _read_to_eof(reader: asyncio.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > limit:
            raise _ProtocolError(f"reply exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
