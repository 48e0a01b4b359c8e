"""The decisions of a reconcile as pure functions: what a failed load means for the pod's retry state, and which
phase and Ready condition the adapter settles in once the pass has acted."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aibrix.controller.loader import LoadError, Outcome
from aibrix.controller.options import Options
from aibrix.controller.pods import Pod
from aibrix.controller.status import ConditionStatus, Phase, Retry


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
    candidates: list[Pod],
    fatal: str | None,
    now: float,
    options: Options,
) -> Verdict:
    if instances:
        ready = f"ModelAdapter {name} is ready" + (f" on {instances} of {desired} pods" if instances < desired else "")
        return Verdict(Phase.RUNNING, (ConditionStatus.TRUE, "ModelAdapterAvailable", ready))
    if fatal:
        # rounded up so the hold is never cut short
        hold = math.ceil(now + options.cooldown)
        return Verdict(Phase.FAILED, (ConditionStatus.FALSE, "LoadFailed", fatal), "LoadFailed", hold, unbound=True)
    exhausted = {n for n, e in retries.items() if e.attempts >= options.max_retries}
    if any(n not in exhausted for n in retries):
        return Verdict(
            Phase.LOADING,
            (ConditionStatus.FALSE, "Loading", "Loading the adapter; retrying after errors"),
            unbound=True,
        )
    if exhausted and not any(p.name not in exhausted for p in candidates):
        reasons = "; ".join(f"{n}: {retries[n].last_error}" for n in sorted(exhausted))
        message = f"no pod could load the adapter after retries ({reasons}); waiting for new pods"
        return Verdict(Phase.FAILED, (ConditionStatus.FALSE, "NoPodAvailable", message), "Failed", unbound=True)
    message = "no Ready pod matches spec.podSelector with label adapter.model.aibrix.ai/enabled=true"
    return Verdict(Phase.PENDING, (ConditionStatus.FALSE, "NoCandidatePods", message), "NoCandidatePods", unbound=True)
