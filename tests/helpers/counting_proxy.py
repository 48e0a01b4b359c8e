"""A reverse proxy that counts the requests it passes on: how many GETs a store really saw. Headers go through as
they came (Host included), so a signed S3 request stays valid behind it."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.helpers.payload_server import LoopbackServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class CountingProxy(LoopbackServer):
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.requests: list[tuple[str, str]] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def relay(self) -> None:
                with lock:
                    proxy.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                connection.request(self.command, self.path, body, headers)
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    def gets(self, prefix: str) -> list[str]:
        """The paths of GETs for objects under ``prefix`` (a path such as /bucket/key-prefix), listings left out."""
        return [
            p for m, p in self.requests if m == "GET" and p.split("?")[0].startswith(prefix) and "list-type" not in p
        ]
