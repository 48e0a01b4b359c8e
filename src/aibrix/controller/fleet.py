"""What every adapter's pass shares: the pods' cache, what each pod serves, where adapters are placed, the API
writes, de-duplicated Events, the pods' metric pages and unloading. A pass gets this, never the reconciler."""

from __future__ import annotations

import time
from collections.abc import Callable

from lightkube import ApiError

from aibrix.controller.demand import DemandEstimator, Move
from aibrix.controller.informer import Informer
from aibrix.controller.loader import Loader, LoadError, Outcome
from aibrix.controller.metrics import ControllerMetrics
from aibrix.controller.options import Options
from aibrix.controller.placements import Placements
from aibrix.controller.pods import Pod, pod_from_object
from aibrix.controller.resources import Key, Obj, key_of
from aibrix.controller.served import ServedIndex
from aibrix.controller.spec import AdapterSpec
from aibrix.controller.writes import Kube


class Fleet:
    def __init__(
        self,
        kube: Kube,
        adapters: Informer,
        pods: Informer,
        loader: Loader,
        options: Options,
        metrics: ControllerMetrics,
    ) -> None:
        self.kube, self.adapters, self.pods, self.loader = kube, adapters, pods, loader
        self.options, self.metrics = options, metrics
        self.index = ServedIndex(loader, ttl=max(0.5, options.resync / 2))
        self.placements = Placements(metrics)
        self._events: dict[Key, tuple[str, str]] = {}
        self._metrics: dict[str, tuple[float, str | None]] = {}
        self._pods: dict[tuple[str, str], Pod] = {}
        self.demand = DemandEstimator()  # fed by the balancer's samples (controller/balancer.py)
        self.moves: dict[Key, Move] = {}  # adapter -> the move the balancer asked of its next pass
        self._written: dict[Key, float] = {}  # adapter -> when its status was last written (monotonic)
        self.wake: Callable[[Key], None] = lambda key: None  # queue another adapter's pass (the manager sets it)

    def forget(self, key: Key) -> None:
        """Drop a deleted adapter; the slots it frees go to the adapters waiting for a first replica, at once, or
        to those short of slots for more replicas when none waits for a first."""
        self.placements.forget(key)
        waiting = self.placements.starving_keys(key[0]) or self.placements.held_back_keys(key[0])
        for other in waiting:
            self.wake(other)
        self.moves.pop(key, None)
        self._events.pop(key, None)
        self._written.pop(key, None)

    def wrote(self, key: Key) -> None:
        self._written[key] = time.monotonic()

    def written_long_ago(self, key: Key) -> bool:
        """Whether a resync interval has passed since the adapter's status was last written."""
        return time.monotonic() - self._written.get(key, 0.0) >= self.options.resync

    def forget_pod(self, obj: Obj) -> None:
        """Drop what was known about a deleted pod, and its pooled connections."""
        pod = pod_from_object(obj)
        self.index.forget(pod.uid)
        self.demand.forget((pod.namespace, pod.name))
        self._metrics.pop(pod.uid, None)
        self.loader.forget(pod)

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        key = key_of(obj)
        if self._events.get(key) == (reason, message):
            return  # the same news twice in a row is noise
        self._events[key] = (reason, message)
        self.kube.event(obj, type_, reason, message)

    async def unload(self, obj: Obj, spec: AdapterSpec, pod: Pod) -> bool:
        try:
            await self.loader.unload(pod, spec, timeout=self.options.unload_timeout)
            self.metrics.unloads.labels("ok").inc()
            self.index.discard(pod, spec.name)
            return True
        except LoadError as exc:
            self.metrics.unloads.labels("error").inc()
            self.event(obj, "Warning", "UnloadFailed", f"could not unload from pod {pod.name}: {exc.message}")
            return False

    def expected_demand(self, namespace: str, pod: str) -> dict[str, float]:
        """Each adapter placed on ``pod`` with its share of demand there: its demand over the pods it is on."""
        shares: dict[str, float] = {}
        if not self.demand.any_seen():
            return shares  # the balanced policy asks this of every pod for every placement: skip the walk
        for key in self.placements.on_pod(namespace, pod):
            demand = self.demand.of_adapter(*key)
            if demand > 0:
                shares[key[1]] = demand / max(1, len(self.placements.pods_of(key)))
        return shares

    def all_pods(self) -> list[Pod]:
        return [self._pod(o) for o in self.pods.objects.values()]

    def namespace_pods(self, namespace: str) -> list[Pod]:
        return [self._pod(o) for (ns, _), o in self.pods.objects.items() if ns == namespace]

    def _pod(self, obj: Obj) -> Pod:
        """The Pod view of a cached object, parsed once per version of the object."""
        meta = obj["metadata"]
        version = (meta.get("uid", ""), meta.get("resourceVersion", ""))
        pod = self._pods.get(version)
        if pod is None:
            if len(self._pods) > 4 * len(self.pods.objects) + 64:
                self._pods.clear()
            pod = self._pods[version] = pod_from_object(obj)
        return pod

    async def pod_metrics(self, pod: Pod) -> str | None:
        """A pod's metrics page, reused for a second: a burst of adapters does not scrape every pod per adapter."""
        cached = self._metrics.get(pod.uid)
        if cached is not None and time.monotonic() - cached[0] < 1.0:
            return cached[1]
        payload = await self.loader.metrics(pod)
        self._metrics[pod.uid] = (time.monotonic(), payload)
        return payload

    async def credentials(self, namespace: str, spec: AdapterSpec) -> dict[str, str] | None:
        """The values of the adapter's credentials Secret; a Secret that cannot be read or used fails the load."""
        if not spec.secret_name:
            return None
        try:
            return await self.kube.secret_data(namespace, spec.secret_name)
        except ApiError as exc:
            message = f"cannot read secret {spec.secret_name}: {exc.status.message}"
            raise LoadError(message, Outcome.FATAL) from None
        except ValueError as exc:  # a value that is not text: fix the secret, retrying cannot help
            raise LoadError(str(exc), Outcome.FATAL) from None
