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
        answer, outcome = review(bytes(body), default_image, MAX_BODY)
        metrics.webhook_reviews.labels(outcome).inc()
        return JSONResponse(answer)

    return Starlette(routes=[Route(path, mutate, methods=["POST"]) for path in PATHS])


def serve_webhook(
    address: tuple[str, int], cert_dir: Path, default_image: str, metrics: ControllerMetrics
) -> asyncio.Task[None]:
    """Serve on ``address`` with ``tls.crt``/``tls.key`` from ``cert_dir`` (the keys of a kubernetes.io/tls
    Secret), re-read when they change."""
    import uvicorn

    certificate = ServingCertificate(cert_dir / "tls.crt", cert_dir / "tls.key")
    if certificate.refresh() is None:
        log.warning("webhook: no certificate in %s yet; handshakes fail until tls.crt and tls.key load", cert_dir)
    config = uvicorn.Config(webhook_app(default_image, metrics), host=address[0], port=address[1],
                            log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)  # fmt: skip
    config.load()
    config.ssl = certificate.context()
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    return asyncio.create_task(server.serve())
