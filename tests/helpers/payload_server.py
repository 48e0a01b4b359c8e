"""A real HTTP server on loopback that serves fixed bodies (engine metric payloads) with optional delay."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, running while the ``with`` block lasts."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign] # hang-ups are expected
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):  # type: ignore[no-untyped-def] # returns the subclass
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class PayloadServer(LoopbackServer):
    def __init__(
        self, routes: dict[str, bytes | str], *, delay: float = 0.0, redirects: dict[str, str] | None = None
    ) -> None:
        self.routes = {path: body.encode() if isinstance(body, str) else body for path, body in routes.items()}
        self.delay = delay
        self.hits: dict[str, int] = {}
        self.authorizations: list[str | None] = []  # the Authorization header of each request, in order
        self.redirects = redirects or {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                server.authorizations.append(self.headers.get("Authorization"))
                time.sleep(server.delay)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.routes.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)
