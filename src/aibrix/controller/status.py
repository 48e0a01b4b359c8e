"""The ModelAdapter status: conditions in the seed's vocabulary, and per-pod retry state kept in the object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aibrix.controller.kube import timestamp
from aibrix.controller.pods import parse_time

Obj = dict[str, Any]


def set_condition(conditions: list[Obj], type_: str, status: str, reason: str, message: str, generation: int) -> None:
    """Add or update a condition; its transition time moves only when its status or reason does."""
    for condition in conditions:
        if condition.get("type") == type_:
            if condition.get("status") != status or condition.get("reason") != reason:
                condition["lastTransitionTime"] = timestamp()
            condition.update(status=status, reason=reason, message=message, observedGeneration=generation)
            return
    conditions.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": timestamp(),
            "observedGeneration": generation,
        }
    )


def condition(conditions: list[Obj], type_: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def claimed_pods(status: Obj) -> set[str]:
    """Pods that hold the adapter or are being loaded with it, by name, as the status records them."""
    retried = {r["pod"] for r in status.get("retries") or [] if r.get("pod")}
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

    def to_status(self) -> Obj:
        return {
            "pod": self.pod,
            "podUID": self.pod_uid,
            "attempts": self.attempts,
            "lastError": self.last_error[:512],
            "lastAttemptTime": timestamp(self.last_attempt, micro=True),
            "nextAttemptTime": timestamp(self.next_attempt, micro=True),
        }
