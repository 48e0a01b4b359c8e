"""The webhook's serving certificate, re-read when its files change (a rotated Secret is picked up without a restart).

Every TLS handshake passes through the SNI callback (OpenSSL calls it with or without a server name), which looks
at the files' identity (inode, size, mtime: the kubelet swaps a mounted Secret by symlink) and hands the connection
the context of the newest certificate that loaded. A pair that does not load (mid-rotation, key and certificate not
matching yet) keeps the previous one serving and is tried again when the files change again.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger("aibrix.controller.webhook")

Identity = tuple[tuple[int, int, int], ...]


class ServingCertificate:
    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.current: ssl.SSLContext | None = None
        self._tried: Identity | None = None

    def context(self) -> ssl.SSLContext:
        """The context to serve with: it holds no certificate itself, each handshake gets the current one."""
        outer = _server_context()
        outer.sni_callback = self._select
        return outer

    def refresh(self) -> ssl.SSLContext | None:
        """The newest context that loaded; loads the files again if they changed since the last try."""
        identity = self._identity()
        if identity is None or identity == self._tried:
            return self.current
        self._tried = identity
        fresh = _server_context()
        try:
            fresh.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            still = "still serving the previous one" if self.current else "TLS handshakes fail until it loads"
            log.warning("webhook certificate %s not loaded (%s); %s", self.cert, exc, still)
            return self.current
        log.info("webhook serving certificate loaded from %s", self.cert)
        self.current = fresh
        return fresh

    def _identity(self) -> Identity | None:
        try:
            stats = [os.stat(path) for path in (self.cert, self.key)]
        except OSError:
            return None
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _select(self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> int | None:
        context = self.refresh()
        if context is None:
            if self._tried is None:
                log.warning("webhook certificate %s missing; TLS handshakes fail until it appears", self.cert)
                self._tried = ()
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        connection.context = context
        return None


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
