"""Small metadata requests (listings, HEADs) with a timeout, bounded retries for transient failures, and errors
that say what went wrong."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aibrix.storage.base import AccessDenied, NotFound, StorageError, TransientError, redact

RETRIABLE_STATUSES = {408, 429, 500, 502, 503, 504}


def request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    attempts: int = 4,
    what: str = "",
    url_guard: Callable[[str], None] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of ``url`` after redirects; raises StorageError for 4xx/5xx.
    ``url_guard`` sees the URL and every redirect target before it is requested."""
    what = what or redact(url)  # errors never carry a signed URL's query or user info
    if url_guard is not None:
        url_guard(url)
    opener = urllib.request.build_opener(_GuardedRedirects(url_guard))
    delay = 0.25
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(url, method=method, headers=dict(headers or {}))
        try:
            with opener.open(req, timeout=timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as exc:
            error: StorageError = classify(exc.code, what, exc.read()[:300].decode(errors="replace"))
        except (OSError, urllib.error.URLError) as exc:
            error = TransientError(f"{what}: {getattr(exc, 'reason', exc)}")
        if not error.transient or attempt == attempts:
            raise error
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def keeps_credentials(url: str, next_url: str) -> bool:
    """Whether a redirect from ``url`` to ``next_url`` may carry the Authorization header: only to the same origin
    (scheme, host, port), or from http to https on the same host and default ports, as httpx decides."""
    old, new = _origin(url), _origin(next_url)
    if old == new:
        return True
    return old == ("http", new[1], 80) and new == ("https", old[1], 443)


class _GuardedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, guard: Callable[[str], None] | None) -> None:
        self.guard = guard

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if self.guard is not None:
            self.guard(newurl)
        redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
        if redirected is not None and not keeps_credentials(req.full_url, newurl):
            redirected.remove_header("Authorization")
        return redirected


def request_json(url: str, **kwargs: Any) -> Any:
    status, _, body = request(url, **kwargs)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise StorageError(f"{kwargs.get('what') or redact(url)}: expected JSON, got {body[:100]!r}") from exc


def classify(status: int, what: str, detail: str = "") -> StorageError:
    """The StorageError for an HTTP status: 404 not found, 401/403 access denied, 408/429/5xx transient."""
    suffix = f" ({detail.strip()})" if detail.strip() else ""
    if status == 404:
        return NotFound(f"{what}: not found{suffix}")
    if status in (401, 403):
        return AccessDenied(f"{what}: access denied (HTTP {status}){suffix}")
    if status in RETRIABLE_STATUSES or status >= 500:
        return TransientError(f"{what}: HTTP {status}{suffix}")
    return StorageError(f"{what}: HTTP {status}{suffix}")
