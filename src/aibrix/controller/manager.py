"""Wiring: informers feed a work queue, workers reconcile, a timer resyncs, and only the leader does any of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightkube import ApiError, AsyncClient, operators

from aibrix.controller.balancer import BalanceOptions, Balancer
from aibrix.controller.fleet import Fleet
from aibrix.controller.informer import Informer
from aibrix.controller.leader import LeaderElector
from aibrix.controller.loader import Loader
from aibrix.controller.metrics import ControllerMetrics
from aibrix.controller.options import Options
from aibrix.controller.pods import pod_from_object
from aibrix.controller.reconciler import Reconciler
from aibrix.controller.resources import EndpointSlice, Key, ModelAdapter, Obj, Pod, Service
from aibrix.controller.runtime_keys import RuntimeKeys
from aibrix.controller.spec import Selector, SpecError, parse_selector
from aibrix.controller.vocabulary import ADAPTER_LABEL
from aibrix.controller.writes import Kube

log = logging.getLogger("aibrix.controller")


class Backoff:
    """Per-object exponential backoff for failed reconciles, as client-go's rate limiter: a conflict is retried at
    once and then less often, an error that keeps coming back (an object the server refuses) settles at ``cap``
    seconds instead of looping; a success starts over."""

    def __init__(self, cap: float = 60.0) -> None:
        self.cap = cap
        self._failures: dict[Key, int] = {}

    def failed(self, key: Key, base: float) -> float:
        count = self._failures.get(key, 0)
        self._failures[key] = count + 1
        return float(min(base * 2**count, self.cap))

    def succeeded(self, key: Key) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """Keys waiting to be reconciled: each queued once, never reconciled by two workers at a time, and a key
    that changes while being reconciled is reconciled again afterwards (client-go's workqueue semantics)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self.idle = asyncio.Event()  # nothing queued or being reconciled
        self.idle.set()

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: Key) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)
            self.idle.clear()

    def add_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        current = self._timers.get(key)
        if current is not None:
            if current[0] <= due:
                return
            current[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
        elif not self._queued and not self._active:
            self.idle.set()


def complete(adapter: Obj) -> bool:
    """Holds all the replicas its spec asks for: a pod that arrives has nothing to offer it."""
    replicas = (adapter.get("spec") or {}).get("replicas")
    ready = (adapter.get("status") or {}).get("readyReplicas") or 0
    return isinstance(replicas, int) and ready >= replicas


@dataclass
class ControllerConfig:
    namespace: str | None = None
    options: Options = field(default_factory=Options)
    balance: BalanceOptions = field(default_factory=BalanceOptions)
    workers: int = 32
    leader_elect: bool = True
    lease_name: str = "aibrix-controller-manager"
    lease_namespace: str = "aibrix-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    lease_retry: float = 2.0
    identity: str = ""


class Controller:
    def __init__(self, client: AsyncClient, config: ControllerConfig, metrics: ControllerMetrics) -> None:
        self.client, self.config, self.metrics = client, config, metrics
        self.queue = WorkQueue()
        self.backoff = Backoff()
        self.kube = Kube(client)
        self.kube.events.calm = self.queue.idle  # Events yield to reconciles (events.py)
        self.loader = Loader(use_runtime=config.options.use_runtime, runtime_keys=RuntimeKeys(self.kube.secret_data))
        self.adapters = Informer(client, ModelAdapter, config.namespace, self._on_adapter)
        self.pods = Informer(client, Pod, config.namespace, self._on_pod)
        # The Services and EndpointSlices the controller owns: one deleted by hand is written again at once.
        owned = {ADAPTER_LABEL: operators.exists()}
        self.owned = [
            Informer(client, kind, config.namespace, self._on_owned(kind), labels=owned)
            for kind in (Service, EndpointSlice)
        ]
        fleet = Fleet(self.kube, self.adapters, self.pods, self.loader, config.options, metrics)
        fleet.wake = self.queue.add  # a preempting adapter wakes the ones it displaced
        self.reconciler = Reconciler(fleet)
        self.balancer = Balancer(fleet, config.balance)
        self.leading = False
        self._selectors: dict[tuple[str, str, int], Selector | None] = {}

    # --- events ----------------------------------------------------------------------------------------------

    def _on_adapter(self, event: str, old: Obj | None, new: Obj) -> None:
        key = (new["metadata"].get("namespace", ""), new["metadata"]["name"])
        if event == "DELETED":
            self.reconciler.forget(key)
            self._selectors = {k: v for k, v in self._selectors.items() if k[:2] != key}
            return
        if old is not None and event == "MODIFIED":
            before, after = old["metadata"], new["metadata"]
            if before.get("generation") == after.get("generation") and bool(before.get("deletionTimestamp")) == bool(
                after.get("deletionTimestamp")
            ):
                return  # our own status writes: nothing new to act on
        self.queue.add(key)

    def _on_owned(self, kind: Any) -> Callable[[str, Obj | None, Obj], None]:
        def handle(event: str, old: Obj | None, new: Obj) -> None:
            if event != "DELETED":
                return
            meta = new["metadata"]
            self.kube.forget_applied(kind, meta.get("namespace", ""), meta["name"])
            key = (meta.get("namespace", ""), (meta.get("labels") or {}).get(ADAPTER_LABEL, ""))
            if key in self.adapters.objects:
                self.queue.add(key)

        return handle

    def _on_pod(self, event: str, old: Obj | None, new: Obj) -> None:
        """Wake the adapters a pod's change concerns: those placed on it first (failover), then, when it can take
        adapters, the matching ones that want more pods. A change the pass would not see wakes nobody."""
        namespace = new["metadata"].get("namespace", "")
        before, after = (None if old is None else pod_from_object(old)), pod_from_object(new)
        if event == "DELETED":
            self.reconciler.forget_pod(new)
        elif before == after:
            return  # a status or metadata change placement does not read
        for key in sorted(self.reconciler.fleet.placements.on_pod(namespace, after.name)):
            self.queue.add(key)
        if event == "DELETED" or not after.alive():
            return
        labels = [p.labels for p in (before, after) if p is not None]
        for key, adapter in self.adapters.objects.items():
            if key[0] != namespace or complete(adapter):
                continue
            selector = self._selector(adapter)
            if selector is None or any(selector.matches(lbls) for lbls in labels):
                self.queue.add(key)

    def _selector(self, adapter: Obj) -> Selector | None:
        meta = adapter["metadata"]
        key = (meta["namespace"], meta["name"], meta.get("generation", 0))
        if key not in self._selectors:
            try:
                self._selectors[key] = parse_selector((adapter.get("spec") or {}).get("podSelector"))
            except SpecError:
                self._selectors[key] = None
        return self._selectors[key]

    # --- running ---------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Lead (or wait to), then reconcile until ``stop`` is set or leadership is lost."""
        elector = None
        if self.config.leader_elect:
            elector = LeaderElector(
                self.client,
                self.config.lease_name,
                self.config.lease_namespace,
                self.config.identity,
                self.config.lease_duration,
                self.config.renew_deadline,
                self.config.lease_retry,
            )
            acquire = asyncio.ensure_future(elector.acquire())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                acquire.cancel()
                return
            stopped.cancel()
        self.leading = True
        self.metrics.leader.set(1)
        tasks = [asyncio.create_task(informer.run()) for informer in (self.adapters, self.pods, *self.owned)]
        tasks.append(asyncio.create_task(self._work()))
        try:
            # The lease is renewed from the start: a cache sync that never ends (the API server went away right
            # after the lease was taken) must not hold the lease without renewing it.
            watchers: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait())]
            if elector is not None:
                watchers.append(asyncio.ensure_future(elector.keep()))
            await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
            for watcher in watchers:
                watcher.cancel()
        finally:
            self.leading = False
            self.metrics.leader.set(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if elector is not None and stop.is_set():
                await elector.release()
            await self.loader.aclose()

    async def _work(self) -> None:
        """Once the caches hold every adapter and pod, reconcile until cancelled."""
        await asyncio.gather(self.adapters.synced.wait(), self.pods.synced.wait())
        self.reconciler.seed()
        log.info("caches synced: %d adapters, %d pods", len(self.adapters.objects), len(self.pods.objects))
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.config.workers)]
        tasks.append(asyncio.create_task(self._resync()))
        tasks.append(asyncio.create_task(self.balancer.run()))
        for task in tasks:
            task.add_done_callback(_said_if_crashed)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)  # one task's crash must not end the others
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.options.resync)
            for key in list(self.adapters.objects):
                self.queue.add(key)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            self.metrics.queue_depth.set(len(self.queue))
            started = time.perf_counter()
            try:
                again = await self.reconciler.reconcile(key)
                self.backoff.succeeded(key)
                self.metrics.reconciles.labels("ok").inc()
                if again is not None:
                    self.queue.add_after(key, again)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                code = exc.status.code
                self.metrics.reconciles.labels("error").inc()
                self.metrics.errors.labels("conflict" if code in (409, 422) else "api").inc()
                delay = self.backoff.failed(key, 0.05 if code == 409 else 0.5)
                log.info(
                    "reconcile of %s/%s: API answered %s (%s); retrying in %.2gs", *key, code, exc.status.message, delay
                )
                self.queue.add_after(key, delay)
            except Exception:
                self.metrics.reconciles.labels("error").inc()
                self.metrics.errors.labels("internal").inc()
                log.exception("reconcile of %s/%s failed", *key)
                self.queue.add_after(key, self.backoff.failed(key, 1.0))
            finally:
                self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                self.queue.done(key)


def _said_if_crashed(task: asyncio.Task[None]) -> None:
    """A worker, the resync or the balancer ending by itself is a bug: logged with its traceback, the rest go on."""
    if not task.cancelled() and task.exception() is not None:
        log.error("controller task %s crashed", task.get_coro(), exc_info=task.exception())
