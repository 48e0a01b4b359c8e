"""The runtime's HTTP API (Starlette, the ASGI toolkit FastAPI is built on)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aibrix import __version__
from aibrix.engines import EngineClient, create_engine
from aibrix.runtime.adapters import AdapterService
from aibrix.runtime.errors import EXCEPTION_HANDLERS, error_response
from aibrix.runtime.models import LoadAdapterRequest, UnloadAdapterRequest, parse_body
from aibrix.runtime.readiness import ReadinessProbe
from aibrix.runtime.scrape import CONTENT_TYPE, MetricsScraper
from aibrix.runtime.settings import Settings
from aibrix.runtime.telemetry import RequestMetricsMiddleware, Telemetry, track_adapter_operation


def _auth(request: Request) -> str | None:
    return request.headers.get("authorization")


def _service(request: Request) -> AdapterService:
    return request.app.state.adapters


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    reason = await request.app.state.readiness.reason_not_ready()
    if reason is None:
        return JSONResponse({"status": "ready", "engine": request.app.state.settings.engine})
    return error_response(503, f"engine not ready: {reason}", "EngineNotReady")


async def list_models(request: Request) -> Response:
    cards = await _service(request).models(auth=_auth(request))
    return JSONResponse({"object": "list", "data": cards})


async def load_adapter(request: Request) -> Response:
    body = parse_body(await request.body(), LoadAdapterRequest)
    async with track_adapter_operation(request.app.state.telemetry, "load"):
        result = await _service(request).load(body.lora_name, body.lora_path, auth=_auth(request))
    return JSONResponse(
        {
            "status": "loaded",
            "lora_name": body.lora_name,
            "lora_path": body.lora_path,
            "already_loaded": result.already_loaded,
            "message": result.message,
        }
    )


async def unload_adapter(request: Request) -> Response:
    body = parse_body(await request.body(), UnloadAdapterRequest)
    async with track_adapter_operation(request.app.state.telemetry, "unload"):
        message = await _service(request).unload(body.lora_name, auth=_auth(request))
    return JSONResponse({"status": "unloaded", "lora_name": body.lora_name, "message": message})


async def metrics(request: Request) -> Response:
    return Response(await request.app.state.scraper.scrape(), media_type=CONTENT_TYPE)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/lora_adapter/load", load_adapter, methods=["POST"]),
    Route("/v1/lora_adapter/unload", unload_adapter, methods=["POST"]),
    Route("/metrics", metrics, methods=["GET"]),
]


def build_app(settings: Settings) -> Starlette:
    """The runtime application for ``settings``; the engine client opens and closes with the app."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await app.state.adapters.engine.aclose()

    routes = list(ROUTES)
    if settings.enable_docs:
        from aibrix.runtime.openapi import docs_routes

        routes += docs_routes()
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    api_key = settings.engine_api_key.get_secret_value() if settings.engine_api_key else None
    client = EngineClient(settings.engine_endpoint, api_key=api_key, timeout=settings.engine_timeout)
    engine = create_engine(settings.engine, client)
    app.state.settings = settings
    app.state.version = __version__
    app.state.adapters = AdapterService(engine)
    app.state.telemetry = telemetry = Telemetry(settings.engine)
    app.add_middleware(RequestMetricsMiddleware, telemetry=telemetry)
    app.state.scraper = MetricsScraper(
        engine,
        telemetry,
        path=settings.scrape_path,
        timeout=settings.metrics_scrape_timeout,
        transform=settings.transform_metrics,
        rate_window=settings.metrics_rate_window,
    )
    app.state.readiness = ReadinessProbe(
        engine, timeout=settings.ready_timeout, cache_seconds=settings.ready_cache_seconds
    )
    return app
