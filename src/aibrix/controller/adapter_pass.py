"""One reconcile of one ModelAdapter that exists and is not being deleted: observe the pods and the status, drop
what no longer holds, place missing replicas, load where due, expose, settle, write.

Everything it needs is in the informer caches, the adapter's status (per-pod retry state included, so a restarted
controller carries on where the last one stopped) and the pods themselves.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import TYPE_CHECKING

from lightkube import ApiError

from aibrix.controller import exposure, schedulers
from aibrix.controller.exposure import sglang_naming
from aibrix.controller.loader import LoadError, Outcome
from aibrix.controller.pods import Pod, parse_time
from aibrix.controller.resources import EndpointSlice, Obj, Service, key_of, timestamp
from aibrix.controller.spec import ENABLED_LABEL, AdapterSpec, SpecError, parse_spec
from aibrix.controller.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    Phase,
    Retry,
    condition,
    set_condition,
)
from aibrix.controller.transitions import Verdict, after_failure, settle
from aibrix.storage.uri import redact

if TYPE_CHECKING:
    from aibrix.controller.reconciler import Reconciler

log = logging.getLogger("aibrix.controller")


class AdapterPass:
    def __init__(self, reconciler: Reconciler, obj: Obj) -> None:
        self.ctl, self.obj, self.key = reconciler, obj, key_of(obj)
        self.name = f"{self.key[0]}/{self.key[1]}"
        self.options = reconciler.options
        self.old_status: Obj = obj.get("status") or {}
        self.status: Obj = copy.deepcopy(self.old_status)
        self.conditions: list[Condition] = self.status.setdefault("conditions", [])
        self.generation = int(obj["metadata"].get("generation") or 1)
        self.now = time.time()
        self.gave_up = False  # a pod was given up on in this pass: choose another at once
        self.spec: AdapterSpec | None = None
        # what observe() finds
        self.matching: list[Pod] = []
        self.by_name: dict[str, Pod] = {}
        self.candidates: list[Pod] = []
        self.stabilizing: list[float] = []  # seconds until pods that match become candidates
        self.retries: dict[str, Retry] = {}
        self.exhausted: set[str] = set()
        self.instances: list[Pod] = []
        self.lost: list[Pod] = []  # instances whose engine no longer serves the adapter
        self.unwanted: list[Pod] = []  # pods to unload from
        self.pending: list[Pod] = []  # pods chosen or being retried
        self.desired = 0

    def condition(self, type_: ConditionType, status: ConditionStatus, reason: str, message: str) -> None:
        set_condition(self.conditions, type_, status, reason, message, self.generation)

    async def run(self) -> float | None:
        """Act, then say how soon to run again (a retry falling due, a pod becoming stable), or None."""
        if condition(self.conditions, ConditionType.INITIALIZED) is None:
            self.condition(
                ConditionType.INITIALIZED, ConditionStatus.UNKNOWN, "ModelAdapterPending", "Starting reconciliation"
            )
            self.status["phase"] = Phase.PENDING
            await self.write()
        try:
            spec = self.spec = parse_spec(self.obj)
        except SpecError as exc:
            self.condition(ConditionType.INITIALIZED, ConditionStatus.FALSE, "InvalidSpec", str(exc))
            self.status.update(phase=Phase.FAILED, instances=[], readyReplicas=0)
            self.ctl.event(self.obj, "Warning", "InvalidSpec", str(exc))
            await self.write()
            return None
        held_until = parse_time(self.status.get("nextAttemptTime"))
        if held_until and held_until > self.now and self.status.get("observedGeneration") == self.generation:
            return held_until - self.now  # failed for a reason no retry fixes; wait for the cool-down or an edit
        self.observe(spec)
        await self.drop_stale_instances(spec)
        await self.place(spec)
        due = [p for p in self.pending if p.name not in self.retries or self.retries[p.name].next_attempt <= self.now]
        fatal = None
        if due:
            if not self.instances:
                await self.write_phase(Phase.LOADING)
            fatal = await self.load(spec, due)
        self.ctl.placements.assign(
            self.key, {p.name for p in self.instances} | {n for n in self.retries if n in self.by_name}
        )
        bound = condition(self.conditions, ConditionType.BOUND)
        if self.instances or (bound is not None and bound["status"] == ConditionStatus.TRUE):
            await self.expose(spec)  # with no instances left, the slice is emptied: no traffic to pods without it
        self.apply(
            settle(
                self.name,
                len(self.instances),
                self.desired,
                self.retries,
                self.candidates,
                fatal,
                self.now,
                self.options,
            ),
            spec,
        )
        await self.write_phase(self.status["phase"])
        if fatal:
            return self.options.cooldown
        if self.gave_up:
            return 0.0
        later = [e.next_attempt - self.now for e in self.retries.values()] + self.stabilizing
        return min((w for w in later if w > 0), default=None)

    def observe(self, spec: AdapterSpec) -> None:
        """Pods, candidates, retry history and instances as they stand."""
        options = self.options
        self.matching = [p for p in self.ctl.namespace_pods(self.key[0]) if spec.selector.matches(p.labels)]
        self.by_name = {p.name: p for p in self.matching}
        self.candidates = [p for p in self.matching if p.eligible(self.now, options.stability)]
        names = {p.name for p in self.candidates}
        self.stabilizing = [
            options.stability - (self.now - (p.ready_since or 0))
            for p in self.matching
            if p.alive() and p.name not in names and p.labels.get(ENABLED_LABEL) == "true"
        ]
        for raw in self.status.get("retries") or []:
            entry = Retry.from_status(raw)
            pod = self.by_name.get(entry.pod)
            if pod is None or pod.uid != entry.pod_uid:
                continue  # the pod is gone or was replaced: its history does not apply
            if entry.attempts >= options.max_retries and entry.next_attempt <= self.now:
                continue  # cooled down: the pod gets a fresh set of retries
            self.retries[entry.pod] = entry
        self.exhausted = {n for n, e in self.retries.items() if e.attempts >= options.max_retries}
        for pod_name in self.status.get("instances") or []:
            pod = self.by_name.get(pod_name)
            if pod is not None and pod.alive():
                self.instances.append(pod)
                continue
            message = f"pod {pod_name} is gone, not ready or no longer selected"
            self.ctl.event(self.obj, "Warning", "InstanceLost", message)
            stray = self.ctl.pod(self.key[0], pod_name)
            if stray is not None and stray.reachable():
                # the selector changed, or the pod is not ready: a copy left there would come back untracked
                self.unwanted.append(stray)
        self.desired = spec.replicas if spec.replicas is not None else len(self.candidates)

    async def drop_stale_instances(self, spec: AdapterSpec) -> None:
        """Forget instances that lost the adapter (engine restart) and unload it where it should no longer be."""
        if self.instances and self.status.get("artifactURL") not in (None, redact(spec.artifact_url)):
            self.ctl.event(self.obj, "Normal", "ArtifactChanged", "spec.artifactURL changed; loading the new artifact")
            self.unwanted += self.instances
            self.instances = []
        if self.unwanted:
            await asyncio.gather(*(self.ctl.unload(self.obj, spec, pod) for pod in self.unwanted))
        held = [self.ctl.index.fresh(pod) for pod in self.instances]  # a resync asks each pod once, not per adapter
        stale = [i for i, names in enumerate(held) if names is None]
        if stale:
            asked = await asyncio.gather(*(self.ctl.index.names(self.instances[i], spec.api_key) for i in stale))
            for i, names in zip(stale, asked, strict=True):
                held[i] = names
        for pod, names in zip(list(self.instances), held, strict=True):
            if names is not None and spec.name not in names:
                self.instances.remove(pod)
                self.lost.append(pod)
                self.ctl.metrics.reloads.inc()
                message = f"pod {pod.name} no longer serves the adapter; loading it again"
                self.ctl.event(self.obj, "Warning", "AdapterLost", message)

    async def place(self, spec: AdapterSpec) -> None:
        """Choose pods for missing replicas, or unload from replicas beyond the desired count."""
        names = {p.name for p in self.instances}
        candidate_names = {p.name for p in self.candidates}
        self.pending = [
            self.by_name[n] for n in self.retries if n not in self.exhausted and n in candidate_names and n not in names
        ]
        need = self.desired - len(self.instances) - len(self.pending)
        if need < 0 and spec.replicas is not None and len(self.instances) > spec.replicas:
            extra = self.instances[spec.replicas :]
            self.instances = self.instances[: spec.replicas]
            await asyncio.gather(*(self.ctl.unload(self.obj, spec, pod) for pod in extra))
        if need > 0:
            taken = names | self.exhausted | {p.name for p in self.pending}
            pool = [p for p in self.candidates if p.name not in taken]
            chosen = [p for p in self.lost if p in pool][:need]  # an engine that lost the adapter gets it back first
            chosen += await self.schedule(spec, [p for p in pool if p not in chosen], need - len(chosen))
            self.pending += chosen
        else:
            chosen = []
        self.ctl.placements.assign(self.key, {p.name for p in self.instances + self.pending})
        if chosen:
            listed = ", ".join(p.name for p in chosen)
            message = f"ModelAdapter {self.name} has selected {len(chosen)} pods for scheduling: [{listed}]"
            self.condition(ConditionType.SCHEDULED, ConditionStatus.TRUE, "Scheduled", message)
            self.ctl.event(self.obj, "Normal", "Scheduled", message)
            log.info(
                "selected pods for adapter %s: %s", self.name, listed, extra={"adapter": self.name, "pods": listed}
            )
            await self.write_phase(Phase.SCHEDULED)

    async def schedule(self, spec: AdapterSpec, pool: list[Pod], count: int) -> list[Pod]:
        if count <= 0 or not pool:
            return []

        def adapters_on(pod: str) -> int:
            return self.ctl.placements.adapters_on(self.key[0], pod)

        asked = schedulers.Placement(spec.name, pool, count, adapters_on, self.ctl.pod_metrics)
        return await schedulers.POLICIES[spec.scheduler](asked)

    async def load(self, spec: AdapterSpec, due: list[Pod]) -> str | None:
        """Try each due pod once; returns the reason when the adapter cannot load anywhere."""
        try:
            credentials = await self.credentials(spec)
        except LoadError as exc:
            return exc.message
        results = await asyncio.gather(
            *(self.ctl.loader.load(pod, spec, credentials) for pod in due), return_exceptions=True
        )
        fatal, loaded = None, []
        for pod, result in zip(due, results, strict=True):
            if isinstance(result, float):
                self.loaded(spec, pod, result)
                loaded.append(pod.name)
            elif isinstance(result, LoadError):
                fatal = self.failed(pod, result) or fatal
            else:
                raise result
        if loaded:
            where = f"pod {loaded[0]}" if len(loaded) == 1 else f"{len(loaded)} pods: [{', '.join(loaded)}]"
            self.ctl.event(self.obj, "Normal", "Loaded", f"Successfully loaded adapter on {where}")
            sglang = [pod for pod in due if pod.name in loaded and pod.engine == "sglang"]
            if sglang:
                self.ctl.event(self.obj, "Warning", "AddressAsBaseColonAdapter", sglang_naming(spec.name))
        return fatal

    def loaded(self, spec: AdapterSpec, pod: Pod, seconds: float) -> None:
        self.instances.append(pod)
        self.retries.pop(pod.name, None)
        self.ctl.index.add(pod, spec.name)
        self.ctl.metrics.loads.labels("ok").inc()
        self.ctl.metrics.load_seconds.observe(seconds)
        log.info(
            "loaded adapter %s on pod %s in %.3fs",
            self.name,
            pod.name,
            seconds,
            extra={"adapter": self.name, "pod": pod.name},
        )

    def failed(self, pod: Pod, error: LoadError) -> str | None:
        """Record a failed load on ``pod``; returns the reason when no pod can load the adapter."""
        self.ctl.metrics.loads.labels(error.outcome.value).inc()
        extra = {"adapter": self.name, "pod": pod.name}
        if error.outcome is Outcome.FATAL:
            self.retries.pop(pod.name, None)
            log.warning("adapter %s cannot load: %s", self.name, error.message, extra=extra)
            return error.message
        retry = self.retries[pod.name] = after_failure(self.retries.get(pod.name), pod, error, self.now, self.options)
        if retry.attempts >= self.options.max_retries:
            self.ctl.metrics.failovers.inc()
            self.gave_up = True
            message = f"Max retries exceeded for pod {pod.name}: {error.message}"
            self.ctl.event(self.obj, "Warning", "MaxRetriesExceeded", message)
            log.warning("giving up on pod %s for adapter %s: %s", pod.name, self.name, error.message, extra=extra)
        else:
            delay = retry.next_attempt - self.now
            message = (
                f"Retriable error loading adapter on pod {pod.name} (attempt {retry.attempts}): "
                f"{error.message}; retrying in {delay:g}s"
            )
            self.ctl.event(self.obj, "Warning", "RetryScheduled", message)
            log.info(
                "retriable error loading adapter %s on pod %s: %s",
                self.name,
                pod.name,
                error.message,
                extra={**extra, "attempt": retry.attempts},
            )
        return None

    async def credentials(self, spec: AdapterSpec) -> dict[str, str] | None:
        if not spec.secret_name:
            return None
        try:
            return await self.ctl.kube.secret_data(self.key[0], spec.secret_name)
        except ApiError as exc:
            message = f"cannot read secret {spec.secret_name}: {exc.status.message}"
            raise LoadError(message, Outcome.FATAL) from None
        except ValueError as exc:  # a value that is not text: fix the secret, retrying cannot help
            raise LoadError(str(exc), Outcome.FATAL) from None

    async def expose(self, spec: AdapterSpec) -> None:
        """The Service and EndpointSlice that route the adapter's name to the pods holding it."""
        owners = exposure.owner_references(self.obj)
        port = exposure.engine_port(self.instances, self.candidates)
        bound = condition(self.conditions, ConditionType.BOUND)
        if self.instances and (bound is None or bound["status"] != ConditionStatus.TRUE):
            held = ", ".join(sorted(p.name for p in self.instances))
            self.condition(
                ConditionType.BOUND,
                ConditionStatus.TRUE,
                "Bound",
                f"Loaded on [{held}]; creating Service and EndpointSlice",
            )
            await self.write_phase(Phase.BOUND)
        await self.ctl.kube.apply_once(Service, exposure.service(spec, owners, port))
        await self.ctl.kube.apply_once(EndpointSlice, exposure.endpoint_slice(spec, owners, self.instances, port))

    def apply(self, verdict: Verdict, spec: AdapterSpec) -> None:
        """The phase and conditions the pass settles in."""
        self.condition(ConditionType.INITIALIZED, ConditionStatus.TRUE, "Initialized", "Configuration is valid")
        self.status["phase"] = verdict.phase
        self.status["nextAttemptTime"] = None if verdict.hold_until is None else timestamp(verdict.hold_until)
        if self.instances:
            self.status["artifactURL"] = redact(spec.artifact_url)
        if verdict.unbound and condition(self.conditions, ConditionType.BOUND) is not None:
            self.condition(ConditionType.BOUND, ConditionStatus.FALSE, "NoInstances", "No pod holds the adapter")
        self.condition(ConditionType.READY, *verdict.ready)
        if verdict.event is not None:
            self.ctl.event(self.obj, "Warning", verdict.event, verdict.ready[2])

    async def write_phase(self, phase: Phase) -> None:
        """Write the status with ``phase`` (while no pod serves the adapter; afterwards it stays Running)."""
        self.status["phase"] = Phase.RUNNING if self.instances and phase in (Phase.SCHEDULED, Phase.LOADING) else phase
        self.status["instances"] = sorted(p.name for p in self.instances)
        self.status["readyReplicas"] = len(self.instances)
        self.status["retries"] = [self.retries[n].to_status() for n in sorted(self.retries)]
        self.status["desiredReplicas"] = self.desired
        self.status["candidates"] = len(self.candidates)
        await self.write()

    async def write(self) -> None:
        """Write the status if it changed (a resync with nothing to do writes nothing)."""
        self.status["observedGeneration"] = self.generation
        self.ctl.placements.set_phase(self.key, self.status.get("phase"))
        self.status = {k: v for k, v in self.status.items() if v is not None}
        if self.status == self.old_status:
            return
        old_phase, phase = self.old_status.get("phase"), self.status.get("phase")
        if phase != old_phase:
            log.info(
                "adapter %s phase %s -> %s", self.name, old_phase, phase, extra={"adapter": self.name, "phase": phase}
            )
        full = {k: self.status.get(k) for k in set(self.status) | set(self.old_status)}
        try:
            stored = await self.ctl.kube.patch_status(self.key[0], self.key[1], full)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise
        self.ctl.adapters.store(stored)
        self.old_status = copy.deepcopy(self.status)
