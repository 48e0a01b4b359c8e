"""Where every adapter is, or is being loaded: the count per pod that least-adapters schedules by, and each adapter's
phase as the phase gauge shows it. Shared by all adapters; each reconcile updates its own entry."""

from __future__ import annotations

from collections.abc import Mapping

from aibrix.controller.metrics import PHASES, ControllerMetrics
from aibrix.controller.resources import Key, Obj
from aibrix.controller.status import claimed_pods


class Placements:
    def __init__(self, metrics: ControllerMetrics) -> None:
        self.metrics = metrics
        self._pods: dict[Key, set[str]] = {}  # adapter -> pods it is on or being loaded on
        self._priority: dict[Key, int] = {}  # adapter -> spec.priority
        self._on_pod: dict[tuple[str, str], set[Key]] = {}  # (namespace, pod) -> adapters placed there
        self._phases: dict[Key, str] = {}
        self._starving: dict[Key, int | None] = {}  # adapters with no replica, waiting for a slot -> their rank
        self._held_back: set[Key] = set()  # adapters with a replica, short of slots for more
        self._lowest: dict[tuple[str, str], int] = {}  # (namespace, pod) -> lowest priority, until it changes

    def seed(self, adapters: Mapping[Key, Obj], max_retries: int) -> None:
        """Count placements from the cached statuses, so least-adapters is right from the first reconcile."""
        for key, obj in adapters.items():
            status = obj.get("status") or {}
            priority = (obj.get("spec") or {}).get("priority", 0)
            self.assign(key, claimed_pods(status, max_retries), priority if isinstance(priority, int) else 0)
            self.set_phase(key, status.get("phase"))

    def assign(self, key: Key, pods: set[str], priority: int | None = None) -> None:
        old = self._pods.get(key, set())
        reprioritized = priority is not None and priority != self._priority.get(key, 0)
        for pod in old | pods if reprioritized else old ^ pods:
            self._lowest.pop((key[0], pod), None)
        if priority is not None:
            self._priority[key] = priority
        for pod in old - pods:
            here = self._on_pod[(key[0], pod)]
            here.discard(key)
            if not here:
                del self._on_pod[(key[0], pod)]
        for pod in pods - old:
            self._on_pod.setdefault((key[0], pod), set()).add(key)
        self._pods[key] = set(pods)

    def pods_of(self, key: Key) -> set[str]:
        """The pods ``key`` is on or being loaded on."""
        return self._pods.get(key, set())

    def on_pod(self, namespace: str, pod: str) -> set[Key]:
        """The adapters placed on ``pod``, or being loaded there."""
        return set(self._on_pod.get((namespace, pod), ()))

    def names_on(self, namespace: str, pod: str) -> set[str]:
        """The names of the adapters placed on ``pod`` (one namespace: names are enough)."""
        return {key[1] for key in self._on_pod.get((namespace, pod), ())}

    def adapters_on(self, namespace: str, pod: str) -> int:
        return len(self._on_pod.get((namespace, pod), ()))

    def occupancy(self, namespace: str, pod: str) -> tuple[int, int]:
        """(adapters on ``pod``, their lowest priority): what the slot check needs, without listing them."""
        here = self._on_pod.get((namespace, pod))
        if not here:
            return 0, 0
        lowest = self._lowest.get((namespace, pod))
        if lowest is None:
            lowest = self._lowest[(namespace, pod)] = min(self._priority.get(k, 0) for k in here)
        return len(here), lowest

    def residents(self, namespace: str, pod: str) -> list[tuple[int, Key]]:
        """(priority, adapter) of every adapter placed on ``pod``, lowest priority first (then by name, last first:
        among equals the one placed under the later name yields first, so the order never depends on timing)."""
        found = [(self._priority.get(k, 0), k) for k in self._on_pod.get((namespace, pod), ())]
        by_name = sorted(found, key=lambda item: item[1][1], reverse=True)
        return sorted(by_name, key=lambda item: item[0])

    def set_phase(self, key: Key, phase: str | None) -> None:
        old = self._phases.get(key)
        if old == phase:
            return
        if old in PHASES:
            self.metrics.adapters.labels(old).inc(-1)
        if phase in PHASES:
            self.metrics.adapters.labels(phase).inc()
            self._phases[key] = phase
        else:
            self._phases.pop(key, None)

    def short_of_slots(self, key: Key, short: bool, placed: bool, rank: int | None) -> list[Key]:
        """Record how ``key`` ended its pass: ``short`` of free slots for the replicas it wants, with a replica
        (``placed``: held back) or none (waiting for a first one). Returns the adapters to wake: when the last
        adapter of the namespace waiting for a first replica stops waiting, the slots kept for first replicas are
        free for extra ones again."""
        namespace = key[0]
        was_waiting = key in self._starving
        starving = short and not placed
        if starving:
            self._starving[key] = rank
        else:
            self._starving.pop(key, None)
        if short and placed:
            self._held_back.add(key)
        else:
            self._held_back.discard(key)
        if was_waiting and not starving and not self.starving_keys(namespace):
            return self.held_back_keys(namespace)
        return []

    def starving(self, namespace: str, but: Key) -> list[int | None]:
        """The ranks of the other adapters of ``namespace`` waiting for their first replica."""
        return [rank for key, rank in self._starving.items() if key[0] == namespace and key != but]

    def starving_keys(self, namespace: str) -> list[Key]:
        return [key for key in self._starving if key[0] == namespace]

    def held_back_keys(self, namespace: str) -> list[Key]:
        return [key for key in self._held_back if key[0] == namespace]

    def forget(self, key: Key) -> None:
        self._starving.pop(key, None)
        self._held_back.discard(key)
        self.assign(key, set())
        self._pods.pop(key, None)
        self._priority.pop(key, None)
        self.set_phase(key, None)
