"""The runtime's HTTP API (Starlette, the ASGI toolkit FastAPI is built on)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aibrix.auth import bearer
from aibrix.engines import EngineClient, create_engine
from aibrix.engines.errors import EngineError
from aibrix.engines.transport import check_header
from aibrix.runtime.adapters import AdapterService, LoadResult
from aibrix.runtime.admission import AdapterAdmission
from aibrix.runtime.artifacts import is_local_path, local_path_of
from aibrix.runtime.delegation import artifact_fetcher
from aibrix.runtime.downloads import ModelDownloads
from aibrix.runtime.errors import EXCEPTION_HANDLERS, error_response
from aibrix.runtime.guards import RuntimeKeyMiddleware, read_body
from aibrix.runtime.models import (
    DownloadModelRequest,
    ListModelsRequest,
    LoadAdapterRequest,
    ResolveAdapterRequest,
    UnloadAdapterRequest,
    parse_body,
)
from aibrix.runtime.readiness import ReadinessProbe
from aibrix.runtime.resolver import Resolver
from aibrix.runtime.scrape import CONTENT_TYPE, MetricsScraper
from aibrix.runtime.settings import Settings
from aibrix.runtime.state import RuntimeState, runtime_of
from aibrix.runtime.telemetry import RequestMetricsMiddleware, Telemetry, track_adapter_operation
from aibrix.storage.policy import OutboundPolicy
from aibrix.storage.uri import redact

log = logging.getLogger("aibrix.runtime")


def _auth(request: Request) -> str | None:
    """The caller's Authorization header goes on to the engine, unless it is the runtime's own key."""
    if runtime_of(request).settings.runtime_api_key is not None:
        return None
    return request.headers.get("authorization")


def _service(request: Request) -> AdapterService:
    return runtime_of(request).adapters


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    reason = await runtime_of(request).readiness.reason_not_ready()
    if reason is None:
        return JSONResponse({"status": "ready", "engine": runtime_of(request).settings.engine})
    return error_response(503, f"engine not ready: {reason}", "EngineNotReady")


async def list_models(request: Request) -> Response:
    cards = await _service(request).models(auth=_auth(request))
    return JSONResponse({"object": "list", "data": cards})


async def load_adapter(request: Request) -> Response:
    body = parse_body(await read_body(request), LoadAdapterRequest)
    api_key = (body.additional_config or {}).get("api-key")
    if isinstance(api_key, str) and api_key:
        auth: str | None = check_header(bearer(api_key), "additional_config.api-key")  # before any download starts
    else:
        auth = _auth(request)
    runtime = runtime_of(request)
    async with track_adapter_operation(runtime.telemetry, "load"):
        result, source = await _load(runtime, body, auth)
    if result.download_seconds is not None:
        runtime.telemetry.lora_load_seconds.labels("download").observe(result.download_seconds)
    runtime.telemetry.lora_load_seconds.labels("engine").observe(result.load_seconds)
    reply = {
        "status": "loaded",
        "lora_name": body.lora_name,
        "lora_path": result.lora_path,
        "source": source,
        "already_loaded": result.already_loaded,
        "download_seconds": None if result.download_seconds is None else round(result.download_seconds, 3),
        "load_seconds": round(result.load_seconds, 3),
        "message": result.message,
        "warnings": list(result.warnings),
        "rank": result.rank,
    }
    if body.replace:
        reply |= {"replaced": True, "gap": not runtime.adapters.engine.replaces_in_place}
    return JSONResponse(reply)


async def _load(runtime: RuntimeState, body: LoadAdapterRequest, auth: str | None) -> tuple[LoadResult, str]:
    """Load, or with ``replace`` swap in a new version of a loaded adapter; the result and the reported source."""
    service, name, digest = runtime.adapters, body.lora_name, body.artifact_digest
    if body.artifact_url is None or is_local_path(body.artifact_url):
        path = body.lora_path or local_path_of(body.artifact_url or "")
        if body.replace:
            return await service.replace(name, path, None, path=path, auth=auth, digest=digest), path
        return await service.load(name, path, auth=auth, digest=digest), path
    source = redact(body.artifact_url)
    fetch_into = await asyncio.to_thread(artifact_fetcher, runtime.settings, runtime.telemetry, body)  # reads secrets
    if body.replace:
        return await service.replace(name, source, fetch_into, auth=auth, digest=digest), source
    return await service.load_artifact(name, source, fetch_into, auth=auth, digest=digest), source


async def unload_adapter(request: Request) -> Response:
    body = parse_body(await read_body(request), UnloadAdapterRequest)
    async with track_adapter_operation(runtime_of(request).telemetry, "unload"):
        message = await _service(request).unload(body.lora_name, auth=_auth(request), cleanup_local=body.cleanup_local)
    return JSONResponse({"status": "unloaded", "lora_name": body.lora_name, "message": message})


async def resolve_adapter(request: Request) -> Response:
    """vLLM's resolver asks for an adapter nobody loaded (plugins/vllm-lora-resolver): 200 with a folder, or 404."""
    body = parse_body(await read_body(request), ResolveAdapterRequest)
    started = time.monotonic()
    resolved = await runtime_of(request).resolver.resolve(body.lora_name)
    reply = {
        "status": "resolved",
        "lora_name": body.lora_name,
        "lora_path": resolved.lora_path,
        "source": resolved.source,
        "result": resolved.result.value,
        "seconds": round(time.monotonic() - started, 3),
    }
    return JSONResponse(reply)


async def download_model_route(request: Request) -> Response:
    body = parse_body(await read_body(request), DownloadModelRequest)
    downloads = runtime_of(request).downloads
    status = downloads.start(body.model_uri, body.local_dir, body.model_name, body.download_extra_config)
    return JSONResponse(asdict(status))


async def list_models_on_disk(request: Request) -> Response:
    raw = await read_body(request)
    local_dir = request.query_params.get("local_dir")
    if raw.strip():  # upstream sends {"local_dir": ...} in a GET body
        local_dir = parse_body(raw, ListModelsRequest).local_dir or local_dir
    data = await asyncio.to_thread(runtime_of(request).downloads.listing, local_dir)
    return JSONResponse({"object": "list", "data": data})


async def list_adapters(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": _service(request).listing()})


async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    runtime.telemetry.show_adapters(runtime.adapters.loaded, runtime.settings.engine_max_adapters)
    return Response(await runtime.scraper.scrape(), media_type=CONTENT_TYPE)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/lora_adapter/load", load_adapter, methods=["POST"]),
    Route("/v1/lora_adapter/unload", unload_adapter, methods=["POST"]),
    Route("/v1/lora_adapter/resolve", resolve_adapter, methods=["POST"]),
    Route("/v1/lora_adapter", list_adapters, methods=["GET"]),
    Route("/v1/model/download", download_model_route, methods=["POST"]),
    Route("/v1/model/list", list_models_on_disk, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]


# While the engine is down the keeper looks this often, so adapters are back soon after it answers again.
COMEBACK_POLL_SECONDS = 0.1


async def _keep_adapters_loaded(runtime: RuntimeState) -> None:
    """Self-healing: when the engine comes back (or the runtime starts), load again what it has lost."""
    settings, service = runtime.settings, runtime.adapters
    # The first pass restores what the record lists (the runtime restarted, maybe the engine too); with nothing to
    # restore at start, the first pass is no comeback (an adapter evicted meanwhile must not count as lost).
    was_ready = not service.wanted
    last_problem = ""
    while True:
        watching = not was_ready and bool(service.wanted)
        await asyncio.sleep(
            min(settings.reconcile_seconds, COMEBACK_POLL_SECONDS) if watching else settings.reconcile_seconds
        )
        problem = ""
        try:
            ready = await runtime.readiness.reason_not_ready(fresh=watching) is None
            if ready and service.wanted:
                reloaded = await service.reconcile(engine_came_back=not was_ready)
                runtime.telemetry.reloaded(reloaded)
            was_ready = ready
        except EngineError as exc:
            problem = f"{exc.message} ({exc.status})"
            was_ready = False
        except Exception:  # never let the keeper die; the next round tries again
            log.exception("adapter reconciliation failed")
        if problem and problem != last_problem:  # said once, not every round
            log.warning("cannot check the engine's adapters: %s", problem)
        last_problem = problem


def build_app(settings: Settings) -> Starlette:
    """The runtime application for ``settings``; the engine client opens and closes with the app."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime: RuntimeState = app.state.runtime
        keeper = asyncio.create_task(_keep_adapters_loaded(runtime))
        try:
            yield
        finally:
            keeper.cancel()
            await runtime.adapters.engine.aclose()
            await runtime.scraper.aclose()
            runtime.adapters.close()

    routes = list(ROUTES)
    if settings.enable_docs:
        from aibrix.runtime.openapi import docs_routes

        routes += docs_routes()
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    api_key = settings.engine_api_key.get_secret_value() if settings.engine_api_key else None
    client = EngineClient(settings.engine_endpoint, api_key=api_key, timeout=settings.engine_timeout)
    engine = create_engine(settings.engine, client)
    model_policy = OutboundPolicy(
        settings.allow_metadata_urls, allow_local_files=False, max_bytes=settings.max_model_bytes
    )
    telemetry = Telemetry(settings.engine)
    if settings.runtime_api_key is not None:
        app.add_middleware(RuntimeKeyMiddleware, key=settings.runtime_api_key.get_secret_value())
    app.add_middleware(RequestMetricsMiddleware, telemetry=telemetry)
    scraper = MetricsScraper(
        engine,
        telemetry,
        path=settings.scrape_path,
        timeout=settings.metrics_scrape_timeout,
        transform=settings.transform_metrics,
        rate_window=settings.metrics_rate_window,
        client=EngineClient(settings.engine_metrics_endpoint, api_key=api_key, timeout=settings.engine_timeout)
        if settings.engine_metrics_endpoint
        else None,
    )
    readiness = ReadinessProbe(
        engine, timeout=settings.ready_timeout or engine.ready_timeout, cache_seconds=settings.ready_cache_seconds
    )
    admission = AdapterAdmission(
        engine,
        max_rank=settings.engine_max_lora_rank,
        base_model_check=settings.base_model_check,
        allow_pickle=settings.allow_pickle_adapters,
        max_files=settings.max_adapter_files,
        max_bytes=settings.max_artifact_bytes,
    )
    adapters = AdapterService(engine, Path(settings.adapter_dir), admission)
    app.state.runtime = RuntimeState(
        settings=settings,
        adapters=adapters,
        downloads=ModelDownloads(Path(settings.model_dir), policy=model_policy),
        telemetry=telemetry,
        scraper=scraper,
        readiness=readiness,
        resolver=Resolver(settings, telemetry, adapters),
    )
    return app
