"""Small metadata requests (listings, HEADs): the storage transport and retry policy, answers read whole."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aibrix.storage.base import StorageError, TransientError, redact
from aibrix.storage.http import Transport, classify, transport_error
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy
from aibrix.storage.retry import RetryPolicy

MAX_BODY = 64 << 20  # a listing page is kilobytes; a server sending more is not a storage API
METADATA = RetryPolicy(attempts=4, deadline=120.0)  # a listing page or a HEAD, all attempts together


class AnswerTooLarge(StorageError):
    """The answer ran past what the caller would read (a 502 like any misbehaving server)."""


def request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    what: str = "",
    policy: OutboundPolicy = DEFAULT_POLICY,
    retries: RetryPolicy | None = None,
    body: bytes | None = None,
    max_body: int = MAX_BODY,
) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of ``url`` after redirects (none for a request with a ``body``), the
    answer read up to ``max_body`` bytes; raises StorageError for 4xx/5xx."""
    what = what or redact(url)  # errors never carry a signed URL's query or user info
    transport = Transport(policy, timeout)

    def attempt(give_up_at: float) -> tuple[int, dict[str, str], bytes]:
        with transport.deadline(give_up_at, what):
            answered, response = transport.open(method, url, headers or {}, what=what, body=body)
            try:
                answer = response.read(max_body)
            except OSError as exc:
                transport.drop(answered)
                raise transport_error(exc, what) from None
            if len(answer) >= max_body:
                transport.drop(answered)
                raise AnswerTooLarge(f"{what}: an answer of {max_body} bytes or more is more than was asked for")
            if response.length:  # read(n) stops at EOF without a word: a short answer is caught here
                transport.drop(answered)
                raise TransientError(f"{what}: the answer ended {response.length} bytes early")
        if response.status >= 400:  # the body is not echoed: a refused fetch must not become a way to read a server
            raise classify(response.status, what, response.getheader("retry-after"))
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer

    try:
        return (retries or METADATA).call(attempt)
    finally:
        transport.close_thread()


def request_json(url: str, **kwargs: Any) -> Any:
    _, _, body = request(url, **kwargs)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise StorageError(
            f"{kwargs.get('what') or redact(url)}: expected JSON, got {len(body)} bytes of something else"
        ) from exc
