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


READ_TIMEOUT = 10.0  # seconds a client has to send a whole request (head and body) once it starts one
MAX_CONNECTIONS = 128  # beyond this, uvicorn answers 503 and closes


def serve_in_background(
    app: ASGIApp,
    address: tuple[str, int],
    context: ssl.SSLContext | None = None,
    keep_alive: int = 5,
    read_timeout: float = READ_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> asyncio.Task[None]:
    """uvicorn serving ``app`` as a task of the running loop, leaving signals to the caller (over TLS with
    ``context``, which may pick certificates per handshake; idle connections kept ``keep_alive`` seconds). A client
    gets ``read_timeout`` seconds to send each request, and at most ``max_connections`` are served at once: uvicorn
    alone waits for ever on a connection that sends half a header, and these servers share the controller's
    process."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=address[0],
        port=address[1],
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=keep_alive,
        http=_read_bounded(read_timeout),
        limit_concurrency=max_connections,
    )
    config.load()
    config.ssl = context
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    return asyncio.create_task(server.serve())


def _read_bounded(read_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline on reading each request: armed when a connection opens and when a
    new request's first bytes arrive, cleared once the request is whole; a client still sending then is cut off."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ReadBounded(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None:
                self._arm()
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
                self._disarm()  # the request is whole (or the connection is done): the app takes its time

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(read_timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
                self.transport.close()

    return ReadBounded
