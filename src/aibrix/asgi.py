"""ASGI pieces the products share: request-recording middleware (runtime, simulator) and servers run as tasks
beside other work (the controller's probes and webhook)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    import ssl


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


def serve_in_background(
    app: ASGIApp, address: tuple[str, int], context: ssl.SSLContext | None = None, keep_alive: int = 5
) -> asyncio.Task[None]:
    """uvicorn serving ``app`` as a task of the running loop, leaving signals to the caller (over TLS with
    ``context``, which may pick certificates per handshake; idle connections kept ``keep_alive`` seconds)."""
    import uvicorn

    config = uvicorn.Config(app, host=address[0], port=address[1], log_level="warning", access_log=False,
                            lifespan="off", timeout_keep_alive=keep_alive)  # fmt: skip
    config.load()
    config.ssl = context
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    return asyncio.create_task(server.serve())
