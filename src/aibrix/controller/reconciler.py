"""One reconcile of one ModelAdapter: compare what it asks for with the pods and what they hold, then act.

Level-triggered and idempotent: everything it needs is in the informer caches, the adapter's status (including
per-pod retry state, so a restarted controller carries on where the last one stopped) and the pods themselves.
A reconcile returns how soon it wants to run again (a retry falling due, a pod becoming stable), or None.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass

from lightkube import ApiError

from aibrix.controller import schedulers
from aibrix.controller.kube import EndpointSlice, Informer, Key, Kube, Obj, Service, key_of, timestamp
from aibrix.controller.loader import Loader, LoadError, Outcome
from aibrix.controller.metrics import PHASES, ControllerMetrics
from aibrix.controller.pods import Pod, parse_time, pod_from_object
from aibrix.controller.spec import (
    ADAPTER_LABEL,
    BASE_MODEL_ANNOTATION,
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
from aibrix.controller.status import Retry, claimed_pods, condition, set_condition
from aibrix.storage.uri import redact

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
        self._loaded: dict[str, dict[str, float]] = {}  # pod uid -> adapter -> when this controller loaded it

    def fresh(self, pod: Pod) -> set[str] | None:
        """The pod's served names if they were asked recently enough, without waiting."""
        entry = self._entries.get(pod.uid)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        return None

    async def names(self, pod: Pod, api_key: str | None) -> set[str] | None:
        """The pod's served names, or None when it cannot be asked right now (the adapter is then assumed there)."""
        known = self.fresh(pod)
        if known is not None:
            return known
        future = self._inflight.get(pod.uid)
        if future is None:
            future = self._inflight[pod.uid] = asyncio.ensure_future(self._fetch(pod, api_key))
            future.add_done_callback(lambda _: self._inflight.pop(pod.uid, None))
        return await asyncio.shield(future)

    async def _fetch(self, pod: Pod, api_key: str | None) -> set[str] | None:
        asked = time.monotonic()
        try:
            names = await self.loader.loaded(pod, api_key)
        except LoadError as exc:
            log.debug("cannot list adapters on %s: %s", pod.name, exc.message)
            return None
        # A load that finished while the listing was on its way may be missing from it: keep it.
        names |= {name for name, at in self._loaded.get(pod.uid, {}).items() if at >= asked}
        self._entries[pod.uid] = (asked, names)
        return names

    def add(self, pod: Pod, name: str) -> None:
        self._loaded.setdefault(pod.uid, {})[name] = time.monotonic()
        entry = self._entries.get(pod.uid)
        if entry is not None:
            entry[1].add(name)

    def discard(self, pod: Pod, name: str) -> None:
        self._loaded.get(pod.uid, {}).pop(name, None)
        entry = self._entries.get(pod.uid)
        if entry is not None:
            entry[1].discard(name)

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)
        self._loaded.pop(uid, None)


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
        self._metrics: dict[str, tuple[float, str | None]] = {}
        self._pods: dict[tuple[str, str], Pod] = {}

    # --- bookkeeping shared between adapters ------------------------------------------------------------------

    def seed(self) -> None:
        """Count placements from the cached statuses, so least-adapters is right from the first reconcile."""
        for key, obj in self.adapters.objects.items():
            status = obj.get("status") or {}
            self._assign(key, claimed_pods(status))
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

    def forget_pod(self, obj: Obj) -> None:
        """Drop what was known about a deleted pod, and its pooled connections."""
        pod = pod_from_object(obj)
        self.index.forget(pod.uid)
        self._metrics.pop(pod.uid, None)
        self.loader.forget(pod)

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
            return await self.finalize(obj)
        finalizers = obj["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            obj = await self.kube.set_finalizers(obj, [*finalizers, FINALIZER])
            self.adapters.store(obj)
        return await Pass(self, obj).run()

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
                log.warning("could not unload %s/%s from %s within %ss; deleting anyway", *key, ", ".join(failed),
                            self.options.deletion_timeout)  # fmt: skip
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
                done = await asyncio.gather(*(self._unload(obj, spec, pod) for pod in pods))
        except TimeoutError:
            return [pod.name for pod in pods]
        return [pod.name for pod, ok in zip(pods, done, strict=True) if not ok]

    async def _unload(self, obj: Obj, spec: AdapterSpec, pod: Pod) -> bool:
        try:
            await self.loader.unload(pod, spec, timeout=self.options.unload_timeout)
            self.metrics.unloads.labels("ok").inc()
            self.index.discard(pod, spec.name)
            return True
        except LoadError as exc:
            self.metrics.unloads.labels("error").inc()
            self._event(obj, "Warning", "UnloadFailed", f"could not unload from pod {pod.name}: {exc.message}")
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
        if condition(self.conditions, "Initialized") is None:
            self.condition("Initialized", "Unknown", "ModelAdapterPending", "Starting reconciliation")
            self.status["phase"] = "Pending"
            await self.write()
        try:
            self.spec = parse_spec(self.obj)
        except SpecError as exc:
            self.condition("Initialized", "False", "InvalidSpec", str(exc))
            self.status.update(phase="Failed", instances=[], readyReplicas=0)
            self.r._event(self.obj, "Warning", "InvalidSpec", str(exc))
            await self.write()
            return None
        held_until = parse_time(self.status.get("nextAttemptTime"))
        if held_until and held_until > self.now and self.status.get("observedGeneration") == self.generation:
            return held_until - self.now  # failed for a reason no retry fixes; wait for the cool-down or an edit

        self.observe()
        await self.drop_stale_instances()
        await self.place()
        due = [p for p in self.pending if p.name not in self.retries or self.retries[p.name].next_attempt <= self.now]
        fatal = None
        if due:
            if not self.instances:
                await self.write_phase("Loading")
            fatal = await self.load(due)
        self.r._assign(self.key, {p.name for p in self.instances} | {n for n in self.retries if n in self.by_name})
        bound = condition(self.conditions, "Bound")
        if self.instances or (bound is not None and bound["status"] == "True"):
            await self.expose()  # with no instances left, the slice is emptied: no traffic to pods without it
        self.settle(fatal)
        await self.write_phase(self.status["phase"])
        if fatal:
            return self.options.cooldown
        if self.gave_up:
            return 0.0  # a pod was just given up on: choose another at once
        later = [e.next_attempt - self.now for e in self.retries.values()] + self.stabilizing
        return min((w for w in later if w > 0), default=None)

    def observe(self) -> None:
        """Pods, candidates, retry history and instances as they stand."""
        spec, options = self.spec, self.options
        self.matching = [p for p in self.r.namespace_pods(self.key[0]) if spec.selector.matches(p.labels)]
        self.by_name = {p.name: p for p in self.matching}
        self.candidates = [p for p in self.matching if p.eligible(self.now, options.stability)]
        names = {p.name for p in self.candidates}
        self.stabilizing = [
            options.stability - (self.now - (p.ready_since or 0))
            for p in self.matching
            if p.alive() and p.name not in names and p.labels.get(ENABLED_LABEL) == "true"
        ]
        self.retries: dict[str, Retry] = {}
        for raw in self.status.get("retries") or []:
            entry = Retry.from_status(raw)
            pod = self.by_name.get(entry.pod)
            if pod is None or pod.uid != entry.pod_uid:
                continue  # the pod is gone or was replaced: its history does not apply
            if entry.attempts >= options.max_retries and entry.next_attempt <= self.now:
                continue  # cooled down: the pod gets a fresh set of retries
            self.retries[entry.pod] = entry
        self.exhausted = {n for n, e in self.retries.items() if e.attempts >= options.max_retries}
        self.instances: list[Pod] = []
        self.lost: list[Pod] = []
        self.unwanted: list[Pod] = []
        for pod_name in self.status.get("instances") or []:
            pod = self.by_name.get(pod_name)
            if pod is not None and pod.alive():
                self.instances.append(pod)
                continue
            self.r._event(
                self.obj, "Warning", "InstanceLost", f"pod {pod_name} is gone, not ready or no longer selected"
            )
            stray = self.r.pod(self.key[0], pod_name)
            if stray is not None and stray.reachable():
                # the selector changed, or the pod is not ready: a copy left there would come back untracked
                self.unwanted.append(stray)
        self.desired = spec.replicas if spec.replicas is not None else len(self.candidates)

    async def drop_stale_instances(self) -> None:
        """Forget instances that lost the adapter (engine restart) and unload it where it should no longer be."""
        spec = self.spec
        if self.instances and self.status.get("artifactURL") not in (None, redact(spec.artifact_url)):
            self.r._event(self.obj, "Normal", "ArtifactChanged", "spec.artifactURL changed; loading the new artifact")
            self.unwanted += self.instances
            self.instances = []
        if self.unwanted:
            await asyncio.gather(*(self.r._unload(self.obj, spec, pod) for pod in self.unwanted))
        held = [self.r.index.fresh(pod) for pod in self.instances]  # a resync asks each pod once, not per adapter
        stale = [i for i, names in enumerate(held) if names is None]
        if stale:
            asked = await asyncio.gather(*(self.r.index.names(self.instances[i], spec.api_key) for i in stale))
            for i, names in zip(stale, asked, strict=True):
                held[i] = names
        for pod, names in zip(list(self.instances), held, strict=True):
            if names is not None and spec.name not in names:
                self.instances.remove(pod)
                self.lost.append(pod)
                self.r.metrics.reloads.inc()
                message = f"pod {pod.name} no longer serves the adapter; loading it again"
                self.r._event(self.obj, "Warning", "AdapterLost", message)

    async def place(self) -> None:
        """Choose pods for missing replicas, or unload from replicas beyond the desired count."""
        names = {p.name for p in self.instances}
        candidate_names = {p.name for p in self.candidates}
        self.pending = [
            self.by_name[n] for n in self.retries if n not in self.exhausted and n in candidate_names and n not in names
        ]
        need = self.desired - len(self.instances) - len(self.pending)
        if need < 0 and self.spec.replicas is not None and len(self.instances) > self.spec.replicas:
            extra = self.instances[self.spec.replicas :]
            self.instances = self.instances[: self.spec.replicas]
            await asyncio.gather(*(self.r._unload(self.obj, self.spec, pod) for pod in extra))
        if need <= 0:
            self.r._assign(self.key, {p.name for p in self.instances + self.pending})
            return
        taken = names | self.exhausted | {p.name for p in self.pending}
        pool = [p for p in self.candidates if p.name not in taken]
        chosen = [p for p in self.lost if p in pool][:need]  # an engine that lost the adapter gets it back first
        chosen += await self.schedule([p for p in pool if p not in chosen], need - len(chosen))
        self.pending += chosen
        self.r._assign(self.key, {p.name for p in self.instances + self.pending})
        if chosen:
            name = f"{self.key[0]}/{self.key[1]}"
            listed = ", ".join(p.name for p in chosen)
            message = (
                f"ModelAdapter {self.key[0]}/{self.key[1]} has selected {len(chosen)} pods for scheduling: [{listed}]"
            )
            self.condition("Scheduled", "True", "Scheduled", message)
            self.r._event(self.obj, "Normal", "Scheduled", message)
            log.info("selected pods for adapter %s/%s: %s", *self.key, listed, extra={"adapter": name, "pods": listed})
            await self.write_phase("Scheduled")

    async def write_phase(self, phase: str) -> None:
        """Write the status with ``phase`` (while no pod serves the adapter; afterwards it stays Running)."""
        self.status["phase"] = "Running" if self.instances and phase in ("Scheduled", "Loading") else phase
        await self.write(self.instances, self.retries, self.desired, len(self.candidates))

    async def schedule(self, pool: list[Pod], count: int) -> list[Pod]:
        if count <= 0 or not pool:
            return []
        spec = self.spec

        def adapters_on(pod: str) -> int:
            return self.r.per_pod[(self.key[0], pod)]

        if spec.scheduler == "least-adapters":
            return schedulers.by_fewest_adapters(spec.name, pool, count, adapters_on)
        if spec.scheduler == "least-load":
            return await schedulers.by_least_load(spec.name, pool, count, self.r.pod_metrics, adapters_on)
        return schedulers.by_hash(spec.name, pool, count)

    async def load(self, due: list[Pod]) -> str | None:
        """Try each due pod once; returns the reason when the adapter cannot load anywhere."""
        spec, name, instances, retries = self.spec, f"{self.key[0]}/{self.key[1]}", self.instances, self.retries
        try:
            credentials = await self.credentials()
        except LoadError as exc:
            return exc.message
        results = await asyncio.gather(
            *(self.r.loader.load(pod, spec, credentials) for pod in due), return_exceptions=True
        )
        fatal, loaded = None, []
        for pod, result in zip(due, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, LoadError):
                raise result
            if isinstance(result, float):
                instances.append(pod)
                retries.pop(pod.name, None)
                self.r.index.add(pod, spec.name)
                self.r.metrics.loads.labels("ok").inc()
                self.r.metrics.load_seconds.observe(result)
                loaded.append(pod.name)
                log.info(
                    "loaded adapter %s on pod %s in %.3fs",
                    name,
                    pod.name,
                    result,
                    extra={"adapter": name, "pod": pod.name},
                )
                continue
            assert isinstance(result, LoadError)
            self.r.metrics.loads.labels(result.outcome.value).inc()
            previous = retries.get(pod.name)
            attempts = (previous.attempts if previous else 0) + 1
            if result.outcome is Outcome.FATAL:
                fatal = result.message
                retries.pop(pod.name, None)
                log.warning(
                    "adapter %s cannot load: %s", name, result.message, extra={"adapter": name, "pod": pod.name}
                )
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
                log.warning(
                    "giving up on pod %s for adapter %s: %s",
                    pod.name,
                    name,
                    result.message,
                    extra={"adapter": name, "pod": pod.name},
                )
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
                log.info(
                    "retriable error loading adapter %s on pod %s: %s",
                    name,
                    pod.name,
                    result.message,
                    extra={"adapter": name, "pod": pod.name, "attempt": attempts},
                )
        if loaded:
            where = f"pod {loaded[0]}" if len(loaded) == 1 else f"{len(loaded)} pods: [{', '.join(loaded)}]"
            self.r._event(self.obj, "Normal", "Loaded", f"Successfully loaded adapter on {where}")
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
        except ValueError as exc:  # a value that is not text: fix the secret, retrying cannot help
            raise LoadError(str(exc), Outcome.FATAL) from None

    async def expose(self) -> None:
        """The Service and EndpointSlice that route the adapter's name to the pods holding it."""
        spec, meta, instances = self.spec, self.obj["metadata"], self.instances
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
        annotations = {BASE_MODEL_ANNOTATION: spec.base_model} if spec.base_model else {}
        # Headless: clients resolve the name to pod IPs and connect to this port, so it is the engine's own port.
        known = instances or self.candidates
        port = known[0].engine_port if known else 8000
        service: Obj = {
            "metadata": {
                "name": spec.name,
                "namespace": spec.namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": owner,
            },
            "spec": {
                "clusterIP": "None",
                "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": port}],
            },
        }
        endpoints = [
            {
                "addresses": [p.ip],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace, "uid": p.uid},
            }
            for p in sorted(instances, key=lambda p: p.name)
        ]
        slice_: Obj = {
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
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        }
        if instances:  # addressType cannot change; an emptied slice keeps the one it has
            slice_["addressType"] = "IPv6" if ":" in (instances[0].ip or "") else "IPv4"
        bound = condition(self.conditions, "Bound")
        if instances and (bound is None or bound["status"] != "True"):
            held = ", ".join(sorted(p.name for p in instances))
            self.condition("Bound", "True", "Bound", f"Loaded on [{held}]; creating Service and EndpointSlice")
            await self.write_phase("Bound")
        await self.r.kube.apply_once(Service, service)
        await self.r.kube.apply_once(EndpointSlice, slice_)

    def settle(self, fatal: str | None) -> None:
        """The phase and conditions once this pass has acted."""
        name, instances, retries, desired = f"{self.key[0]}/{self.key[1]}", self.instances, self.retries, self.desired
        exhausted = {n for n, e in retries.items() if e.attempts >= self.options.max_retries}
        self.condition("Initialized", "True", "Initialized", "Configuration is valid")
        self.status["nextAttemptTime"] = None
        if instances:
            self.status["artifactURL"] = redact(self.spec.artifact_url)
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
            # whole seconds, as every other timestamp of the status; rounded up so the hold is never cut short
            self.status["nextAttemptTime"] = timestamp(math.ceil(self.now + self.options.cooldown))
            self.condition("Ready", "False", "LoadFailed", fatal)
            self.r._event(self.obj, "Warning", "LoadFailed", fatal)
            return
        if any(n not in exhausted for n in retries):
            self.status["phase"] = "Loading"
            self.condition("Ready", "False", "Loading", "Loading the adapter; retrying after errors")
            return
        if exhausted and not any(p.name not in exhausted for p in self.candidates):
            reasons = "; ".join(f"{n}: {retries[n].last_error}" for n in sorted(exhausted))
            message = f"no pod could load the adapter after retries ({reasons}); waiting for new pods"
            self.status["phase"] = "Failed"
            self.condition("Ready", "False", "NoPodAvailable", message)
            self.r._event(self.obj, "Warning", "Failed", message)
            return
        self.status["phase"] = "Pending"
        message = "no Ready pod matches spec.podSelector with label adapter.model.aibrix.ai/enabled=true"
        self.condition("Ready", "False", "NoCandidatePods", message)
        self.r._event(self.obj, "Warning", "NoCandidatePods", message)

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
        self.status = {k: v for k, v in self.status.items() if v is not None}
        if self.status == self.old_status:
            return
        if self.status.get("phase") != self.old_status.get("phase"):
            log.info(
                "adapter %s/%s phase %s -> %s",
                *self.key,
                self.old_status.get("phase"),
                self.status.get("phase"),
                extra={"adapter": f"{self.key[0]}/{self.key[1]}", "phase": self.status.get("phase")},
            )
        full = {k: self.status.get(k) for k in set(self.status) | set(self.old_status)}
        try:
            stored = await self.r.kube.patch_status(self.key[0], self.key[1], full)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise
        self.r.adapters.store(stored)
        self.old_status = copy.deepcopy(self.status)
