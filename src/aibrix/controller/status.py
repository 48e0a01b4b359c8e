"""The ModelAdapter status: conditions in the seed's vocabulary, and per-pod retry state kept in the object."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

from aibrix.controller.pods import parse_time
from aibrix.controller.resources import timestamp
from aibrix.errors import capped


class Phase(StrEnum):
    """ModelAdapter ``status.phase`` (the seed's lifecycle)."""

    PENDING = "Pending"
    SCHEDULED = "Scheduled"
    LOADING = "Loading"
    BOUND = "Bound"
    RUNNING = "Running"
    FAILED = "Failed"


class ConditionType(StrEnum):
    INITIALIZED = "Initialized"
    SCHEDULED = "Scheduled"
    BOUND = "Bound"
    READY = "Ready"
    UPDATED = "Updated"  # the instances hold the version the spec asks for


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


Obj = dict[str, Any]


class Condition(TypedDict):
    """One entry of ``status.conditions`` (the CRD's schema; a misspelt key is a type error, not a silent drop)."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class RetryEntry(TypedDict):
    """One entry of ``status.retries``."""

    pod: str
    podUID: str
    attempts: int
    lastError: str
    lastAttemptTime: str
    nextAttemptTime: str


def set_condition(
    conditions: list[Condition],
    type_: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
) -> None:
    """Add or update a condition; its transition time moves only when its status or reason does."""
    for condition in conditions:
        if condition.get("type") == type_:
            if condition.get("status") != status or condition.get("reason") != reason:
                condition["lastTransitionTime"] = timestamp()
            condition["status"], condition["reason"], condition["message"] = status, reason, capped(message)
            condition["observedGeneration"] = generation
            return
    conditions.append(
        Condition(
            type=type_,
            status=status,
            reason=reason,
            message=capped(message),
            lastTransitionTime=timestamp(),
            observedGeneration=generation,
        )
    )


def condition(conditions: list[Condition], type_: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def claimed_pods(status: Obj, max_retries: int | None = None) -> set[str]:
    """Pods that hold the adapter or are being loaded with it, by name, as the status records them. With
    ``max_retries``, a pod whose attempts are spent (given up on: it refused the rank, or kept failing) is not
    counted: it holds nothing and takes no slot, though an unload after a deletion still goes there."""
    entries = [Retry.from_status(raw) for raw in status.get("retries") or []]
    retried = {e.pod for e in entries if e.pod and (max_retries is None or not e.spent(max_retries))}
    return set(status.get("instances") or []) | retried


@dataclass
class Retry:
    """Failed load attempts on one pod; the pod is given up on once ``attempts`` reaches the limit."""

    pod: str
    pod_uid: str
    attempts: int
    last_error: str
    last_attempt: float
    next_attempt: float

    @classmethod
    def from_status(cls, raw: Obj) -> Retry:
        return cls(
            pod=str(raw.get("pod", "")),
            pod_uid=str(raw.get("podUID", "")),
            attempts=int(raw.get("attempts") or 0),
            last_error=str(raw.get("lastError", "")),
            last_attempt=parse_time(raw.get("lastAttemptTime")) or 0.0,
            next_attempt=parse_time(raw.get("nextAttemptTime")) or 0.0,
        )

    def spent(self, max_retries: int) -> bool:
        """Whether the pod is given up on: its attempts are spent (it cools down before a fresh set)."""
        return self.attempts >= max_retries

    def to_status(self) -> RetryEntry:
        return RetryEntry(
            pod=self.pod,
            podUID=self.pod_uid,
            attempts=self.attempts,
            lastError=self.last_error[:512],
            lastAttemptTime=timestamp(self.last_attempt, micro=True),
            nextAttemptTime=timestamp(self.next_attempt, micro=True),
        )


def messages_only(old: list[Condition], new: list[Condition]) -> bool:
    """Whether two condition lists differ in their messages alone: counts that move as the fleet fills ("2 of 3
    placeable: 19 pods have no free adapter slot"), with every status and reason as it was."""

    def kept(conditions: list[Condition]) -> list[tuple[object, ...]]:
        fields = ("type", "status", "reason", "lastTransitionTime", "observedGeneration")
        return sorted(tuple(str(c.get(f)) for f in fields) for c in conditions)

    return kept(old) == kept(new)
