"""ASGI middleware pieces the runtime and the simulator share."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Seen:
    """What the response to one request looked like."""

    status = 500  # until the app starts a response: an exception before that is a 500 to the client
    body_bytes = 0


class RecordingMiddleware:
    """Calls ``record(scope, seen, seconds)`` once per HTTP request, when it ends (also when the app raised)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def record(self, scope: Scope, seen: Seen, seconds: float) -> None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, seen = time.perf_counter(), Seen()

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
            elif message["type"] == "http.response.body":
                seen.body_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.record(scope, seen, time.perf_counter() - started)
