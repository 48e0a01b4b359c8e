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

import math
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

    def any_seen(self) -> bool:
        """Whether any adapter has shown demand: until then (a fleet being set up) every share is zero."""
        return bool(self._totals)

    def of_adapter(self, namespace: str, name: str) -> float:
        """The adapter's demand wherever it was seen: what it brings to the pods it is placed on, split evenly."""
        return self._totals.get((namespace, name), 0.0)


def split(active: Collection[str], requests: float, prior: Mapping[str, float] | None = None) -> dict[str, float]:
    """vLLM names the adapters with requests in flight, not their counts. Each active adapter has at least one;
    the rest of the pod's requests go to them in proportion to how many more each is expected to have, given its
    ``prior`` mean count on the pod (the smoothed estimate so far): an adapter with a mean of m requests, seen
    active, has m / (1 - e^-m) on average (a Poisson count given it is not zero), so one extra beyond the first.
    With no prior the split is even. An even split alone would give a hot adapter active beside cold ones the
    same share as each of them, whatever the real counts: the busier a pod, the flatter the estimate."""
    if not active:
        return {}
    extra = max(0.0, requests - len(active))
    weights = {name: _beyond_one((prior or {}).get(name, 0.0)) for name in active}
    total = sum(weights.values())
    if total <= 0:
        return {name: 1.0 + extra / len(active) for name in active}
    return {name: 1.0 + extra * weight / total for name, weight in weights.items()}


def _beyond_one(mean: float) -> float:
    """E[N | N >= 1] - 1 for a Poisson count N of the given mean: what an active adapter has beyond its first."""
    if mean <= 1e-6:
        return 0.0
    return mean / -math.expm1(-mean) - 1.0


def reading(
    active: Collection[str] | None,
    requests: float,
    pool_used: int | None,
    placed: Collection[str],
    prior: Mapping[str, float] | None = None,
) -> dict[str, float] | None:
    """Requests per adapter from one metrics page, or None when the page says nothing of adapters. vLLM's page
    names the active adapters (``active``), split by ``split`` with the pod's ``prior``. SGLang's says only how
    many adapters its running batch holds (``pool_used``: sglang:lora_pool_slots_used); then the pod's requests
    are split over every adapter placed there, and a batch with none of them is base-model traffic that counts
    for no adapter."""
    if active:
        return split(active, requests, prior)
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
    elsewhere: frozenset[str] = frozenset()  # adapters here that another pod holds too


@dataclass(frozen=True)
class Move:
    adapter: str
    source: str
    target: str
    partner: str | None = None  # a swap: the adapter that trades places with this one (the target pod is full)
    vacate: bool = False  # the quiet side of a swap: it leaves the source first, so the busy side can come in


def plan_moves(pods: Sequence[PodState], ranks: Mapping[str, int | None], threshold: float, limit: int) -> list[Move]:
    """At most ``limit`` moves, each taking one adapter off the busiest pod whose demand is more than ``threshold``
    (0.2: 20 %) above the mean, onto the least busy pod that can hold it, and only when the move leaves both pods
    below the source's demand (hysteresis: a move that only trades places never happens). A pod held up by one hot
    adapter sheds the others until no move lowers it, and then the next busiest sheds. A full target takes the
    adapter in a swap: one of its less used adapters comes the other way (``_Plan.partner``), and the pair counts
    as two moves. Ties go to the pod listed first: the same readings always plan the same moves."""
    if not pods:
        return []
    plan = _Plan(pods, ranks)
    demand = plan.demand
    mean = sum(demand.values()) / len(demand)
    moves: list[Move] = []
    while mean > 0 and len(moves) < limit:
        planned: list[Move] = []
        for source in sorted(demand, key=lambda n: -demand[n]):
            if demand[source] <= (1 + threshold) * mean:
                continue
            planned = plan.best(source, swaps=len(moves) + 2 <= limit)
            if planned:
                break
        if not planned:
            break
        for move in planned:
            plan.apply(move)
        moves.extend(planned)
    return moves


class _Plan:
    """The pods as the moves planned so far leave them."""

    def __init__(self, pods: Sequence[PodState], ranks: Mapping[str, int | None]) -> None:
        self.ranks = ranks
        self.demand = {p.name: p.demand for p in pods}
        self.free = {p.name: p.free_slots for p in pods}
        self.holds = {p.name: set(p.holds) for p in pods}
        self.movable = {p.name: dict(p.adapters) for p in pods}
        self.limit = {p.name: p.max_rank for p in pods}
        self.elsewhere = {p.name: p.elsewhere for p in pods}

    def fits(self, adapter: str, pod: str) -> bool:
        rank, limit = self.ranks.get(adapter), self.limit[pod]
        return rank is None or limit is None or rank <= limit

    def partner(self, pod: str, toward: str) -> tuple[str, float] | None:
        """The adapter on ``pod`` that ``toward`` can take in a swap, and its share: the least used one among those
        another pod holds too (their traffic goes there while they move) and those with no demand seen; among
        equals, one held elsewhere, then by name. One used and held nowhere else never swaps: it would go without
        a pod for a moment."""
        found = [
            (name, share)
            for name, share in self.movable[pod].items()
            if name not in self.holds[toward]
            and self.fits(name, toward)
            and (share <= 0 or name in self.elsewhere[pod])
        ]
        return min(found, key=lambda item: (item[1], item[0] not in self.elsewhere[pod], item[0]), default=None)

    def best(self, source: str, swaps: bool) -> list[Move]:
        """The move off ``source`` that leaves the higher of the two pods lowest, if any improves on ``source``;
        among equal results the adapter with the least demand moves (less traffic disturbed), and a pod with a free
        slot comes before a full one of the same demand (a swap disturbs a second adapter)."""
        demand = self.demand
        targets = sorted(demand, key=lambda n: (demand[n], self.free[n] == 0))  # the same for every adapter
        partners: dict[str, tuple[str, float] | None] = {}  # full target -> its side of a swap with ``source``
        best: tuple[float, list[Move]] | None = None
        for adapter, share in sorted(self.movable[source].items(), key=lambda item: (item[1], item[0])):
            if share <= 0:
                continue
            for target in targets:
                if target == source or adapter in self.holds[target] or not self.fits(adapter, target):
                    continue
                found = None
                if self.free[target] == 0:
                    if target not in partners:
                        partners[target] = self.partner(target, source) if swaps else None
                    found = partners[target]
                    if found is None:
                        continue
                partner, theirs = found or (None, 0.0)
                peak = max(demand[source] - share + theirs, demand[target] + share - theirs)
                if peak >= demand[source]:
                    continue  # a swap that gives back too much: a busier pod with a quieter partner may do
                if best is None or peak < best[0]:
                    moves = [Move(adapter, source, target, partner)]
                    if partner is not None:
                        moves.append(Move(partner, target, source, adapter, vacate=True))
                    best = (peak, moves)
                break  # the least busy pod that can take it is the best target for this adapter
        return [] if best is None else best[1]

    def apply(self, move: Move) -> None:
        share = self.movable[move.source].pop(move.adapter)
        self.demand[move.source] -= share
        self.demand[move.target] += share
        self.holds[move.source].discard(move.adapter)
        self.holds[move.target].add(move.adapter)
        free = self.free[move.target]
        if move.partner is None and free is not None:
            self.free[move.target] = free - 1
