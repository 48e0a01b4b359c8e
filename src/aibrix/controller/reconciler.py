"""One reconcile of one ModelAdapter: compare what it asks for with the pods and what they hold, then act.

Level-triggered and idempotent: everything it needs is in the informer caches, the adapter's status (including
per-pod retry state, so a restarted controller carries on where the last one stopped) and the pods themselves.
A reconcile returns how soon it wants to run again (a retry falling due, a pod becoming stable), or None.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import Counter
from dataclasses import dataclass

from lightkube import ApiError

from aibrix.controller import schedulers
from aibrix.controller.kube import EndpointSlice, Informer, Key, Kube, Obj, Service, key_of
from aibrix.controller.loader import Loader, LoadError, Outcome
from aibrix.controller.metrics import PHASES, ControllerMetrics
from aibrix.controller.pods import Pod, pod_from_object
from aibrix.controller.spec import (
    ADAPTER_LABEL,
    ENABLED_LABEL,
    FINALIZER,
    GROUP,
    KIND,
    MODEL_LABEL,
    VERSION,
    AdapterSpec,
    SpecError,
    parse_spec,
)
from aibrix.controller.status import Retry, condition, set_condition

log = logging.getLogger("aibrix.controller")


@dataclass
class Options:
    use_runtime: bool = True
    max_retries: int = 5
    retry_base: float = 5.0
    stability: float = 5.0
    resync: float = 30.0
    unload_timeout: float = 5.0
    deletion_timeout: float = 30.0

    def backoff(self, attempts: int) -> float:
        """5, 10, 20, 40, 80 s for the default base."""
        return self.retry_base * 2 ** max(0, attempts - 1)

    @property
    def cooldown(self) -> float:
        """How long a pod that spent its retries is left alone before it gets a fresh set."""
        return self.backoff(self.max_retries + 1)


class LoadedIndex:
    """What each pod serves, asked once per pod per resync however many adapters it hosts."""

    def __init__(self, loader: Loader, ttl: float) -> None:
        self.loader, self.ttl = loader, ttl
        self._entries: dict[str, tuple[float, set[str]]] = {}
        self._inflight: dict[str, asyncio.Future[set[str] | None]] = {}

    async def names(self, pod: Pod, api_key: str | None) -> set[str] | None:
        """The pod's served names, or None when it cannot be asked right now (the adapter is then assumed there)."""
        entry = self._entries.get(pod.uid)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        future = self._inflight.get(pod.uid)
        if future is None:
            future = self._inflight[pod.uid] = asyncio.ensure_future(self._fetch(pod, api_key))
            future.add_done_callback(lambda _: self._inflight.pop(pod.uid, None))
        return await asyncio.shield(future)

    async def _fetch(self, pod: Pod, api_key: str | None) -> set[str] | None:
        try:
            names = await self.loader.loaded(pod, api_key)
        except LoadError as exc:
            log.debug("cannot list adapters on %s: %s", pod.name, exc.message)
            return None
        self._entries[pod.uid] = (time.monotonic(), names)
        return names

    def add(self, pod: Pod, name: str) -> None:
        entry = self._entries.get(pod.uid)
        if entry is not None:
            entry[1].add(name)

    def discard(self, pod: Pod, name: str) -> None:
        entry = self._entries.get(pod.uid)
        if entry is not None:
            entry[1].discard(name)

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)


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
        self.index = LoadedIndex(loader, ttl=max(0.5, options.resync / 2))
        self.assigned: dict[Key, set[str]] = {}  # adapter -> pods it is on or being loaded on
        self.per_pod: Counter[tuple[str, str]] = Counter()  # (namespace, pod) -> adapters assigned
        self.phases: dict[Key, str] = {}
        self._events: dict[Key, tuple[str, str]] = {}

    # --- bookkeeping shared between adapters ------------------------------------------------------------------

    def seed(self) -> None:
        """Count placements from the cached statuses, so least-adapters is right from the first reconcile."""
        for key, obj in self.adapters.objects.items():
            status = obj.get("status") or {}
            pods = set(status.get("instances") or []) | {r.get("pod") for r in status.get("retries") or []}
            self._assign(key, {p for p in pods if p})
            self._set_phase(key, status.get("phase"))

    def _assign(self, key: Key, pods: set[str]) -> None:
        old = self.assigned.get(key, set())
        for pod in old - pods:
            self.per_pod[(key[0], pod)] -= 1
        for pod in pods - old:
            self.per_pod[(key[0], pod)] += 1
        self.assigned[key] = set(pods)

    def _set_phase(self, key: Key, phase: str | None) -> None:
        old = self.phases.get(key)
        if old == phase:
            return
        if old in PHASES:
            self.metrics.adapters.labels(old).inc(-1)
        if phase in PHASES:
            self.metrics.adapters.labels(phase).inc()
            self.phases[key] = phase
        else:
            self.phases.pop(key, None)

    def forget(self, key: Key) -> None:
        self._assign(key, set())
        self.assigned.pop(key, None)
        self._set_phase(key, None)
        self._events.pop(key, None)

    def _event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        key = key_of(obj)
        if self._events.get(key) == (reason, message):
            return  # the same news twice in a row is noise
        self._events[key] = (reason, message)
        self.kube.event(obj, type_, reason, message)

    # --- the reconcile -----------------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        obj = self.adapters.objects.get(key)
        if obj is None:
            self.forget(key)
            return None
        if obj["metadata"].get("deletionTimestamp"):
            await self.finalize(obj)
            return None
        finalizers = obj["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            obj = await self.kube.set_finalizers(obj, [*finalizers, FINALIZER])
            self.adapters.store(obj)
        return await Pass(self, obj).run()

    async def finalize(self, obj: Obj) -> None:
        """Unload from every pod that may hold the adapter, within a bounded time, then let the object go."""
        key = key_of(obj)
        finalizers = obj["metadata"].get("finalizers") or []
        if FINALIZER in finalizers:
            status = obj.get("status") or {}
            names = set(status.get("instances") or []) | {r.get("pod") for r in status.get("retries") or []}
            pods = [p for p in self.namespace_pods(key[0]) if p.name in names and p.alive()]
            try:
                spec: AdapterSpec | None = parse_spec(obj)
            except SpecError:
                spec = None
            if spec is not None and pods:
                try:
                    async with asyncio.timeout(self.options.deletion_timeout):
                        await asyncio.gather(*(self._unload(obj, spec, pod) for pod in pods))
                except TimeoutError:
                    log.warning("unloading %s/%s took over %ss; deleting anyway", *key, self.options.deletion_timeout)
            rest = [f for f in finalizers if f != FINALIZER]
            try:
                self.adapters.store(await self.kube.set_finalizers(obj, rest))
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
        log.info("adapter %s/%s deleted", *key)
        self.forget(key)

    async def _unload(self, obj: Obj, spec: AdapterSpec, pod: Pod) -> None:
        try:
            await self.loader.unload(pod, spec, timeout=self.options.unload_timeout)
            self.metrics.unloads.labels("ok").inc()
            self.index.discard(pod, spec.name)
        except LoadError as exc:
            self.metrics.unloads.labels("error").inc()
            self._event(obj, "Warning", "UnloadFailed", f"could not unload from pod {pod.name}: {exc.message}")

    def namespace_pods(self, namespace: str) -> list[Pod]:
        return [pod_from_object(o) for (ns, _), o in self.pods.objects.items() if ns == namespace]


class Pass:
    """The state of one reconcile of one adapter."""

    def __init__(self, owner: Reconciler, obj: Obj) -> None:
        self.r, self.obj, self.key = owner, obj, key_of(obj)
        self.options = owner.options
        self.old_status: Obj = obj.get("status") or {}
        self.status: Obj = copy.deepcopy(self.old_status)
        self.conditions: list[Obj] = self.status.setdefault("conditions", [])
        self.generation = int(obj["metadata"].get("generation") or 1)
        self.now = time.time()
        self.gave_up = False

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        set_condition(self.conditions, type_, status, reason, message, self.generation)

    async def run(self) -> float | None:
        name = f"{self.key[0]}/{self.key[1]}"
        if condition(self.conditions, "Initialized") is None:
            self.condition("Initialized", "Unknown", "ModelAdapterPending", "Starting reconciliation")
            self.status["phase"] = "Pending"
            await self.write()
        try:
            spec = parse_spec(self.obj)
        except SpecError as exc:
            self.condition("Initialized", "False", "InvalidSpec", str(exc))
            self.status.update(phase="Failed", instances=[], readyReplicas=0)
            self.r._event(self.obj, "Warning", "InvalidSpec", str(exc))
            await self.write()
            return None
        self.spec = spec

        pods = [p for p in self.r.namespace_pods(self.key[0]) if spec.selector.matches(p.labels)]
        by_name = {p.name: p for p in pods}
        candidates = [p for p in pods if p.eligible(self.now, self.options.stability)]
        candidate_names = {p.name for p in candidates}
        wait = [
            self.options.stability - (self.now - (p.ready_since or 0))
            for p in pods
            if p.alive() and p.name not in candidate_names and p.labels.get(ENABLED_LABEL) == "true"
        ]

        retries = {}
        for raw in self.status.get("retries") or []:
            entry = Retry.from_status(raw)
            pod = by_name.get(entry.pod)
            if pod is None or pod.uid != entry.pod_uid:
                continue  # the pod is gone or was replaced: its history does not apply
            if entry.attempts >= self.options.max_retries and entry.next_attempt <= self.now:
                continue  # cooled down: the pod gets a fresh set of retries
            retries[entry.pod] = entry

        instances, lost = [], []
        for pod_name in self.status.get("instances") or []:
            pod = by_name.get(pod_name)
            if pod is None or not pod.alive():
                self.r._event(self.obj, "Warning", "InstanceLost", f"pod {pod_name} is gone or not ready; replacing it")
                continue
            instances.append(pod)
        held = await asyncio.gather(*(self.r.index.names(pod, spec.api_key) for pod in instances))
        for pod, names in zip(list(instances), held, strict=True):
            if names is not None and spec.name not in names:
                instances.remove(pod)
                lost.append(pod)
                self.r.metrics.reloads.inc()
                self.r._event(
                    self.obj, "Warning", "AdapterLost", f"pod {pod.name} no longer serves the adapter; loading it again"
                )
        instance_names = {p.name for p in instances}

        desired = spec.replicas if spec.replicas is not None else len(candidates)
        exhausted = {n for n, e in retries.items() if e.attempts >= self.options.max_retries}
        pending = [
            by_name[n]
            for n, e in retries.items()
            if n not in exhausted and n in candidate_names and n not in instance_names
        ]
        need = desired - len(instances) - len(pending)
        if need > 0:
            pool = [
                p for p in candidates if p.name not in instance_names and p.name not in exhausted and p not in pending
            ]
            chosen = [p for p in lost if p in pool][:need]
            rest = [p for p in pool if p not in chosen]
            chosen += await self.schedule(rest, need - len(chosen))
            if chosen:
                listed = ", ".join(p.name for p in chosen)
                message = f"ModelAdapter {name} has selected {len(chosen)} pods for scheduling: [{listed}]"
                self.condition("Scheduled", "True", "Scheduled", message)
                self.r._event(self.obj, "Normal", "Scheduled", message)
                log.info("selected pods for adapter %s: %s", name, listed)
                pending += chosen
                if not instances:
                    self.status["phase"] = "Scheduled"
                self.r._assign(self.key, {p.name for p in instances + pending})
                await self.write(instances, retries, desired, len(candidates))
        elif need < 0 and spec.replicas is not None:
            extra = instances[spec.replicas :]
            instances = instances[: spec.replicas]
            await asyncio.gather(*(self.r._unload(self.obj, spec, pod) for pod in extra))
        self.r._assign(self.key, {p.name for p in instances + pending})

        due = [p for p in pending if p.name not in retries or retries[p.name].next_attempt <= self.now]
        fatal: str | None = None
        if due:
            if not instances:
                self.status["phase"] = "Loading"
                await self.write(instances, retries, desired, len(candidates))
            fatal = await self.load(due, instances, retries)

        self.r._assign(self.key, {p.name for p in instances} | {n for n in retries if n in by_name})
        if instances:
            await self.expose(instances)
        self.settle(instances, retries, desired, candidates, fatal)
        await self.write(instances, retries, desired, len(candidates))
        if fatal:
            return self.options.cooldown
        if self.gave_up:
            return 0.0  # a pod was just given up on: choose another at once
        later = [w for w in [e.next_attempt - self.now for e in retries.values()] + wait if w > 0]
        return min(later) if later else None

    async def schedule(self, pool: list[Pod], count: int) -> list[Pod]:
        if count <= 0 or not pool:
            return []
        spec = self.spec
        if spec.scheduler == "least-adapters":
            return schedulers.by_fewest_adapters(spec.name, pool, count, lambda pod: self.r.per_pod[(self.key[0], pod)])
        if spec.scheduler == "least-load":
            return await schedulers.by_least_load(spec.name, pool, count, self.r.loader.metrics)
        return schedulers.by_hash(spec.name, pool, count)

    async def load(self, due: list[Pod], instances: list[Pod], retries: dict[str, Retry]) -> str | None:
        """Try each due pod once; returns the reason when the adapter cannot load anywhere."""
        spec, name = self.spec, f"{self.key[0]}/{self.key[1]}"
        try:
            credentials = await self.credentials()
        except LoadError as exc:
            return exc.message
        results = await asyncio.gather(
            *(self.r.loader.load(pod, spec, credentials) for pod in due), return_exceptions=True
        )
        fatal = None
        for pod, result in zip(due, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, LoadError):
                raise result
            if isinstance(result, float):
                instances.append(pod)
                retries.pop(pod.name, None)
                self.r.index.add(pod, spec.name)
                self.r.metrics.loads.labels("ok").inc()
                self.r.metrics.load_seconds.observe(result)
                self.r._event(self.obj, "Normal", "Loaded", f"Successfully loaded adapter on pod {pod.name}")
                log.info("loaded adapter %s on pod %s in %.3fs", name, pod.name, result)
                continue
            assert isinstance(result, LoadError)
            self.r.metrics.loads.labels(result.outcome.value).inc()
            previous = retries.get(pod.name)
            attempts = (previous.attempts if previous else 0) + 1
            if result.outcome is Outcome.FATAL:
                fatal = result.message
                retries.pop(pod.name, None)
                log.warning("adapter %s cannot load: %s", name, result.message)
                continue
            if result.outcome is Outcome.POD:
                attempts = self.options.max_retries
            if attempts >= self.options.max_retries:
                retries[pod.name] = Retry(
                    pod.name, pod.uid, attempts, result.message, self.now, self.now + self.options.cooldown
                )
                self.r.metrics.failovers.inc()
                self.gave_up = True
                self.r._event(
                    self.obj,
                    "Warning",
                    "MaxRetriesExceeded",
                    f"Max retries exceeded for pod {pod.name}: {result.message}",
                )
                log.warning("giving up on pod %s for adapter %s: %s", pod.name, name, result.message)
            else:
                delay = self.options.backoff(attempts)
                retries[pod.name] = Retry(pod.name, pod.uid, attempts, result.message, self.now, self.now + delay)
                self.r._event(
                    self.obj,
                    "Warning",
                    "RetryScheduled",
                    f"Retriable error loading adapter on pod {pod.name} (attempt {attempts}): "
                    f"{result.message}; retrying in {delay:g}s",
                )
                log.info("retriable error loading adapter %s on pod %s: %s", name, pod.name, result.message)
        return fatal

    async def credentials(self) -> dict[str, str] | None:
        if not self.spec.secret_name:
            return None
        try:
            return await self.r.kube.secret_data(self.key[0], self.spec.secret_name)
        except ApiError as exc:
            raise LoadError(
                f"cannot read secret {self.spec.secret_name}: {exc.status.message}", Outcome.FATAL
            ) from None

    async def expose(self, instances: list[Pod]) -> None:
        """The Service and EndpointSlice that route the adapter's name to the pods holding it."""
        spec, meta = self.spec, self.obj["metadata"]
        owner = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = {MODEL_LABEL: spec.name, ADAPTER_LABEL: spec.name}
        service = {
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels, "ownerReferences": owner},
            "spec": {
                "clusterIP": "None",
                "ports": [{"name": "http", "port": 8000, "protocol": "TCP", "targetPort": 8000}],
            },
        }
        port = instances[0].engine_port
        endpoints = [
            {
                "addresses": [p.ip],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace, "uid": p.uid},
            }
            for p in sorted(instances, key=lambda p: p.name)
        ]
        slice_ = {
            "metadata": {
                "name": spec.name,
                "namespace": spec.namespace,
                "labels": {
                    **labels,
                    "kubernetes.io/service-name": spec.name,
                    "endpointslice.kubernetes.io/managed-by": "aibrix-controller",
                },
                "ownerReferences": owner,
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        }
        bound = condition(self.conditions, "Bound")
        if bound is None or bound["status"] != "True":
            held = ", ".join(sorted(p.name for p in instances))
            self.condition("Bound", "True", "Bound", f"Loaded on [{held}]; creating Service and EndpointSlice")
            self.status["phase"] = "Bound"
            await self.write(instances)
        await self.r.kube.apply_once(Service, service)
        await self.r.kube.apply_once(EndpointSlice, slice_)

    def settle(
        self, instances: list[Pod], retries: dict[str, Retry], desired: int, candidates: list[Pod], fatal: str | None
    ) -> None:
        """The phase and conditions once this pass has acted."""
        name = f"{self.key[0]}/{self.key[1]}"
        exhausted = {n for n, e in retries.items() if e.attempts >= self.options.max_retries}
        self.condition("Initialized", "True", "Initialized", "Configuration is valid")
        if instances:
            ready = f"ModelAdapter {name} is ready"
            if len(instances) < desired:
                ready += f" on {len(instances)} of {desired} pods"
            self.status["phase"] = "Running"
            self.condition("Ready", "True", "ModelAdapterAvailable", ready)
            return
        if condition(self.conditions, "Bound") is not None:
            self.condition("Bound", "False", "NoInstances", "No pod holds the adapter")
        if fatal:
            self.status["phase"] = "Failed"
            self.condition("Ready", "False", "LoadFailed", fatal)
            self.r._event(self.obj, "Warning", "LoadFailed", fatal)
            return
        if any(n not in exhausted for n in retries):
            self.status["phase"] = "Loading"
            self.condition("Ready", "False", "Loading", "Loading the adapter; retrying after errors")
            return
        if exhausted and not any(p.name not in exhausted for p in candidates):
            reasons = "; ".join(f"{n}: {retries[n].last_error}" for n in sorted(exhausted))
            message = f"no pod could load the adapter after retries ({reasons}); waiting for new pods"
            self.status["phase"] = "Failed"
            self.condition("Ready", "False", "NoPodAvailable", message)
            self.r._event(self.obj, "Warning", "Failed", message)
            return
        self.status["phase"] = "Pending"
        message = "no Ready pod matches spec.podSelector with label adapter.model.aibrix.ai/enabled=true"
        self.condition("Ready", "False", "NoCandidatePods", message)

    async def write(
        self,
        instances: list[Pod] | None = None,
        retries: dict[str, Retry] | None = None,
        desired: int | None = None,
        candidates: int | None = None,
    ) -> None:
        """Write the status if it changed (a resync with nothing to do writes nothing)."""
        if instances is not None:
            self.status["instances"] = sorted(p.name for p in instances)
            self.status["readyReplicas"] = len(instances)
        if retries is not None:
            self.status["retries"] = [retries[n].to_status() for n in sorted(retries)]
        if desired is not None:
            self.status["desiredReplicas"] = desired
        if candidates is not None:
            self.status["candidates"] = candidates
        self.status["observedGeneration"] = self.generation
        self.r._set_phase(self.key, self.status.get("phase"))
        if self.status == self.old_status:
            return
        if self.status.get("phase") != self.old_status.get("phase"):
            log.info("adapter %s/%s phase %s -> %s", *self.key, self.old_status.get("phase"), self.status.get("phase"))
        full = {k: self.status.get(k) for k in set(self.status) | set(self.old_status)}
        try:
            stored = await self.r.kube.patch_status(self.key[0], self.key[1], full)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise
        self.r.adapters.store(stored)
        self.old_status = copy.deepcopy(self.status)
