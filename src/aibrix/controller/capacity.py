"""What each pod can hold, as placement's hard constraints: an adapter never goes to a pod whose rank limit is
below its rank, nor to a pod whose adapter slots are all taken. Pure functions; the pass supplies the counts.

Limits come from the pod (``engine_args.PodLimits``: engine arguments, annotations); an adapter's rank from its
status (``status.rank``), learned from the runtime's load answer or from a refusal that names it. A pod that already
holds the adapter, or is being tried for it, stays fit: the constraints choose new pods, they never evict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from enum import StrEnum

from aibrix.controller.pods import Pod


class Unfit(StrEnum):
    """Why a candidate pod cannot take the adapter (the Scheduled condition's reasons)."""

    RANK_TOO_HIGH = "RankTooHigh"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"


def fitting(
    pods: Sequence[Pod], rank: int | None, adapters_on: Callable[[str], int], holding: Collection[str]
) -> tuple[list[Pod], dict[str, Unfit]]:
    """The pods that can take the adapter, and why each other one cannot."""
    fit: list[Pod] = []
    unfit: dict[str, Unfit] = {}
    for pod in pods:
        limits = pod.limits
        if pod.name in holding:
            fit.append(pod)
        elif rank is not None and limits.max_rank is not None and rank > limits.max_rank:
            unfit[pod.name] = Unfit.RANK_TOO_HIGH
        elif limits.max_adapters is not None and adapters_on(pod.name) >= limits.max_adapters:
            unfit[pod.name] = Unfit.INSUFFICIENT_CAPACITY
        else:
            fit.append(pod)
    return fit, unfit


def shortfall(want: int, fit: int, unfit: Mapping[str, Unfit], rank: int | None) -> tuple[str, str] | None:
    """The Scheduled=False reason and message when fewer pods can take the adapter than it wants, else None:
    "2 of 5 placeable: 3 pods lack rank >= 64"."""
    if fit >= want:
        return None
    counts = Counter(unfit.values())
    if not counts:
        return "NoCandidatePods", f"{fit} of {want} placeable: no other Ready pod matches spec.podSelector"
    said = []
    if counts[Unfit.RANK_TOO_HIGH]:
        said.append(f"{_pods(counts[Unfit.RANK_TOO_HIGH])} lack rank >= {rank}")
    if counts[Unfit.INSUFFICIENT_CAPACITY]:
        said.append(f"{_pods(counts[Unfit.INSUFFICIENT_CAPACITY])} have no free adapter slot")
    reason = counts.most_common(1)[0][0]
    return str(reason), f"{fit} of {want} placeable: {'; '.join(said)}"


def _pods(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"
