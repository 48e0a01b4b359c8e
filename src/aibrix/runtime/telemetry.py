"""The runtime's own metrics: its API traffic, adapter operations, downloads, scrapes, engine reachability."""

from __future__ import annotations

import time
from collections.abc import Iterable

from starlette.routing import Match
from starlette.types import ASGIApp, Scope

from aibrix import __version__
from aibrix.asgi import RecordingMiddleware, Seen
from aibrix.errors import AibrixError
from aibrix.metrics.registry import Counter, Gauge, Histogram, Registry

FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SLOW_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Telemetry:
    def __init__(self, engine: str) -> None:
        self.registry = Registry()
        add = self.registry.add
        info = Gauge("aibrix:runtime_info", "Runtime version and engine kind.", ["version", "inference_engine"])
        info.labels(__version__, engine).set(1)
        add(info)
        self.engine_up = Gauge("aibrix:engine_up", "1 when the last engine scrape succeeded, else 0.")
        self.requests = Counter(
            "aibrix:runtime_requests", "Requests to the runtime API.", ["method", "route", "status"]
        )
        self.request_seconds = Histogram(
            "aibrix:runtime_request_duration_seconds",
            "Time to answer a request to the runtime API.",
            ["method", "route"],
            buckets=FAST_BUCKETS,
        )
        self.adapter_ops = Counter(
            "aibrix:runtime_adapter_operations",
            "Adapter operations by outcome (ok, or the error type).",
            ["operation", "outcome"],
        )
        self.adapter_seconds = Histogram(
            "aibrix:runtime_adapter_operation_duration_seconds",
            "Time an adapter operation took, engine call included.",
            ["operation"],
            buckets=FAST_BUCKETS,
        )
        self.adapter_reloads = Counter(
            "aibrix:runtime_adapter_reloads", "Adapters loaded again after the engine lost them (restart)."
        )
        self.download_bytes = Counter("aibrix:runtime_download_bytes", "Bytes downloaded by the runtime.")
        self.download_seconds = Histogram(
            "aibrix:runtime_download_duration_seconds", "Time a download took.", buckets=SLOW_BUCKETS
        )
        self.resolves = Counter(
            "aibrix:lora_adapter_resolves",
            "Adapters asked for by the engine's resolver on first request, by result (resolved, already, "
            "not_found, failed, recent_miss).",
            ["result"],
        )
        self.resolve_seconds = Histogram(
            "aibrix:lora_adapter_resolve_seconds",
            "Time to answer the engine's resolver, download included.",
            buckets=FAST_BUCKETS,
        )
        self.lora_loaded = Gauge(
            "aibrix:lora_adapter_loaded", "1 for each adapter this runtime keeps loaded in the engine.", ["lora_name"]
        )
        self.lora_load_seconds = Histogram(
            "aibrix:lora_adapter_load_seconds",
            "Time an adapter load took, by phase: download (the artifact) and engine (the engine's load call).",
            ["phase"],
            buckets=FAST_BUCKETS,
        )
        self.lora_load_failures = Counter(
            "aibrix:lora_adapter_load_failures", "Adapter loads that failed, by reason (the error type).", ["reason"]
        )
        self.lora_reloads = Counter(
            "aibrix:lora_adapter_reloads", "Adapters loaded again after the engine lost them (self-healing)."
        )
        self.lora_active = Gauge(
            "aibrix:lora_adapter_requests_active",
            "1 for each adapter the engine reports with requests running or waiting (vLLM's lora_requests_info).",
            ["lora_name", "state"],
        )
        self.slots_used = Gauge("aibrix:lora_slots_used", "Adapters this runtime keeps loaded in the engine.")
        self.slots_total = Gauge(
            "aibrix:lora_slots_total", "Adapters the engine can keep loaded (AIBRIX_ENGINE_MAX_ADAPTERS), when known."
        )
        self.scrape_seconds = Histogram(
            "aibrix:runtime_metrics_scrape_duration_seconds",
            "Time to fetch and standardize the engine's metrics.",
            buckets=FAST_BUCKETS,
        )
        self.fallbacks = Counter(
            "aibrix:runtime_metrics_transform_fallbacks",
            "Scrapes answered with the raw engine payload because standardization failed.",
        )
        for family in (
            self.engine_up,
            self.requests,
            self.request_seconds,
            self.adapter_ops,
            self.adapter_seconds,
            self.adapter_reloads,
            self.download_bytes,
            self.download_seconds,
            self.resolves,
            self.resolve_seconds,
            self.lora_loaded,
            self.lora_load_seconds,
            self.lora_load_failures,
            self.lora_reloads,
            self.lora_active,
            self.slots_used,
            self.slots_total,
            self.scrape_seconds,
            self.fallbacks,
        ):
            add(family)
        self.engine_up.set(0)
        self.download_bytes.inc(0)
        self.fallbacks.inc(0)
        self.adapter_reloads.inc(0)
        self.lora_reloads.inc(0)
        self.slots_used.set(0)

    def show_adapters(self, loaded: Iterable[str], slots: int | None) -> None:
        """The per-adapter gauges as they stand, set just before a scrape renders them."""
        self.lora_loaded.clear()
        names = sorted(loaded)
        for name in names:
            self.lora_loaded.labels(name).set(1)
        self.slots_used.set(len(names))
        if slots is not None:
            self.slots_total.set(slots)

    def reloaded(self, count: int) -> None:
        self.adapter_reloads.inc(count)
        self.lora_reloads.inc(count)

    def render(self) -> bytes:
        return self.registry.render().encode()


class RequestMetricsMiddleware(RecordingMiddleware):
    """Counts and times every API request by route template, so label values stay bounded."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        super().__init__(app)
        self.telemetry = telemetry

    def record(self, scope: Scope, seen: Seen, seconds: float) -> None:
        route = _route_of(scope)
        self.telemetry.requests.labels(scope["method"], route, str(seen.status)).inc()
        self.telemetry.request_seconds.labels(scope["method"], route).observe(seconds)


def _route_of(scope: Scope) -> str:
    router = scope["app"].router
    for route in router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL or match == Match.PARTIAL:
            return str(route.path)
    return "unmatched"


class track_adapter_operation:  # noqa: N801 - used as a context manager, reads like one
    """Counts one adapter operation with its outcome (``ok`` or the error's type) and times it."""

    def __init__(self, telemetry: Telemetry, operation: str) -> None:
        self.telemetry, self.operation = telemetry, operation

    async def __aenter__(self) -> None:
        self.started = time.perf_counter()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        outcome = "ok" if exc is None else exc.kind if isinstance(exc, AibrixError) else type(exc).__name__
        self.telemetry.adapter_ops.labels(self.operation, outcome).inc()
        if exc is not None and self.operation == "load":
            self.telemetry.lora_load_failures.labels(outcome).inc()
        self.telemetry.adapter_seconds.labels(self.operation).observe(time.perf_counter() - self.started)
