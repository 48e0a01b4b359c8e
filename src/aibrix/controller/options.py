"""How the controller retries, waits and resyncs: the knobs of aibrix_controller's command line."""

from __future__ import annotations

from dataclasses import dataclass


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
        return float(self.retry_base * 2 ** max(0, attempts - 1))

    @property
    def cooldown(self) -> float:
        """How long a pod that spent its retries is left alone before it gets a fresh set."""
        return self.backoff(self.max_retries + 1)
