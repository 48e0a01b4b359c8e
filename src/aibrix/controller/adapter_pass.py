"""One reconcile of one ModelAdapter that exists and is not being deleted, in three steps: observe (a frozen
``Observation`` built from the informer caches and the status), decide (the pure functions of ``transitions``), act
(unload, schedule, load, expose, write) through the ``Fleet`` every pass shares.

The status carries the per-pod retry state, so a restarted controller carries on where the last one stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aibrix.controller import exposure, schedulers
from aibrix.controller.capacity import Unfit, reserved_for, shortfall, takeable
from aibrix.controller.exposure import sglang_naming
from aibrix.controller.fleet import Fleet
from aibrix.controller.loader import Loaded, LoadError, Outcome
from aibrix.controller.moving import MoveSteps
from aibrix.controller.observation import Observation, observe
from aibrix.controller.pods import Pod, parse_time
from aibrix.controller.resources import EndpointSlice, Obj, Service
from aibrix.controller.rollout import instance_versions, stale_instances, version_of
from aibrix.controller.spec import AdapterSpec, SpecError, parse_spec
from aibrix.controller.status import (
    ConditionStatus,
    ConditionType,
    Phase,
    condition,
)
from aibrix.controller.transitions import (
    after_failure,
    due,
    failure_news,
    plan_replicas,
    settle,
    still_serving,
)
from aibrix.storage.uri import redact

log = logging.getLogger("aibrix.controller")


class AdapterPass(MoveSteps):
    """What acting changes is kept here (StatusKeeper): the status to write, the instances and the retry entries."""

    def __init__(self, fleet: Fleet, obj: Obj) -> None:
        super().__init__(fleet, obj)
        self.options = fleet.options
        self.now = time.time()
        self.gave_up = False  # a pod was given up on in this pass: choose another at once
        self.learned = False  # the adapter's rank became known in this pass: place the other replicas at once
        self.crowded = False  # pods observed with room filled up before this pass chose: the status says so
        self.rolled: bool | None = None  # a pod was moved to the new version in this pass (False: that failed)

    async def run(self) -> float | None:
        """Act, then say how soon to run again (a retry falling due, a pod becoming stable), or None."""
        if condition(self.conditions, ConditionType.INITIALIZED) is None:
            # unwritten: the API server says Pending from the create on (the CRD's status default), and the pass's
            # next write (Scheduled, or Pending with the reason it waits) carries this condition
            self.condition(
                ConditionType.INITIALIZED, ConditionStatus.UNKNOWN, "ModelAdapterPending", "Starting reconciliation"
            )
            self.status["phase"] = Phase.PENDING
        try:
            spec = parse_spec(self.obj)
        except SpecError as exc:
            self.condition(ConditionType.INITIALIZED, ConditionStatus.FALSE, "InvalidSpec", str(exc))
            self.status.update(phase=Phase.FAILED, instances=[], readyReplicas=0)
            self.event("Warning", "InvalidSpec", str(exc))
            await self.write()
            return None
        held_until = parse_time(self.status.get("nextAttemptTime"))
        if held_until and held_until > self.now and self.status.get("observedGeneration") == self.generation:
            return held_until - self.now  # failed for a reason no retry fixes; wait for the cool-down or an edit
        seen = self.observed(spec)
        self.instances, self.retries = list(seen.instances), dict(seen.retries)
        for pod_name in seen.gone:
            if pod_name in seen.preempted:
                self.event("Warning", "Preempted", f"pod {pod_name}'s adapter slots went to higher-priority adapters")
            else:
                self.event("Warning", "InstanceLost", f"pod {pod_name} is gone, not ready or no longer selected")
        lost = await self.refresh(spec, seen)
        pending = await self.place(spec, seen, lost)
        fatal = await self.act(spec, seen, pending)
        if self.gave_up and self.learned and not self.instances and not fatal:
            # the first pod refused the rank this load taught: choose among the pods that fit now, in this pass
            # (no write saying Pending, no trip through the queue)
            self.gave_up, seen = False, self.observed(spec, again=True)
            fatal = await self.act(spec, seen, await self.place(spec, seen, [], again=True))
        if self.crowded:  # the shortfall as it is now, not as observed before the others filled the pods
            seen = self.observed(spec, again=True)
        short = shortfall(seen.wanted, len(seen.candidates), seen.unfit, seen.rank)
        if short is not None:
            self.unschedulable(*short)
        verdict = settle(
            self.name,
            len(self.instances),
            seen.desired,
            self.retries,
            seen.candidates,
            fatal,
            self.now,
            self.options,
            short,
        )
        self.apply(verdict, spec)
        await self.write_phase(self.status["phase"], seen)
        no_slot = short is not None and short[0] == Unfit.INSUFFICIENT_CAPACITY
        for other in self.fleet.placements.short_of_slots(self.key, no_slot, bool(self.instances), seen.rank):
            self.fleet.wake(other)
        if fatal:
            return self.options.cooldown
        if self.gave_up or self.rolled or (self.learned and len(self.instances) < seen.desired):
            # choose another pod, place the other replicas now that the rank is known (behind
            # the adapters queued before: their first replicas come before this one's extra ones), or move the next
            # pod to the new version
            return 0.0
        if self.rolled is False and self.status.get("updateRetry"):
            return self.options.backoff(1)
        later = [e.next_attempt - self.now for e in self.retries.values()] + list(seen.stabilizing)
        return min((w for w in later if w > 0), default=None)

    def observed(self, spec: AdapterSpec, again: bool = False) -> Observation:
        """The observation from the caches and the status; ``again``, later in the pass, with what the pass has done
        put into the status first (``record``: the instances, a rank just learned, the retries of its loads)."""
        if again:
            self.record()
        return observe(
            spec,
            self.status,
            self.fleet.namespace_pods(self.key[0]),
            self.now,
            self.options,
            self.residents,
            self.occupancy,
            reserved_for(self.fleet.placements.starving(self.key[0], self.key)),
        )

    async def act(self, spec: AdapterSpec, seen: Observation, pending: list[Pod]) -> str | None:
        """Load where due, finish a move, and expose what holds the adapter; returns why it cannot load anywhere."""
        fatal = None
        now_due = due(pending, self.retries, self.now)
        if now_due and self.instances:
            fatal = await self.load(spec, now_due)
        elif now_due:  # say Loading while a load takes its time (a download)
            fatal = await self.shown_while(Phase.LOADING, seen, self.load(spec, now_due))
        await self.finish_move(spec, pending)
        trying = {n for n, e in self.retries.items() if n in seen.by_name and not e.spent(self.options.max_retries)}
        self.fleet.placements.assign(self.key, {p.name for p in self.instances} | trying)
        bound = condition(self.conditions, ConditionType.BOUND)
        if self.instances or (bound is not None and bound["status"] == ConditionStatus.TRUE):
            await self.expose(spec, seen)  # with no instances left, the slice is emptied: no traffic to pods without it
        return fatal

    async def refresh(self, spec: AdapterSpec, seen: Observation) -> list[Pod]:
        """Unload where the adapter should no longer be, move an instance on an old version to the new one, and
        drop the instances whose engine lost the adapter, returning them."""
        unwanted = list(seen.strays)
        self.version = version_of(redact(spec.artifact_url), spec.artifact_digest)
        self.versions = instance_versions(self.status, self.instances, self.version)
        rolling, reloading = stale_instances(self.instances, self.versions, self.version, self.fleet.loader.via_runtime)
        if reloading:
            names = ", ".join(p.name for p in reloading)
            self.event("Normal", "ArtifactChanged", f"the artifact changed; loading it again on [{names}]")
            unwanted += reloading
            self.instances = [p for p in self.instances if p not in reloading]
        if unwanted:
            await asyncio.gather(*(self.fleet.unload(self.obj, spec, pod) for pod in unwanted))
        if rolling and not self.update_blocked():
            await self.roll(spec, rolling[0])
        self.instances, lost = still_serving(self.instances, await self.served(spec), spec.name)
        for pod in lost:
            self.fleet.metrics.reloads.inc()
            self.event("Warning", "AdapterLost", f"pod {pod.name} no longer serves the adapter; loading it again")
        return lost

    async def roll(self, spec: AdapterSpec, pod: Pod) -> None:
        """Move one pod to the new version while the others keep serving the old one; the next pass takes the next."""
        try:
            seconds, _ = await self.fleet.loader.replace(pod, spec, await self.fleet.credentials(self.key[0], spec))
        except LoadError as exc:
            self.rolled = False
            self.condition(
                ConditionType.UPDATED, ConditionStatus.FALSE, "UpdateFailed", f"pod {pod.name}: {exc.message}"
            )
            self.status["updateRetry"] = exc.outcome is not Outcome.FATAL  # a fatal one waits for an edit
            self.event("Warning", "UpdateFailed", f"pod {pod.name} keeps the previous version: {exc.message}")
            return
        self.rolled = True
        self.versions[pod.name] = self.version
        self.fleet.metrics.load_seconds.observe(seconds)
        left = sum(1 for p in self.instances if self.versions.get(p.name) != self.version)
        message = f"pod {pod.name} serves the new version; {left} to go" if left else "every pod serves the new version"
        if left:
            self.condition(ConditionType.UPDATED, ConditionStatus.FALSE, "Updating", message)
        else:
            self.condition(ConditionType.UPDATED, ConditionStatus.TRUE, "Updated", message)
        self.event("Normal", "Updated", message)

    def update_blocked(self) -> bool:
        """A rollout that failed for a reason no retry fixes waits for the spec to change."""
        updated = condition(self.conditions, ConditionType.UPDATED)
        return (
            updated is not None
            and updated["reason"] == "UpdateFailed"
            and updated.get("observedGeneration") == self.generation
            and self.status.get("updateRetry") is False
        )

    async def served(self, spec: AdapterSpec) -> list[set[str] | None]:
        """What each instance serves; a resync asks each pod once, not once per adapter."""
        index = self.fleet.index
        held = [index.fresh(pod) for pod in self.instances]
        stale = [i for i, names in enumerate(held) if names is None]
        if stale:
            asked = await asyncio.gather(*(index.names(self.instances[i], spec.api_key) for i in stale))
            for i, names in zip(stale, asked, strict=True):
                held[i] = names
        return held

    async def place(self, spec: AdapterSpec, seen: Observation, lost: list[Pod], again: bool = False) -> list[Pod]:
        """Unload replicas beyond the desired count and choose pods for missing ones; returns the pods to load.
        ``again``: the first replica's pod refused it; one pod is chosen (the others wait their turn in the queue,
        behind the first replicas of the adapters before this one), and the status says Scheduled already."""
        await self.vacate(spec)
        plan = plan_replicas(seen, spec.replicas, self.instances, lost)
        self.instances = list(plan.keep)
        if plan.extra:
            await asyncio.gather(*(self.fleet.unload(self.obj, spec, pod) for pod in plan.extra))
        moving = self.move_target(seen, plan.first, spec.priority)  # first: a move it drops frees ``owed``
        need = (min(plan.need, 1) if again else plan.need) - self.owed()
        pool = [p for p in plan.pool if p not in moving]
        chosen = [*plan.first, *await self.schedule(spec, pool, need, seen.extra), *moving]
        pending = [*plan.retrying, *chosen]
        self.fleet.placements.assign(self.key, {p.name for p in self.instances + pending}, spec.priority)
        self.displace(spec, chosen)
        if chosen:
            listed = ", ".join(p.name for p in chosen)
            message = f"ModelAdapter {self.name} has selected {len(chosen)} pods for scheduling: [{listed}]"
            self.condition(ConditionType.SCHEDULED, ConditionStatus.TRUE, "Scheduled", message)
            self.event("Normal", "Scheduled", message)
            log.info(
                "selected pods for adapter %s: %s", self.name, listed, extra={"adapter": self.name, "pods": listed}
            )
            if not self.instances and not again:  # serving: the pass's last write says it, with the new instances
                await self.write_phase(Phase.SCHEDULED, seen)
        return pending

    def adapters_on(self, pod: str) -> int:
        """Adapters held or being loaded on ``pod`` in this namespace, this one included."""
        return self.fleet.placements.adapters_on(self.key[0], pod)

    def residents(self, pod: str) -> list[tuple[int, str]]:
        """(priority, name) of the adapters placed on ``pod``, lowest priority first."""
        return [(priority, key[1]) for priority, key in self.fleet.placements.residents(self.key[0], pod)]

    def demand_on(self, pod: str) -> float:
        return sum(self.fleet.expected_demand(self.key[0], pod).values())

    def displace(self, spec: AdapterSpec, pods: Sequence[Pod]) -> None:
        """Wake the lower-priority adapters this one displaced on full pods: each gives up its slot in its own pass."""
        for pod in pods:
            slots = pod.limits.max_adapters
            on_pod = self.fleet.placements.residents(self.key[0], pod.name)
            if slots is not None and len(on_pod) > slots:
                for priority, key in on_pod[: len(on_pod) - slots]:
                    if priority < spec.priority:
                        self.fleet.wake(key)

    async def schedule(self, spec: AdapterSpec, pool: Sequence[Pod], count: int, extra: bool) -> list[Pod]:
        """``count`` pods of ``pool`` in the policy's order, skipping those that cannot take a new replica now: only
        a first replica may take a slot kept for adapters still waiting for theirs, and a policy that awaited
        (least-load reads metrics) may have let other adapters fill a pod. ``extra``: the observation's answer,
        whether a new replica is an extra one; no longer so once this pass has lost every pod the adapter held."""
        if count <= 0 or not pool:
            return []
        asked = schedulers.Placement(
            spec.name, pool, len(pool), self.adapters_on, self.fleet.pod_metrics, self.demand_on
        )
        ranked = await schedulers.POLICIES[spec.scheduler](asked)
        first = not (
            extra and (self.instances or any(not e.spent(self.options.max_retries) for e in self.retries.values()))
        )
        reserved = reserved_for(self.fleet.placements.starving(self.key[0], self.key))
        kept: list[Pod] = []
        for pod in ranked:
            if len(kept) == count:
                break
            if takeable(pod, spec.priority, self.occupancy, None if first and not kept else reserved):
                kept.append(pod)
        # pods observed with room were taken, or kept for first replicas, while this pass chose
        self.crowded = len(kept) < min(count, len(pool))
        return kept

    async def load(self, spec: AdapterSpec, pods: list[Pod]) -> str | None:
        """Try each due pod once; returns the reason when the adapter cannot load anywhere."""
        try:
            credentials = await self.fleet.credentials(self.key[0], spec)
        except LoadError as exc:
            return exc.message
        results = await asyncio.gather(
            *(self.fleet.loader.load(pod, spec, credentials) for pod in pods), return_exceptions=True
        )
        fatal, loaded = None, list[str]()
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, Loaded):
                self.loaded(spec, pod, result.seconds)
                self.learn_rank(result.rank)
                loaded.append(pod.name)
            elif isinstance(result, LoadError):
                self.learn_rank(result.rank)
                fatal = self.failed(pod, result) or fatal
            else:
                raise result
        if loaded:
            where = f"pod {loaded[0]}" if len(loaded) == 1 else f"{len(loaded)} pods: [{', '.join(loaded)}]"
            self.event("Normal", "Loaded", f"Successfully loaded adapter on {where}")
            sglang = [pod for pod in pods if pod.name in loaded and pod.engine == "sglang"]
            if sglang:
                self.event("Warning", "AddressAsBaseColonAdapter", sglang_naming(spec.name))
        return fatal

    def learn_rank(self, rank: int | None) -> None:
        """The adapter's rank, from a runtime's answer or a refusal naming it: placement's constraint from now on."""
        if rank is not None:
            self.learned = self.learned or self.status.get("rank") != rank
            self.status["rank"] = rank

    def loaded(self, spec: AdapterSpec, pod: Pod, seconds: float) -> None:
        self.instances.append(pod)
        self.versions[pod.name] = self.version
        self.retries.pop(pod.name, None)
        self.fleet.index.add(pod, spec.name)
        self.fleet.metrics.loads.labels("ok").inc()
        self.fleet.metrics.load_seconds.observe(seconds)
        log.info(
            "loaded adapter %s on pod %s in %.3fs",
            self.name,
            pod.name,
            seconds,
            extra={"adapter": self.name, "pod": pod.name},
        )

    def failed(self, pod: Pod, error: LoadError) -> str | None:
        """Record a failed load on ``pod``; returns the reason when no pod can load the adapter."""
        self.fleet.metrics.loads.labels(error.outcome.value).inc()
        extra = {"adapter": self.name, "pod": pod.name}
        if error.outcome is Outcome.FATAL:
            self.retries.pop(pod.name, None)
            log.warning("adapter %s cannot load: %s", self.name, error.message, extra=extra)
            return error.message
        retry = self.retries[pod.name] = after_failure(self.retries.get(pod.name), pod, error, self.now, self.options)
        if error.rank is not None:
            # how the rank is learned, not a failure: as kube-scheduler says nothing of the nodes a pod did not
            # fit while another one fits, the Event comes only if too few pods can hold it (``unschedulable``)
            log.info("pod %s cannot hold rank %d of adapter %s: %s", pod.name, error.rank, self.name, error.message)
        else:
            self.event("Warning", *failure_news(pod.name, retry, error.message, self.now, self.options))
        if retry.spent(self.options.max_retries):
            self.fleet.metrics.failovers.inc()
            self.gave_up = True
            if error.rank is None:
                log.warning("giving up on pod %s for adapter %s: %s", pod.name, self.name, error.message, extra=extra)
        else:
            log.info(
                "retriable error loading adapter %s on pod %s: %s",
                self.name,
                pod.name,
                error.message,
                extra={**extra, "attempt": retry.attempts},
            )
        return None

    async def expose(self, spec: AdapterSpec, seen: Observation) -> None:
        """The Service and EndpointSlice that route the adapter's name to the pods holding it."""
        owners = exposure.owner_references(self.obj)
        port = exposure.engine_port(self.instances, seen.candidates)
        service = exposure.service(spec, owners, port)
        endpoints = exposure.endpoint_slice(spec, owners, self.instances, port, seen.matching)
        bound = condition(self.conditions, ConditionType.BOUND)
        if self.instances and (bound is None or bound["status"] != ConditionStatus.TRUE):
            held = ", ".join(sorted(p.name for p in self.instances))
            self.condition(
                ConditionType.BOUND,
                ConditionStatus.TRUE,
                "Bound",
                f"Loaded on [{held}]; creating Service and EndpointSlice",
            )
            await self.shown_while(Phase.BOUND, seen, self.publish(service, endpoints))
        else:
            await self.publish(service, endpoints)

    async def publish(self, service: Obj, endpoints: Obj) -> None:
        """Both at once: neither needs the other (the slice names the Service by label, both are owned by the
        adapter), and on a busy API server two round trips in a row cost the status a Bound write."""
        await asyncio.gather(
            self.fleet.kube.apply_once(Service, service), self.fleet.kube.apply_once(EndpointSlice, endpoints)
        )
