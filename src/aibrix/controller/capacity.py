"""What each pod can hold, as placement's hard constraints: an adapter never goes to a pod whose rank limit is
below its rank, nor to a pod whose adapter slots are all taken. Pure functions; the pass supplies the counts.

Limits come from the pod (``engine_args.PodLimits``: engine arguments, annotations); an adapter's rank from its
status (``status.rank``), learned from the runtime's load answer or from a refusal that names it. A pod that already
holds the adapter, or is being tried for it, keeps its slot: the constraints choose new pods, they never evict. A
rank above a pod's limit rules the pod out even then: it can never load the adapter.
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


Residents = Callable[[str], list[tuple[int, str]]]  # a pod's adapters as (priority, name), lowest priority first
Occupancy = Callable[[str], tuple[int, int]]  # a pod's adapter count and their lowest priority (any when none)


def occupancy_of(residents: Residents) -> Occupancy:
    """Occupancy read from the full listing (``Placements.occupancy`` keeps it without listing)."""

    def occupancy(pod: str) -> tuple[int, int]:
        on_pod = residents(pod)
        return len(on_pod), on_pod[0][0] if on_pod else 0

    return occupancy


def fitting(
    pods: Sequence[Pod],
    rank: int | None,
    occupancy: Occupancy,
    holding: Collection[str],
    priority: int = 0,
    reserved: Callable[[Pod], bool] | None = None,
) -> tuple[list[Pod], dict[str, Unfit]]:
    """The pods that can take the adapter, and why each other one cannot. A pod whose slots are all taken can
    still take it when one of its adapters has a lower priority: that one yields (``preempted``). A pod whose free
    slots are ``reserved`` (for adapters still waiting for their first replica) takes no extra replica."""
    fit: list[Pod] = []
    unfit: dict[str, Unfit] = {}
    for pod in pods:
        limits = pod.limits
        if rank is not None and limits.max_rank is not None and rank > limits.max_rank:
            unfit[pod.name] = Unfit.RANK_TOO_HIGH  # even a pod being tried: it can never load it
        elif pod.name in holding:
            fit.append(pod)
        elif not takeable(pod, priority, occupancy, reserved):
            unfit[pod.name] = Unfit.INSUFFICIENT_CAPACITY
        else:
            fit.append(pod)
    return fit, unfit


def room(pod: Pod, priority: int, occupancy: Occupancy) -> bool:
    """Whether ``pod`` has a free slot, or one an adapter of lower priority than ``priority`` would yield; its
    occupancy is looked up only when it declares slots (most pods do not)."""
    slots = pod.limits.max_adapters
    if slots is None:
        return True
    count, lowest = occupancy(pod.name)
    return count < slots or lowest < priority


def takeable(pod: Pod, priority: int, occupancy: Occupancy, reserved: Callable[[Pod], bool] | None) -> bool:
    """Whether a new replica may take a slot on ``pod``: it has room (``room``), and its free slots are not kept
    for adapters still waiting for their first replica (``reserved``; None for an adapter that holds no pod)."""
    if not room(pod, priority, occupancy):
        return False
    return reserved is None or pod.limits.max_adapters is None or not reserved(pod)


def reserved_for(starving: Collection[int | None]) -> Callable[[Pod], bool]:
    """Whether a pod's free slots are kept for adapters that hold no replica yet and wait for capacity (their ranks
    given, None when unknown): an extra replica must not take a slot one of them could use. Nothing already placed
    is displaced for them; they get the next slot that frees."""

    def reserved(pod: Pod) -> bool:
        limit = pod.limits.max_rank
        return any(rank is None or limit is None or rank <= limit for rank in starving)

    return reserved


def preempted(on_pod: list[tuple[int, str]], slots: int | None, name: str) -> bool:
    """Whether ``name`` must yield its slot on a pod holding more adapters than it has: the lowest-priority ones
    beyond the slots yield, and only to a higher priority (equals never displace each other)."""
    if slots is None or len(on_pod) <= slots:
        return False
    top = max(theirs for theirs, _ in on_pod)
    yielding = [n for theirs, n in on_pod[: len(on_pod) - slots] if theirs < top]
    return name in yielding


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
        said.append(_pods(counts[Unfit.RANK_TOO_HIGH], "lacks", "lack") + f" rank >= {rank}")
    if counts[Unfit.INSUFFICIENT_CAPACITY]:
        said.append(_pods(counts[Unfit.INSUFFICIENT_CAPACITY], "has", "have") + " no free adapter slot")
    reason = counts.most_common(1)[0][0]
    return str(reason), f"{fit} of {want} placeable: {'; '.join(said)}"


def _pods(count: int, one: str, many: str) -> str:
    return f"1 pod {one}" if count == 1 else f"{count} pods {many}"
