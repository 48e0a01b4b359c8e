"""The decisions of a reconcile as pure functions over an ``Observation``: which instances still hold, which pods a
pass loads and unloads, what a failed load means for the pod's retry state, and which phase and Ready condition the
adapter settles in once the pass has acted. The pass (``adapter_pass``) carries them out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from aibrix.controller.loader import LoadError, Outcome
from aibrix.controller.observation import Observation
from aibrix.controller.options import Options
from aibrix.controller.pods import Pod
from aibrix.controller.status import ConditionStatus, Phase, Retry


def still_serving(instances: Sequence[Pod], held: Sequence[set[str] | None], name: str) -> tuple[list[Pod], list[Pod]]:
    """Split instances into those that still serve ``name`` and those that lost it (an engine restart); a pod whose
    listing could not be read keeps its place: one failed listing is not a lost adapter."""
    kept: list[Pod] = []
    lost: list[Pod] = []
    for pod, names in zip(instances, held, strict=True):
        (lost if names is not None and name not in names else kept).append(pod)
    return kept, lost


@dataclass(frozen=True)
class ReplicaPlan:
    keep: tuple[Pod, ...]  # instances that stay
    extra: tuple[Pod, ...]  # instances beyond spec.replicas: unload
    retrying: tuple[Pod, ...]  # pods with attempts left, due or not
    first: tuple[Pod, ...]  # pods whose engine lost the adapter: they get it back before anyone else
    pool: tuple[Pod, ...]  # the candidates a placement policy may choose from
    need: int  # how many the policy chooses from the pool


def plan_replicas(
    seen: Observation, replicas: int | None, instances: Sequence[Pod], lost: Sequence[Pod]
) -> ReplicaPlan:
    """Which pods keep, lose, retry or newly get the adapter, so ``seen.desired`` pods hold it."""
    names = {p.name for p in instances}
    candidate_names = {p.name for p in seen.candidates}
    retrying = tuple(
        seen.by_name[n] for n in seen.retries if n not in seen.exhausted and n in candidate_names and n not in names
    )
    need = seen.desired - len(instances) - len(retrying)
    keep, extra = tuple(instances), tuple[Pod, ...]()
    if need < 0 and replicas is not None and len(instances) > replicas:
        keep, extra = tuple(instances[:replicas]), tuple(instances[replicas:])
    if need <= 0:
        return ReplicaPlan(keep, extra, retrying, (), (), 0)
    taken = names | seen.exhausted | {p.name for p in retrying}
    pool = [p for p in seen.candidates if p.name not in taken]
    first = tuple(p for p in lost if p in pool)[:need]
    if seen.rank is None and len({p.limits.max_rank for p in pool}) > 1:
        need = min(need, 1 + len(first))  # rank unknown and the limits differ: learn it from one load first
    return ReplicaPlan(keep, extra, retrying, first, tuple(p for p in pool if p not in first), need - len(first))


def due(pods: Sequence[Pod], retries: dict[str, Retry], now: float) -> list[Pod]:
    """The pods whose load is due now: never tried, or their backoff has passed."""
    return [p for p in pods if p.name not in retries or retries[p.name].next_attempt <= now]


def after_failure(previous: Retry | None, pod: Pod, error: LoadError, now: float, options: Options) -> Retry:
    """The pod's retry state after ``error`` (not FATAL): the next attempt after a backoff, or, once the attempts
    are spent (at once for FAILOVER), a cool-down during which other pods are tried."""
    attempts = options.max_retries if error.outcome is Outcome.FAILOVER else (previous.attempts if previous else 0) + 1
    wait = options.cooldown if attempts >= options.max_retries else options.backoff(attempts)
    return Retry(pod.name, pod.uid, attempts, error.message, now, now + wait)


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    ready: tuple[ConditionStatus, str, str]  # the Ready condition: status, reason, message
    event: str | None = None  # a Warning event's reason (its message is the condition's); None for no event
    hold_until: int | None = None  # nextAttemptTime, whole seconds
    unbound: bool = False  # no pod holds the adapter any more: Bound turns False


def settle(
    name: str,
    instances: int,
    desired: int,
    retries: dict[str, Retry],
    candidates: Sequence[Pod],
    fatal: str | None,
    now: float,
    options: Options,
    short: tuple[str, str] | None = None,
) -> Verdict:
    """The phase and Ready condition once the pass has acted; ``short`` is the Scheduled shortfall (capacity.py)."""
    if instances:
        ready = f"ModelAdapter {name} is ready" + (f" on {instances} of {desired} pods" if instances < desired else "")
        return Verdict(Phase.RUNNING, (ConditionStatus.TRUE, "ModelAdapterAvailable", ready))
    if fatal:
        # rounded up so the hold is never cut short
        hold = math.ceil(now + options.cooldown)
        return Verdict(Phase.FAILED, (ConditionStatus.FALSE, "LoadFailed", fatal), "LoadFailed", hold, unbound=True)
    if short is not None and short[0] != "NoCandidatePods" and not candidates:  # pods match, none can hold it
        return Verdict(Phase.PENDING, (ConditionStatus.FALSE, short[0], short[1]), short[0], unbound=True)
    exhausted = {n for n, e in retries.items() if e.spent(options.max_retries)}
    if any(n not in exhausted for n in retries):
        return Verdict(
            Phase.LOADING,
            (ConditionStatus.FALSE, "Loading", "Loading the adapter; retrying after errors"),
            unbound=True,
        )
    if exhausted and not any(p.name not in exhausted for p in candidates):
        # Passing errors on every pod (overload, a slow start) are no verdict on the adapter: it stays Pending and
        # starts over when the first pod has cooled down; only a reason no retry fixes is Failed.
        reasons = "; ".join(f"{n}: {retries[n].last_error}" for n in sorted(exhausted))
        again = min(retries[n].next_attempt for n in exhausted) - now
        message = f"no pod could load the adapter after retries ({reasons}); trying again in {max(again, 0):.0f}s"
        return Verdict(
            Phase.PENDING, (ConditionStatus.FALSE, "NoPodAvailable", message), "NoPodAvailable", unbound=True
        )
    untried = sum(1 for p in candidates if p.name not in exhausted)
    if untried:  # a pod refused its rank, or filled up while the pass chose: the next pass places it (no Event)
        message = f"placing the adapter: {untried} pod{'s' if untried > 1 else ''} can hold it"
        return Verdict(Phase.PENDING, (ConditionStatus.FALSE, "Scheduling", message), unbound=True)
    message = "no Ready pod matches spec.podSelector with label adapter.model.aibrix.ai/enabled=true"
    return Verdict(Phase.PENDING, (ConditionStatus.FALSE, "NoCandidatePods", message), "NoCandidatePods", unbound=True)


def failure_news(pod: str, retry: Retry, error: str, now: float, options: Options) -> tuple[str, str]:
    """The Warning event a failed load earns (reason, message): the pod was given up on, or a retry is
    scheduled."""
    if retry.spent(options.max_retries):
        return "MaxRetriesExceeded", f"Max retries exceeded for pod {pod}: {error}"
    delay = retry.next_attempt - now
    return "RetryScheduled", (
        f"Retriable error loading adapter on pod {pod} (attempt {retry.attempts}): {error}; retrying in {delay:g}s"
    )
