"""The reconcile entry point and what all adapters share: the pods' cache, what each pod serves, where adapters are
placed, de-duplicated events, and unloading (also on deletion, behind the finalizer).

A reconcile returns how soon it wants to run again, or None. One adapter's pass is ``adapter_pass.AdapterPass``;
its decisions are pure functions in ``transitions``; the Service and EndpointSlice come from ``exposure``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lightkube import ApiError

from aibrix.controller.adapter_pass import AdapterPass
from aibrix.controller.informer import Informer
from aibrix.controller.loader import Loader, LoadError
from aibrix.controller.metrics import ControllerMetrics
from aibrix.controller.options import Options
from aibrix.controller.placements import Placements
from aibrix.controller.pods import Pod, parse_time, pod_from_object
from aibrix.controller.resources import Key, Obj, key_of
from aibrix.controller.served import ServedIndex
from aibrix.controller.spec import FINALIZER, AdapterSpec, SpecError, parse_spec
from aibrix.controller.status import claimed_pods
from aibrix.controller.writes import Kube

__all__ = ["Reconciler"]

log = logging.getLogger("aibrix.controller")


class Reconciler:
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

    def seed(self) -> None:
        """Count placements from the cached statuses, so least-adapters is right from the first reconcile."""
        self.placements.seed(self.adapters.objects)

    def forget(self, key: Key) -> None:
        self.placements.forget(key)
        self._events.pop(key, None)

    def forget_pod(self, obj: Obj) -> None:
        """Drop what was known about a deleted pod, and its pooled connections."""
        pod = pod_from_object(obj)
        self.index.forget(pod.uid)
        self._metrics.pop(pod.uid, None)
        self.loader.forget(pod)

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        key = key_of(obj)
        if self._events.get(key) == (reason, message):
            return  # the same news twice in a row is noise
        self._events[key] = (reason, message)
        self.kube.event(obj, type_, reason, message)

    async def reconcile(self, key: Key) -> float | None:
        obj = self.adapters.objects.get(key)
        if obj is None:
            self.forget(key)
            return None
        if obj["metadata"].get("deletionTimestamp"):
            return await self.finalize(obj)
        finalizers = obj["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            obj = await self.kube.set_finalizers(obj, [*finalizers, FINALIZER])
            self.adapters.store(obj)
        return await AdapterPass(self, obj).run()

    async def finalize(self, obj: Obj) -> float | None:
        """Unload from every pod that may hold the adapter (ready or not: a runtime that keeps its record would
        bring it back), retrying those that fail until ``deletion_timeout`` after the deletion was asked for;
        then let the object go. Returns when to look again while unloads are still failing."""
        key = key_of(obj)
        finalizers = obj["metadata"].get("finalizers") or []
        if FINALIZER in finalizers:
            failed = await self._unload_everywhere(obj)
            waited = time.time() - (parse_time(obj["metadata"].get("deletionTimestamp")) or time.time())
            if failed and waited < self.options.deletion_timeout:
                return min(1.0, self.options.deletion_timeout - waited)  # keep the finalizer; try those again
            if failed:
                log.warning(
                    "could not unload %s/%s from %s within %ss; deleting anyway",
                    *key,
                    ", ".join(failed),
                    self.options.deletion_timeout,
                )
            rest = [f for f in finalizers if f != FINALIZER]
            try:
                self.adapters.store(await self.kube.set_finalizers(obj, rest))
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
        log.info("adapter %s/%s deleted", *key, extra={"adapter": f"{key[0]}/{key[1]}"})
        self.forget(key)
        return None

    async def _unload_everywhere(self, obj: Obj) -> list[str]:
        """Unload from the pods the status names that still exist with an address; the names that failed."""
        names = claimed_pods(obj.get("status") or {})
        pods = [p for p in self.namespace_pods(key_of(obj)[0]) if p.name in names and p.reachable()]
        try:
            spec: AdapterSpec | None = parse_spec(obj)
        except SpecError:
            spec = None
        if spec is None or not pods:
            return []
        try:
            async with asyncio.timeout(self.options.deletion_timeout):
                done = await asyncio.gather(*(self.unload(obj, spec, pod) for pod in pods))
        except TimeoutError:
            return [pod.name for pod in pods]
        return [pod.name for pod, ok in zip(pods, done, strict=True) if not ok]

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

    def pod(self, namespace: str, name: str) -> Pod | None:
        obj = self.pods.objects.get((namespace, name))
        return self._pod(obj) if obj is not None else None
