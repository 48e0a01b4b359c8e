"""The balancer's demand estimate and move planner against simulated traffic, without pods or an API server.

    .venv/bin/python bench/balance_model.py [--rate 115] [--duration 1.15] [--seconds 180] [--estimate names]

Why: placement_bench.py measures the whole system, and on this machine its traffic is capped by the CPU (about 100
completions a second over 50 pods). This model replays the same fleet (ranks 8/16/64, 20-40 slots, replicas 1-3,
Zipf demand) with requests drawn as a Poisson process, samples the in-flight requests every ``--interval`` seconds
the way the controller reads ``vllm:lora_requests_info`` (names of the active adapters, the pod's request count),
and runs the controller's own estimator and planner (aibrix.controller.demand) on them; moves take effect at once.
It shows how much of the gap between the balancer's view and the true demand comes from the signal (how many
requests a window holds) and how much from the planner: ``--estimate oracle`` feeds each adapter's true expected
concurrency instead of the samples.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
from collections import defaultdict

from aibrix.controller.demand import DemandEstimator, PodState, plan_moves, reading

RANKS = (8, 16, 64)


class Model:
    def __init__(self, args: argparse.Namespace) -> None:
        rng = self.rng = random.Random(args.seed)
        self.args = args
        self.pods = [f"pod-{i:02d}" for i in range(args.pods)]
        self.limits = {p: (rng.choice(RANKS), rng.randint(20, 40)) for p in self.pods}
        names = [f"lora-{i:04d}" for i in range(args.adapters)]
        self.ranks = {n: rng.choice(RANKS) for n in names}
        self.replicas = {n: rng.randint(1, 3) for n in names}
        weights = [1 / (k + 1) ** args.skew for k in range(args.adapters)]
        rng.shuffle(weights)
        total = sum(weights)
        self.weight = {n: w / total for n, w in zip(names, weights, strict=True)}
        self.places: dict[str, list[str]] = {n: [] for n in names}
        # a first placement like the controller's: every adapter's first replica, then the others, where they fit
        for want in range(1, 4):
            for name in sorted(names, key=lambda n: -self.ranks[n]):
                if len(self.places[name]) >= min(want, self.replicas[name]):
                    continue
                fits = [
                    p
                    for p in self.pods
                    if self.limits[p][0] >= self.ranks[name] and p not in self.places[name] and self.room(p)
                ]
                if fits:
                    self.places[name].append(rng.choice(fits))
        self.estimate = DemandEstimator(args.half_life)
        self.moved: dict[str, float] = {}

    def room(self, pod: str) -> bool:
        return sum(pod in held for held in self.places.values()) < self.limits[pod][1]

    def pod_demand(self) -> dict[str, float]:
        load = dict.fromkeys(self.pods, 0.0)
        for name, held in self.places.items():
            for pod in held:
                load[pod] += self.weight[name] / len(held)
        return load

    def peak(self) -> float:
        load = self.pod_demand()
        return max(load.values()) / (sum(load.values()) / len(load))

    def run(self) -> tuple[float, float, int, list[float]]:
        args, rng = self.args, self.rng
        before = self.peak()
        names = [n for n, held in self.places.items() if held]
        cumulative = list(itertools.accumulate(self.weight[n] for n in names))
        flight: list[tuple[float, str, str]] = []  # (ends, pod, adapter)
        now, arrival, samples, moves, seen = 0.0, rng.expovariate(args.rate), 0, 0, []
        while now < args.seconds:
            now += args.interval
            while arrival < now:
                name = names[min(len(names) - 1, bisect.bisect(cumulative, rng.random() * cumulative[-1]))]
                flight.append((arrival + args.duration, rng.choice(self.places[name]), name))
                arrival += rng.expovariate(args.rate)
            flight = [f for f in flight if f[0] > now]
            self.sample(flight, now)
            samples += 1
            if samples % args.plan_every == 0:
                planned, view = self.plan(now)
                moves += planned
                seen.append(view)
        return before, self.peak(), moves, seen

    def unplaced(self) -> int:
        return sum(1 for held in self.places.values() if not held)

    def sample(self, flight: list[tuple[float, str, str]], now: float) -> None:
        by_pod: dict[str, list[str]] = defaultdict(list)
        for _, pod, name in flight:
            by_pod[pod].append(name)
        for pod in self.pods:
            active = by_pod.get(pod, [])
            if self.args.estimate == "oracle":
                shares = {
                    n: self.weight[n] * self.args.rate * self.args.duration / len(held)
                    for n, held in self.places.items()
                    if pod in held
                }
            else:
                shares = reading(set(active), float(len(active)), None, (), self.expected(pod))
            self.estimate.sample(("ns", pod), shares or {}, now)

    def expected(self, pod: str) -> dict[str, float]:
        return {
            n: self.estimate.of_adapter("ns", n) / len(held)
            for n, held in self.places.items()
            if pod in held and self.estimate.of_adapter("ns", n) > 0
        }

    def plan(self, now: float) -> tuple[int, float]:
        movable = {n for n in self.places if now - self.moved.get(n, -1e9) >= self.args.settle}
        states = []
        for pod in self.pods:
            demand = self.expected(pod)
            placed = {n for n, held in self.places.items() if pod in held}
            states.append(
                PodState(
                    name=pod,
                    demand=sum(demand.values()),
                    max_rank=self.limits[pod][0],
                    free_slots=max(0, self.limits[pod][1] - len(placed)),
                    adapters={n: demand.get(n, 0.0) for n in placed & movable},
                    holds=frozenset(placed),
                    elsewhere=frozenset(n for n in placed if len(self.places[n]) > 1),
                )
            )
        mean = sum(s.demand for s in states) / len(states)
        view = max(s.demand for s in states) / mean if mean > 0 else 0.0
        moves = plan_moves(states, self.ranks, self.args.threshold, self.args.moves)
        for move in moves:
            held = self.places[move.adapter]
            held[held.index(move.source)] = move.target
            self.moved[move.adapter] = now
        return len(moves), view


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--skew", type=float, default=0.5)
    parser.add_argument("--rate", type=float, default=115.0, help="completions a second over the whole fleet")
    parser.add_argument("--duration", type=float, default=1.15, help="seconds each request is in flight")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--plan-every", type=int, default=3)
    parser.add_argument("--half-life", type=float, default=30.0)
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--settle", type=float, default=60.0)
    parser.add_argument("--estimate", choices=["names", "oracle"], default="names")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--show", type=int, default=5, help="how many of the last plans to show the view of")
    args = parser.parse_args()
    for seed in range(args.seeds):
        args.seed = 23 + seed
        before, after, moves, seen = Model(args).run()
        tail = ", ".join(f"{v:.2f}" for v in seen[-args.show :])
        print(f"seed {args.seed}: peak/mean {before:.2f} -> {after:.2f}, {moves} moves; the balancer saw ... {tail}")


if __name__ == "__main__":
    main()
