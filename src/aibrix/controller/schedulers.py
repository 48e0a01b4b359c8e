"""Policies that pick which pods get an adapter.

- ``default``: rendezvous hashing of (adapter, pod). Stable (an adapter keeps landing on the same pods while they
  exist), spread evenly on average, and free of shared state, so many adapters can be placed at once.
- ``least-adapters``: the pods holding the fewest adapters, counting placements made a moment ago and not yet
  visible in any status, so 200 adapters created together do not all pile onto one pod.
- ``least-load``: the pods with the fewest running plus waiting requests, then the emptiest KV cache, read from
  the pods' standardized ``aibrix:`` metrics (the runtime's /metrics, or the engine's through the same rules).
- ``balanced``: the pods with the least estimated adapter demand (controller/demand.py), then the fewest adapters;
  the balancer (controller/balancer.py) later moves a few adapters off pods well above the mean.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aibrix.metrics import read_standard

if TYPE_CHECKING:
    from aibrix.controller.pods import Pod

MetricsFetcher = Callable[["Pod"], Awaitable[str | None]]
UNKNOWN_LOAD = (float("inf"), float("inf"))


def _rendezvous(adapter: str, pod: Pod) -> bytes:
    return hashlib.blake2b(f"{adapter}/{pod.name}".encode(), digest_size=8).digest()


def by_hash(adapter: str, pods: Sequence[Pod], count: int) -> list[Pod]:
    return sorted(pods, key=lambda pod: _rendezvous(adapter, pod))[:count]


def by_fewest_adapters(adapter: str, pods: Sequence[Pod], count: int, adapters_on: Callable[[str], int]) -> list[Pod]:
    return sorted(pods, key=lambda pod: (adapters_on(pod.name), _rendezvous(adapter, pod)))[:count]


def load_of(engine: str, payload: str | None) -> tuple[float, float]:
    """(requests running + waiting, KV cache use) from a metrics page; unknown sorts last."""
    if not payload:
        return UNKNOWN_LOAD
    try:
        values = read_standard(engine, payload)
    except ValueError:
        return UNKNOWN_LOAD
    running, waiting = values.get("aibrix:num_requests_running"), values.get("aibrix:num_requests_waiting")
    cache = values.get("aibrix:kv_cache_usage_perc")
    if cache is None:
        cache = values.get("aibrix:gpu_cache_usage_perc")
    if running is None and waiting is None:
        return UNKNOWN_LOAD
    return (running or 0.0) + (waiting or 0.0), cache if cache is not None else 1.0


async def by_least_load(
    adapter: str, pods: Sequence[Pod], count: int, fetch: MetricsFetcher, adapters_on: Callable[[str], int]
) -> list[Pod]:
    """Least loaded first; among equally loaded pods, the one holding fewest adapters (so a burst spreads)."""
    payloads = await asyncio.gather(*(fetch(pod) for pod in pods))
    loads = {pod.name: load_of(pod.engine, payload) for pod, payload in zip(pods, payloads, strict=True)}
    return sorted(pods, key=lambda pod: (loads[pod.name], adapters_on(pod.name), _rendezvous(adapter, pod)))[:count]


@dataclass(frozen=True)
class Placement:
    """What a policy is asked: ``count`` pods out of ``pods`` for ``adapter``."""

    adapter: str
    pods: Sequence[Pod]
    count: int
    adapters_on: Callable[[str], int]  # adapters held or being loaded on a pod, by name
    fetch: MetricsFetcher  # a pod's metrics page
    demand_on: Callable[[str], float] = lambda pod: 0.0  # a pod's estimated adapter demand, by name


async def _default(p: Placement) -> list[Pod]:
    return by_hash(p.adapter, p.pods, p.count)


async def _least_adapters(p: Placement) -> list[Pod]:
    return by_fewest_adapters(p.adapter, p.pods, p.count, p.adapters_on)


async def _least_load(p: Placement) -> list[Pod]:
    return await by_least_load(p.adapter, p.pods, p.count, p.fetch, p.adapters_on)


async def _balanced(p: Placement) -> list[Pod]:
    return sorted(
        p.pods, key=lambda pod: (p.demand_on(pod.name), p.adapters_on(pod.name), _rendezvous(p.adapter, pod))
    )[: p.count]


# The one table of placement policies: spec.schedulerName names one (the CRD's enum lists the same names;
# tests/test_registries.py checks).
POLICIES: dict[str, Callable[[Placement], Awaitable[list[Pod]]]] = {
    "default": _default,
    "least-adapters": _least_adapters,
    "least-load": _least_load,
    "balanced": _balanced,
}
