"""The one retry policy for storage traffic: which failures pass, how long to wait, and how much retrying one
download may spend in all, so retries never multiply into hours on a server that is down."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from aibrix.storage.base import StorageError

T = TypeVar("T")
MAX_RETRY_AFTER = 60.0  # a server asking for longer is treated as down for this attempt


class RetryBudget:
    """Retries shared by everything one download does (every part of every file)."""

    def __init__(self, retries: int) -> None:
        self.size = self.left = retries
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one retry; False when none are left."""
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` per request (or part); exponential backoff from ``base`` to ``cap`` with jitter, or the server's
    Retry-After (up to a minute); no new attempt once ``deadline`` seconds have passed since the first."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 20.0
    deadline: float = 900.0

    def delay(self, attempt: int, error: StorageError) -> float:
        asked = getattr(error, "retry_after", None)
        if asked is not None:
            return float(min(max(asked, 0.0), MAX_RETRY_AFTER))
        backoff = min(self.cap, self.base * 2 ** (attempt - 1))
        return float(backoff * (0.5 + random.random() / 2))

    def call(
        self,
        action: Callable[[float], T],
        *,
        budget: RetryBudget | None = None,
        deadline: float | None = None,
    ) -> T:
        """``action(give_up_at)`` until it succeeds, fails for good, or the attempts, the budget or the deadline run
        out; the last error is raised as it was. ``give_up_at`` (monotonic) lets a slow attempt stop itself."""
        give_up_at = time.monotonic() + (self.deadline if deadline is None else deadline)
        for attempt in range(1, self.attempts + 1):
            try:
                return action(give_up_at)
            except StorageError as exc:
                wait = self.delay(attempt, exc)
                last_try = attempt == self.attempts or time.monotonic() + wait > give_up_at
                if not exc.transient or last_try:
                    raise
                if budget is not None and not budget.take():
                    raise type(exc)(
                        f"{exc} (giving up: this download has used all {budget.size} of its retries)"
                    ) from None
            time.sleep(wait)
        raise AssertionError("unreachable: the last attempt raises")
