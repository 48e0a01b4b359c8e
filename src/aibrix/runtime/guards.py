"""Request guards: the runtime's own API key and the request body size limit."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from aibrix.auth import bearer
from aibrix.runtime.errors import APIError, error_response
from aibrix.runtime.state import runtime_of

OPEN_PATHS = frozenset({"/healthz", "/ready", "/metrics", "/docs", "/openapi.json"})


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past AIBRIX_MAX_BODY_BYTES (checked while reading, not trusted)."""
    limit = runtime_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {declared} bytes is over the limit of {limit}", "PayloadTooLarge")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"request body is over the limit of {limit} bytes", "PayloadTooLarge")
        chunks.append(chunk)
    return b"".join(chunks)


class RuntimeKeyMiddleware:
    """With AIBRIX_RUNTIME_API_KEY set, every endpoint but health, readiness, metrics and docs wants that bearer key."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.expected = app, bearer(key).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await error_response(401, "missing or wrong runtime API key", "Unauthorized")(scope, receive, send)
                return
        await self.app(scope, receive, send)
