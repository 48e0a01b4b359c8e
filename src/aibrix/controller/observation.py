"""What one pass sees before it acts, as one frozen value: the pods that match the adapter's selector, which of them
may take a load, which are still settling, the retry history that still applies, and which recorded instances are
alive, gone, or left somewhere they should not be. ``observe`` is pure: the pass hands it the cache and the status."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from aibrix.controller.capacity import Occupancy, Residents, Unfit, fitting, occupancy_of, preempted
from aibrix.controller.options import Options
from aibrix.controller.pods import Pod
from aibrix.controller.resources import Obj
from aibrix.controller.spec import AdapterSpec
from aibrix.controller.status import Retry
from aibrix.controller.vocabulary import ENABLED_LABEL


@dataclass(frozen=True)
class Observation:
    matching: tuple[Pod, ...]  # pods the selector matches
    candidates: tuple[Pod, ...]  # of those, the ones that may take a load now
    stabilizing: tuple[float, ...]  # seconds until matching, opted-in pods become candidates
    retries: Mapping[str, Retry]  # per pod: the failed attempts that still count
    exhausted: frozenset[str]  # pods whose attempts are spent (cooling down)
    instances: tuple[Pod, ...]  # recorded instances still alive
    gone: tuple[str, ...]  # recorded instances that are gone, not ready or no longer selected
    strays: tuple[Pod, ...]  # of those, pods still reachable: a copy left there must be unloaded
    desired: int
    preempted: tuple[str, ...] = ()  # of the gone, pods where a higher-priority adapter took this one's slot
    rank: int | None = None  # the adapter's rank, as its status knows it
    unfit: Mapping[str, Unfit] = field(default_factory=dict)  # eligible pods that cannot take it, and why
    wanted: int = 0  # spec.replicas, or every eligible pod (fit or not): what the Scheduled condition counts against
    extra: bool = False  # it holds, or is still being tried on, a pod it keeps: a new replica is an extra one
    by_name: Mapping[str, Pod] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", MappingProxyType({p.name: p for p in self.matching}))


def observe(
    spec: AdapterSpec,
    status: Obj,
    pods: Sequence[Pod],
    now: float,
    options: Options,
    residents: Residents = lambda pod: [],
    occupancy: Occupancy | None = None,
    reserved: Callable[[Pod], bool] | None = None,
) -> Observation:
    """The adapter's world as the caches and its status describe it; ``pods`` are all pods of its namespace,
    ``residents`` the adapters placed on a pod with their priorities, ``occupancy`` their count and lowest priority,
    ``reserved`` whether a pod's free slots wait for other adapters' first replicas (controller/capacity.py): it
    applies only to an adapter that already holds or is trying a pod."""
    matching = tuple(p for p in pods if spec.selector.matches(p.labels))
    by_name = {p.name: p for p in matching}
    eligible = [p for p in matching if p.eligible(now, options.stability)]
    names = {p.name for p in eligible}
    stabilizing = tuple(
        options.stability - (now - (p.ready_since or 0))
        for p in matching
        if p.alive() and p.name not in names and p.labels.get(ENABLED_LABEL) == "true"
    )
    retries = _retries(status, by_name, now, options)
    rank = status.get("rank") if isinstance(status.get("rank"), int) else None
    holding = set(status.get("instances") or []) | set(retries)
    exhausted = frozenset(n for n, e in retries.items() if e.spent(options.max_retries))
    yielded = {
        p.name
        for p in eligible
        if p.name in holding
        and p.limits.max_adapters is not None
        and preempted(residents(p.name), p.limits.max_adapters, spec.name)
    }
    extra = bool((set(status.get("instances") or []) | (set(retries) - exhausted)) - yielded)
    fit, unfit = fitting(
        eligible,
        rank,
        occupancy or occupancy_of(residents),
        holding - yielded,
        spec.priority,
        reserved if extra else None,
    )
    candidates = tuple(p for p in fit if p.name not in yielded)
    unfit.update({name: Unfit.INSUFFICIENT_CAPACITY for name in yielded})
    everywhere = {p.name: p for p in pods}
    instances, gone, strays, preempted_on = [], [], [], []
    for pod_name in status.get("instances") or []:
        pod = by_name.get(pod_name)
        if pod is not None and pod.alive() and pod_name not in yielded:
            instances.append(pod)
            continue
        gone.append(pod_name)
        stray = everywhere.get(pod_name)
        if pod_name in yielded:
            preempted_on.append(pod_name)
        if stray is not None and stray.reachable():
            strays.append(stray)  # the selector changed, or the pod is not ready: a copy would come back untracked
    return Observation(
        matching=matching,
        candidates=candidates,
        stabilizing=stabilizing,
        retries=MappingProxyType(retries),
        exhausted=exhausted,
        instances=tuple(instances),
        gone=tuple(gone),
        strays=tuple(strays),
        preempted=tuple(preempted_on),
        desired=spec.replicas if spec.replicas is not None else len(candidates),
        rank=rank,
        unfit=MappingProxyType(unfit),
        wanted=spec.replicas if spec.replicas is not None else len(eligible),
        extra=extra,
    )


def _retries(status: Obj, by_name: Mapping[str, Pod], now: float, options: Options) -> dict[str, Retry]:
    """The recorded retry history that still applies: its pod is the same pod, and it has not cooled down."""
    kept: dict[str, Retry] = {}
    for raw in status.get("retries") or []:
        entry = Retry.from_status(raw)
        pod = by_name.get(entry.pod)
        if pod is None or pod.uid != entry.pod_uid:
            continue  # the pod is gone or was replaced: its history does not apply
        if entry.spent(options.max_retries) and entry.next_attempt <= now:
            continue  # cooled down: the pod gets a fresh set of retries
        kept[entry.pod] = entry
    return kept
