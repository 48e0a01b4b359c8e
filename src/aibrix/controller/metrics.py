"""The controller's own Prometheus metrics, and the small HTTP server for them and for the health probes."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from aibrix.metrics.registry import Counter, Gauge, Histogram, Registry

PHASES = ("Pending", "Scheduled", "Loading", "Bound", "Running", "Failed")


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = Registry()
        add = self.registry.add
        self.reconciles = add(Counter("aibrix_controller_reconciles", "Reconciles of ModelAdapters.", ["result"]))
        self.errors = add(
            Counter("aibrix_controller_reconcile_errors", "Reconciles that ended in an error.", ["reason"])
        )
        self.loads = add(Counter("aibrix_controller_adapter_loads", "Adapter load attempts on pods.", ["result"]))
        self.unloads = add(Counter("aibrix_controller_adapter_unloads", "Adapter unloads from pods.", ["result"]))
        self.reloads = add(
            Counter(
                "aibrix_controller_adapter_reloads", "Adapters loaded again after a pod lost them (engine restart)."
            )
        )
        self.failovers = add(Counter("aibrix_controller_failovers", "Pods given up on after their retries."))
        self.load_seconds = add(
            Histogram(
                "aibrix_controller_adapter_load_seconds",
                "Time to load an adapter on one pod, download included.",
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            )
        )
        self.reconcile_seconds = add(
            Histogram(
                "aibrix_controller_reconcile_seconds",
                "Time spent in one reconcile.",
                buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            )
        )
        self.adapters = add(Gauge("aibrix_controller_adapters", "ModelAdapters by phase.", ["phase"]))
        self.queue_depth = add(Gauge("aibrix_controller_queue_depth", "ModelAdapters waiting to be reconciled."))
        self.leader = add(Gauge("aibrix_controller_leader", "1 while this replica is the leader."))
        for phase in PHASES:
            self.adapters.labels(phase)

    def render(self) -> str:
        return self.registry.render()


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
