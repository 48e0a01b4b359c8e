"""Each adapter's demand, estimated from what the engines report, and the moves that even it out.

The signal is the one vLLM exports: which adapters have requests in flight (``vllm:lora_requests_info``, or the
runtime's ``aibrix:lora_adapter_requests_active`` built from it; aibrix.metrics.lora) beside the engine's count of
running and waiting requests. Each sample splits the pod's requests evenly over the adapters active there (at least
one request each), and an exponentially weighted average per (pod, adapter) smooths the samples over time
(half-life ``half_life`` seconds); until a pod has that many samples, their plain mean (one early sample must not
outweigh the rest). An adapter's demand is the sum over the pods it was seen on; a pod's expected demand is the sum,
over the adapters placed on it now, of each one's demand over its replicas (a gateway splits an adapter's traffic
over the pods that hold it), so a move counts at once, before the readings catch up.

SGLang exports no adapter names, only how many adapters its running batch holds (``sglang:lora_pool_slots_used``,
sgl-project/sglang scheduler_metrics_mixin.py: the distinct lora ids of the running batch): when that is above
zero, the pod's requests are split evenly over every adapter placed on it; at zero they are base-model traffic.

Limits, said once: vLLM exports names, not per-adapter counts, so two adapters active on one pod share its requests
evenly whatever their real split; base-model requests count toward the adapters active beside them; on SGLang every
adapter placed on a busy pod shares its requests, the idle ones too, so a move off it may take an idle adapter
(the estimate corrects itself as the samples that follow the move come in); a sample is a moment, so bursts shorter
than the sampling interval are seen by chance.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

PodKey = tuple[str, str]  # (namespace, pod)


class DemandEstimator:
    def __init__(self, half_life: float = 30.0) -> None:
        self.half_life = half_life
        self._pods: dict[PodKey, dict[str, float]] = {}  # (namespace, pod) -> adapter -> smoothed requests
        self._sampled: dict[PodKey, tuple[float, int]] = {}  # (namespace, pod) -> (last sample time, samples)
        self._totals: dict[tuple[str, str], float] = {}  # (namespace, adapter) -> the sum over its pods

    def sample(self, pod: PodKey, shares: Mapping[str, float], now: float) -> None:
        """One reading of a pod as requests per adapter (``reading``); an adapter missing from ``shares`` had none."""
        last, count = self._sampled.get(pod, (now, 0))
        self._sampled[pod] = (now, count + 1)
        weight = max(1.0 / (count + 1), 1.0 - 0.5 ** (max(0.0, now - last) / self.half_life))
        current = self._pods.setdefault(pod, {})
        for name in current.keys() | shares.keys():
            old = current.get(name, 0.0)
            value = old + weight * (shares.get(name, 0.0) - old)
            if value < 1e-3:
                value = 0.0
                current.pop(name, None)
            else:
                current[name] = value
            self._add((pod[0], name), value - old)

    def _add(self, key: tuple[str, str], change: float) -> None:
        total = self._totals.get(key, 0.0) + change
        if total < 1e-3:
            self._totals.pop(key, None)
        else:
            self._totals[key] = total

    def forget(self, pod: PodKey) -> None:
        for name, value in self._pods.pop(pod, {}).items():
            self._add((pod[0], name), -value)
        self._sampled.pop(pod, None)

    def on_pod(self, pod: PodKey) -> Mapping[str, float]:
        """Smoothed requests per adapter seen on ``pod`` (adapters that left it fade out over the half-life)."""
        return self._pods.get(pod, {})

    def of_adapter(self, namespace: str, name: str) -> float:
        """The adapter's demand wherever it was seen: what it brings to the pods it is placed on, split evenly."""
        return self._totals.get((namespace, name), 0.0)


def split(active: Collection[str], requests: float) -> dict[str, float]:
    """vLLM names the adapters with requests in flight, not their counts: the pod's requests split evenly over
    them, at least one each."""
    return {name: max(requests, float(len(active))) / len(active) for name in active}


def reading(
    active: Collection[str] | None, requests: float, pool_used: int | None, placed: Collection[str]
) -> dict[str, float] | None:
    """Requests per adapter from one metrics page, or None when the page says nothing of adapters. vLLM's page
    names the active adapters (``active``). SGLang's says only how many adapters its running batch holds
    (``pool_used``: sglang:lora_pool_slots_used); then the pod's requests are split over every adapter placed
    there, and a batch with none of them is base-model traffic that counts for no adapter."""
    if active:
        return split(active, requests)
    if pool_used is None:
        return None if active is None else {}
    if pool_used <= 0 or not placed:
        return {}
    share = max(requests, float(pool_used)) / len(placed)
    return {name: share for name in placed}


@dataclass(frozen=True)
class PodState:
    """What the move planner knows of a pod: its demand, its limits and what it holds."""

    name: str
    demand: float
    max_rank: int | None
    free_slots: int | None  # None: no declared slots
    adapters: Mapping[str, float]  # movable adapters here -> their demand on this pod
    holds: frozenset[str]  # every adapter placed here, movable or not
    largest: float = 0.0  # the largest one adapter's demand here, movable or not


@dataclass(frozen=True)
class Move:
    adapter: str
    source: str
    target: str


def plan_moves(pods: Sequence[PodState], ranks: Mapping[str, int | None], threshold: float, limit: int) -> list[Move]:
    """At most ``limit`` moves, each taking one adapter off the busiest pod while that pod's demand is more than
    ``threshold`` (0.25: 25 %) above what any placement could reach, onto the least busy pod that can hold it, and
    only when the move leaves both pods below the busiest one's demand (hysteresis: a move that only trades places
    never happens). What a placement could reach is the mean, or more when one adapter's share on one pod is larger
    (moves do not split an adapter's traffic further). Ties go to the pod listed first: the same readings always plan
    the same moves."""
    if not pods:
        return []
    demand = {p.name: p.demand for p in pods}
    free = {p.name: p.free_slots for p in pods}
    holds = {p.name: set(p.holds) for p in pods}
    movable = {p.name: dict(p.adapters) for p in pods}
    by_name = {p.name: p for p in pods}
    mean = sum(demand.values()) / len(demand)
    floor = max([mean, *(p.largest for p in pods), *(share for p in pods for share in p.adapters.values())])
    moves: list[Move] = []
    while len(moves) < limit:
        source = max(demand, key=lambda n: demand[n])
        if mean <= 0 or demand[source] <= (1 + threshold) * floor:
            break
        move = _best_move(source, demand, movable, holds, free, by_name, ranks)
        if move is None:
            break
        share = movable[source].pop(move.adapter)
        demand[source] -= share
        demand[move.target] += share
        holds[source].discard(move.adapter)
        holds[move.target].add(move.adapter)
        if free[move.target] is not None:
            free[move.target] = int(free[move.target] or 0) - 1
        moves.append(move)
    return moves


def _best_move(
    source: str,
    demand: Mapping[str, float],
    movable: Mapping[str, dict[str, float]],
    holds: Mapping[str, set[str]],
    free: Mapping[str, int | None],
    by_name: Mapping[str, PodState],
    ranks: Mapping[str, int | None],
) -> Move | None:
    """The move off ``source`` that leaves the higher of the two pods lowest, if any improves on ``source``; among
    equal results the adapter with the least demand moves (less traffic disturbed)."""
    best: tuple[float, Move] | None = None
    for adapter, share in sorted(movable[source].items(), key=lambda item: (item[1], item[0])):
        rank = ranks.get(adapter)
        for target in sorted(demand, key=lambda n: demand[n]):
            pod = by_name[target]
            if target == source or adapter in holds[target] or free[target] == 0:
                continue
            if rank is not None and pod.max_rank is not None and rank > pod.max_rank:
                continue
            peak = max(demand[source] - share, demand[target] + share)
            if peak < demand[source] and (best is None or peak < best[0]):
                best = (peak, Move(adapter, source, target))
            break  # the least busy pod that can take it is the best target for this adapter
    return None if best is None else best[1]
