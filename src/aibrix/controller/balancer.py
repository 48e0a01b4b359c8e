"""Demand balancing for adapters placed by the ``balanced`` policy: sample every pod's metrics page on an interval
(longer while no adapter is active anywhere) into the demand estimate, and every few samples plan a bounded number
of moves (controller/demand.py) and wake the adapters to make them. A move loads the adapter on its new pod before
it leaves the old one; a swap between two full pods has the less used adapter leave first (controller/moving.py).

Nothing runs while no adapter asks for ``balanced``: a fleet that does not use it pays no scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from aibrix.controller.demand import Move, PodState, plan_moves, reading
from aibrix.controller.fleet import Fleet
from aibrix.controller.pods import Pod
from aibrix.controller.resources import Key, Obj
from aibrix.controller.schedulers import load_of
from aibrix.metrics.lora import active_adapters, sglang_pool_used, vllm_lora_activity

log = logging.getLogger("aibrix.controller")

BALANCED = "balanced"


@dataclass(frozen=True)
class BalanceOptions:
    interval: float = 2.0  # seconds between samples of every pod
    plan_every: int = 3  # samples between two move plans
    threshold: float = 0.2  # a pod more than 20 % above the mean demand sheds an adapter
    moves: int = 10  # moves per plan at most
    settle: float = 60.0  # an adapter moved is not moved again for this long
    half_life: float = 30.0  # seconds over which the demand estimate halves the weight of a sample


class Balancer:
    def __init__(self, fleet: Fleet, options: BalanceOptions | None = None) -> None:
        self.fleet = fleet
        self.options = options or BalanceOptions()
        self._moved: dict[Key, float] = {}
        self._mismatched: set[str] = set()  # pod uids whose engine contradicted their arguments (said once)

    async def run(self) -> None:
        self.fleet.demand.half_life = self.options.half_life  # the estimate is fed by this loop only
        rounds = quiet = 0
        while True:
            await asyncio.sleep(pause(self.options.interval, quiet))
            balanced = self._balanced()
            if not balanced:
                continue
            try:
                quiet = 0 if await self.sample() else quiet + 1
                rounds += 1
                if rounds % self.options.plan_every == 0:
                    for move in self.plan(balanced):
                        self.fleet.wake(move[0])
            except Exception:  # one bad round must not end balancing for the controller's lifetime
                log.exception("demand balancing round failed; trying again in %.3gs", self.options.interval)

    def _balanced(self) -> dict[Key, Obj]:
        return {
            key: obj
            for key, obj in self.fleet.adapters.objects.items()
            if (obj.get("spec") or {}).get("schedulerName") == BALANCED
        }

    async def sample(self) -> bool:
        """Read every pod's page into the estimate; whether any adapter was active on any pod."""
        pods = [p for p in self.fleet.all_pods() if p.alive()]
        pages = await asyncio.gather(*(self.fleet.pod_metrics(pod) for pod in pods))
        now = time.monotonic()
        active = False
        for pod, page in zip(pods, pages, strict=True):
            if page is None:
                continue
            self.cross_check(pod, page)
            requests = load_of(pod.engine, page)[0]
            placed = self.fleet.placements.names_on(pod.namespace, pod.name)
            prior = self.fleet.expected_demand(pod.namespace, pod.name)
            count = 0.0 if math.isinf(requests) else requests
            shares = reading(active_adapters(page), count, sglang_pool_used(page), placed, prior)
            if shares is not None:
                self.fleet.demand.sample((pod.namespace, pod.name), shares, now)
                active = active or bool(shares)
        return active

    def cross_check(self, pod: Pod, page: str) -> None:
        """Limits come from the engine's arguments; vLLM reports its --max-loras back in lora_requests_info. When
        the two disagree, the arguments read are not the ones the engine runs with (a wrapper script, a config
        file), and the rank limit read from them may be wrong too: say so once per pod."""
        activity = vllm_lora_activity(page) if pod.engine == "vllm" else None
        reported = next(iter((activity or {}).get("max_lora", ())), None)
        if reported is None or pod.uid in self._mismatched or reported == str(pod.limits.max_loras):
            return
        self._mismatched.add(pod.uid)
        log.warning(
            "pod %s/%s: the engine reports max_lora=%s but its arguments say --max-loras %s; its limits may be "
            "misread: set the annotations adapter.model.aibrix.ai/max-lora-rank and .../max-adapters",
            pod.namespace,
            pod.name,
            reported,
            pod.limits.max_loras,
            extra={"pod": pod.name},
        )

    def plan(self, balanced: dict[Key, Obj]) -> list[tuple[Key, Move]]:
        """Plan each namespace's moves and hand them to the adapters' passes."""
        now = time.monotonic()
        self._moved = {key: when for key, when in self._moved.items() if key in balanced}
        for key in [k for k in self.fleet.moves if now - self._moved.get(k, now) >= self.options.settle]:
            del self.fleet.moves[key]  # a move that never came about (a swap whose other side stalled)
            self.fleet.wake(key)
        planned: list[tuple[Key, Move]] = []
        for namespace in {key[0] for key in balanced}:
            movable = {
                key[1]
                for key, obj in balanced.items()
                if key[0] == namespace
                and isinstance((obj.get("spec") or {}).get("replicas"), int)
                and now - self._moved.get(key, -math.inf) >= self.options.settle
                and key not in self.fleet.moves
            }
            pods = self.fleet.namespace_pods(namespace)
            states = [self._state(p, movable) for p in pods if p.eligible(time.time(), self.fleet.options.stability)]
            ranks = {
                key[1]: (obj.get("status") or {}).get("rank") for key, obj in balanced.items() if key[0] == namespace
            }
            moves = plan_moves(states, ranks, self.options.threshold, self.options.moves)
            for move in moves:
                key = (namespace, move.adapter)
                self.fleet.moves[key] = move
                self._moved[key] = now
                planned.append((key, move))
            if moves:
                _say_plan(namespace, states, moves)
        return planned

    def _state(self, pod: Pod, movable: set[str]) -> PodState:
        namespace = pod.namespace
        placed = self.fleet.placements.names_on(namespace, pod.name)
        demand = self.fleet.expected_demand(namespace, pod.name)
        slots = pod.limits.max_adapters
        return PodState(
            name=pod.name,
            demand=sum(demand.values()),
            max_rank=pod.limits.max_rank,
            free_slots=None if slots is None else max(0, slots - len(placed)),
            adapters={name: demand.get(name, 0.0) for name in placed & movable},  # the least used ones swap
            holds=frozenset(placed),
            elsewhere=frozenset(n for n in placed if len(self.fleet.placements.pods_of((namespace, n))) > 1),
        )


def pause(interval: float, quiet: int) -> float:
    """The wait before the next sample: the interval, doubled for each sample in a row that saw no adapter active,
    up to 8 times. A fleet being set up, or idle, is scraped a few times a minute, not every two seconds (each
    scrape costs the pod's runtime and engine a rendering of their metrics); the first request seen brings the
    interval back."""
    return interval * float(2 ** min(quiet, 3))


def _say_plan(namespace: str, states: list[PodState], moves: list[Move]) -> None:
    """What the balancer saw and did, once per plan that moves anything: how far the busiest pod is above the mean."""
    busiest = max(states, key=lambda state: state.demand)
    mean = sum(state.demand for state in states) / len(states)
    log.info(
        "balancing namespace %s: the busiest pod, %s, carries %.2f x the mean demand; %d moves (%d in swaps)",
        namespace,
        busiest.name,
        busiest.demand / mean if mean > 0 else 0.0,
        len(moves),
        sum(1 for move in moves if move.partner is not None),
        extra={"namespace": namespace},
    )
