"""HTTP for storage traffic: keep-alive connections per thread, every socket opened through the outbound policy,
redirects followed with credentials kept within one origin, and failures sorted into what a retry can fix."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from urllib.parse import unquote, urljoin, urlsplit

from aibrix.storage.base import AccessDenied, NotFound, StorageError, TransientError, redact
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
RETRIABLE_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def keeps_credentials(url: str, next_url: str) -> bool:
    """Whether a redirect from ``url`` to ``next_url`` may carry the Authorization header: only to the same origin
    (scheme, host, port), or from http to https on the same host and default ports, as httpx decides."""
    old, new = origin(url), origin(next_url)
    if old == new:
        return True
    return old == ("http", new[1], 80) and new == ("https", old[1], 443)


def classify(status: int, what: str, retry_after: str | None = None) -> StorageError:
    """The StorageError for an HTTP status: 404 not found, 401/403 access denied, 408/425/429/5xx transient (with
    the server's Retry-After, when it sent one). No body text: what a refused fetch answered is never echoed."""
    if status == 404:
        return NotFound(f"{what}: not found")
    if status in (401, 403):
        return AccessDenied(f"{what}: access denied (HTTP {status})")
    if status in RETRIABLE_STATUSES or status >= 500:
        error = TransientError(f"{what}: HTTP {status}")
        error.retry_after = parse_retry_after(retry_after)
        return error
    return StorageError(f"{what}: HTTP {status}")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def transport_error(exc: BaseException, what: str) -> StorageError:
    """A socket, TLS or protocol failure as a StorageError; a certificate that does not verify will not verify on
    the next attempt either, so it is not transient."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or exc
        return StorageError(f"{what}: TLS certificate verification failed ({reason})")
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransientError(f"{what}: timed out")
    if isinstance(exc, http.client.HTTPException) and not isinstance(exc, http.client.RemoteDisconnected):
        # its text is the server's own bytes (a bad status line, a header too long): never echoed
        return TransientError(f"{what}: the answer is not HTTP that can be read ({type(exc).__name__})")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return TransientError(f"{what}: {type(exc).__name__}: {reason}")


def _host_port(url: str) -> str:
    """``host:port`` of a URL without its user info (http.client would take ``user:pw@host`` for a host name)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port}" if parts.port else host


class Transport:
    """Connections kept alive per thread and per origin. Not shared between downloads: each has its policy."""

    def __init__(self, policy: OutboundPolicy = DEFAULT_POLICY, timeout: float = 60.0) -> None:
        self.policy, self.timeout = policy, timeout
        self._local = threading.local()
        self._ssl: ssl.SSLContext | None = None

    def open(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        what: str = "",
        body: bytes | None = None,
        follow_redirects: bool = True,
    ) -> tuple[str, http.client.HTTPResponse]:
        """The response to ``method url`` after redirects, and the URL that answered; any status. The headers given
        (credentials, all of them) are dropped when a redirect leaves the origin; every hop connects through the
        policy. A request with a ``body`` (a credential, say) is never redirected: its answer is returned as is."""
        follow_redirects = follow_redirects and body is None
        what = what or redact(url)
        sent = dict(headers)
        parts = urlsplit(url)
        if parts.username is not None and not any(k.lower() == "authorization" for k in sent):
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            sent["Authorization"] = "Basic " + base64.b64encode(pair).decode()  # user info in the URL, as httpx does
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(method, url, sent, what, body)
            if response.status not in REDIRECTS or not follow_redirects:
                return url, response
            location = response.getheader("location", "")
            response.read()
            next_url = urljoin(url, location)
            if urlsplit(next_url).scheme not in ("http", "https"):
                raise StorageError(f"{what}: refusing a redirect to a {urlsplit(next_url).scheme or 'relative'} URL")
            if not keeps_credentials(url, next_url):  # every header a source gave may be a credential; Range is not
                sent = {k: v for k, v in sent.items() if k.lower() == "range"}
            if response.status == 303:
                method = "GET"
            url = next_url
        raise StorageError(f"{what}: more than {MAX_REDIRECTS} redirects")

    def _send(
        self, method: str, url: str, headers: dict[str, str], what: str, body: bytes | None = None
    ) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        while True:
            conn, reused = self._connection(parts.scheme, _host_port(url), what)
            try:
                conn.request(method, target, body=body, headers=headers)
                return conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.drop(url)
                # A kept-alive connection the server had closed gets one fresh connection (GETs and HEADs only);
                # the fresh one is not reused, so this never loops twice.
                if not (reused and isinstance(exc, _STALE)):
                    raise transport_error(exc, what) from None

    def _connection(self, scheme: str, netloc: str, what: str) -> tuple[http.client.HTTPConnection, bool]:
        conns: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        conn = conns.get((scheme, netloc))
        if conn is not None:
            return conn, True
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            conn = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._ssl)
        elif scheme == "http":
            conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        else:
            raise StorageError(f"{what}: unsupported URL scheme {scheme!r}")
        conn._create_connection = self.policy.connect  # type: ignore[attr-defined] # the checked address, no re-resolve
        conns[(scheme, netloc)] = conn
        return conn, False

    @contextlib.contextmanager
    def deadline(self, give_up_at: float, what: str) -> Iterator[None]:
        """Everything this thread does with its connections inside the block stops at ``give_up_at`` (monotonic):
        the connections are cut then. A socket timeout bounds one read only, so a server sending a byte just
        before each timeout (in a header, a listing, a part) would otherwise hold the thread for ever."""
        conns: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        fired = threading.Event()

        def cut() -> None:
            fired.set()
            for conn in list(conns.values()):
                if conn.sock is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(max(0.0, give_up_at - time.monotonic()), cut)
        timer.daemon = True
        timer.start()
        late = StorageError(f"{what} is still not fetched at its deadline; the server is too slow")
        try:
            yield
        except (StorageError, OSError, http.client.HTTPException):
            if not fired.is_set():
                raise
            self.close_thread()
            raise late from None
        finally:
            timer.cancel()
        if fired.is_set():  # a cut connection reads as a short answer (EOF ends headers and bodies): never use one
            self.close_thread()
            raise late

    def drop(self, url: str) -> None:
        parts = urlsplit(url)
        conn = self._local.__dict__.get("conns", {}).pop((parts.scheme, _host_port(url)), None)
        if conn is not None:
            conn.close()

    def close_thread(self) -> None:
        """Close this thread's connections (workers call it when they finish)."""
        for conn in self._local.__dict__.pop("conns", {}).values():
            conn.close()
