"""The controller's own Prometheus metrics, and the small HTTP server for them and for the health probes."""

from __future__ import annotations

from aibrix.controller.status import Phase
from aibrix.metrics.registry import Counter, Gauge, Histogram, Registry

PHASES = tuple(Phase)


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
        self.webhook_reviews = add(
            Counter(
                "aibrix_controller_webhook_reviews",
                "Admission reviews the sidecar injection webhook answered.",
                ["result"],
            )
        )
        for phase in PHASES:
            self.adapters.labels(phase)

    def render(self) -> str:
        return self.registry.render()
