"""The sidecar injection webhook's HTTPS server, run inside the controller process (every replica serves it; no
leadership needed: answering a review changes nothing in the cluster)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aibrix.asgi import MAX_CONNECTIONS, READ_TIMEOUT, serve_in_background
from aibrix.controller.admission import MAX_BODY, review
from aibrix.controller.certs import ServingCertificate
from aibrix.controller.metrics import ControllerMetrics

log = logging.getLogger("aibrix.controller.webhook")
PATHS = ("/mutate-v1-pod", "/mutate-apps-v1-deployment")


def webhook_app(default_image: str, metrics: ControllerMetrics) -> Starlette:
    async def mutate(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                break
        answer, outcome = review(bytes(body), default_image)
        metrics.webhook_reviews.labels(outcome).inc()
        return JSONResponse(answer)

    return Starlette(routes=[Route(path, mutate, methods=["POST"]) for path in PATHS])


def serve_webhook(
    address: tuple[str, int],
    cert_dir: Path,
    default_image: str,
    metrics: ControllerMetrics,
    read_timeout: float = READ_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> asyncio.Task[None]:
    """Serve on ``address`` with ``tls.crt``/``tls.key`` from ``cert_dir`` (the keys of a kubernetes.io/tls
    Secret), re-read when they change; each request read within ``read_timeout``, ``max_connections`` at once."""
    certificate = ServingCertificate(cert_dir / "tls.crt", cert_dir / "tls.key")
    if certificate.refresh() is None:
        log.warning("webhook: no certificate in %s yet; handshakes fail until tls.crt and tls.key load", cert_dir)
    # the API server keeps its connections to webhooks: a longer keep-alive spares it a TLS handshake per pod
    return serve_in_background(
        webhook_app(default_image, metrics),
        address,
        certificate.context(),
        keep_alive=30,
        read_timeout=read_timeout,
        max_connections=max_connections,
    )
