"""The reconcile entry point: a pass for an adapter that exists, deletion behind the finalizer otherwise.

A reconcile returns how soon it wants to run again, or None. One adapter's pass is ``adapter_pass.AdapterPass``,
which observes (``observation``), decides (``transitions``) and acts through the ``fleet`` all adapters share.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lightkube import ApiError

from aibrix.controller.adapter_pass import AdapterPass
from aibrix.controller.fleet import Fleet
from aibrix.controller.pods import parse_time
from aibrix.controller.resources import Key, Obj, key_of
from aibrix.controller.spec import AdapterSpec, SpecError, parse_spec
from aibrix.controller.status import claimed_pods
from aibrix.controller.vocabulary import FINALIZER

__all__ = ["Reconciler"]

log = logging.getLogger("aibrix.controller")


class Reconciler:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet, self.kube, self.adapters, self.options = fleet, fleet.kube, fleet.adapters, fleet.options

    def seed(self) -> None:
        """Count placements from the cached statuses, so least-adapters is right from the first reconcile."""
        self.fleet.placements.seed(self.adapters.objects, self.options.max_retries)

    def forget(self, key: Key) -> None:
        self.fleet.forget(key)

    def forget_pod(self, obj: Obj) -> None:
        self.fleet.forget_pod(obj)

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
        return await AdapterPass(self.fleet, obj).run()

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
        pods = [p for p in self.fleet.namespace_pods(key_of(obj)[0]) if p.name in names and p.reachable()]
        try:
            spec: AdapterSpec | None = parse_spec(obj)
        except SpecError:
            spec = None
        if spec is None or not pods:
            return []
        try:
            async with asyncio.timeout(self.options.deletion_timeout):
                done = await asyncio.gather(*(self.fleet.unload(obj, spec, pod) for pod in pods))
        except TimeoutError:
            return [pod.name for pod in pods]
        return [pod.name for pod, ok in zip(pods, done, strict=True) if not ok]
