"""The controller's HTTP endpoints for the kubelet and Prometheus: /healthz, /readyz and /metrics."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from aibrix.controller.metrics import ControllerMetrics


def probe_app(metrics: ControllerMetrics, healthy: Callable[[], bool], ready: Callable[[], bool]) -> Starlette:
    async def healthz(request: Request) -> Response:
        ok = healthy()
        return JSONResponse({"status": "ok" if ok else "unhealthy"}, status_code=200 if ok else 503)

    async def readyz(request: Request) -> Response:
        ok = ready()
        return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)

    async def render(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", render)])
