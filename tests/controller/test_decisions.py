"""The controller's decisions as tables: what a pass observes, which pods keep, retry or get an adapter, what a failed
load costs a pod, and the phase the adapter settles in. Pure functions, no API server, milliseconds."""

from __future__ import annotations

import pytest

from aibrix.controller.loader import LoadError, Outcome
from aibrix.controller.observation import observe
from aibrix.controller.options import Options
from aibrix.controller.pods import Pod
from aibrix.controller.spec import AdapterSpec, parse_spec
from aibrix.controller.status import ConditionStatus, Phase, Retry
from aibrix.controller.transitions import after_failure, due, failure_news, plan_replicas, settle, still_serving

NOW = 1_000_000.0
OPTIONS = Options()  # 5 retries, backoff 5 s doubling, 5 s stability


def pod(name: str, *, ready: float | None = 60, app: str = "m", enabled: bool = True, **fields: object) -> Pod:
    """A pod Ready for ``ready`` seconds (None: not Ready) with the adapter opt-in label unless ``enabled`` is off."""
    labels = {"app": app} | ({"adapter.model.aibrix.ai/enabled": "true"} if enabled else {})
    since = None if ready is None else NOW - ready
    values: dict = {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": labels, "ip": "10.0.0.1"}
    values |= {"ready_since": since, "terminating": False, "engine_port": 8000, "runtime_port": 8080, "engine": "vllm"}
    return Pod(**(values | fields))


def spec(replicas: int | None = None) -> AdapterSpec:
    body = {"baseModel": "m", "podSelector": {"matchLabels": {"app": "m"}}, "artifactURL": "s3://b/a"}
    if replicas is not None:
        body["replicas"] = replicas
    return parse_spec({"metadata": {"name": "lora", "namespace": "default"}, "spec": body})


def retry(pod_name: str, attempts: int, next_in: float = 5.0, uid: str | None = None) -> dict:
    entry = Retry(pod_name, uid or f"uid-{pod_name}", attempts, "boom", NOW - 1, NOW + next_in)
    return dict(entry.to_status())


def names(pods: object) -> list[str]:
    return [p.name for p in pods]  # type: ignore[attr-defined]


def test_observe_sorts_pods_into_candidates_settling_and_the_rest() -> None:
    pods = [pod("a"), pod("fresh", ready=2), pod("off", enabled=False), pod("other", app="x"), pod("down", ready=None)]
    seen = observe(spec(), {}, pods, NOW, OPTIONS)
    assert names(seen.matching) == ["a", "fresh", "off", "down"]
    assert names(seen.candidates) == ["a"]
    assert seen.stabilizing == (3.0,)  # "fresh" becomes a candidate in 3 s; "off" never will
    assert seen.desired == 1  # replicas omitted: every candidate


@pytest.mark.parametrize(
    ("recorded", "kept"),
    [
        ([retry("a", 2)], {"a": 2}),  # still counting
        ([retry("a", 2, uid="uid-old")], {}),  # the pod was replaced: its history does not apply
        ([retry("gone", 2)], {}),  # the pod is gone
        ([retry("a", 5, next_in=10)], {"a": 5}),  # spent, cooling down
        ([retry("a", 5, next_in=-1)], {}),  # cooled down: a fresh set of retries
    ],
)
def test_observe_keeps_the_retry_history_that_still_applies(recorded: list, kept: dict) -> None:
    seen = observe(spec(), {"retries": recorded}, [pod("a")], NOW, OPTIONS)
    assert {n: e.attempts for n, e in seen.retries.items()} == kept
    assert seen.exhausted == {n for n, a in kept.items() if a >= 5}


def test_observe_tells_live_instances_from_gone_ones_and_copies_left_behind() -> None:
    pods = [pod("live"), pod("unselected", app="x"), pod("going", terminating=True), pod("down", ready=None)]
    status = {"instances": ["live", "unselected", "going", "down", "vanished"]}
    seen = observe(spec(), status, pods, NOW, OPTIONS)
    assert names(seen.instances) == ["live"]
    assert seen.gone == ("unselected", "going", "down", "vanished")
    assert names(seen.strays) == ["unselected", "down"]  # reachable: a copy there would come back untracked


@pytest.mark.parametrize(
    ("held", "kept", "lost"),
    [
        ([{"lora"}, {"lora", "x"}], ["a", "b"], []),
        ([{"x"}, {"lora"}], ["b"], ["a"]),  # a restarted engine lost it
        ([None, set()], ["a"], ["b"]),  # an unreadable listing is not a lost adapter
    ],
)
def test_still_serving(held: list, kept: list[str], lost: list[str]) -> None:
    still, gone = still_serving([pod("a"), pod("b")], held, "lora")
    assert (names(still), names(gone)) == (kept, lost)


@pytest.mark.parametrize(
    ("replicas", "instances", "retries", "lost", "want"),
    [
        # replicas, instances, recorded retries, lost, (keep, extra, retrying, first, pool, need)
        (None, ["a", "b", "c"], [], [], (["a", "b", "c"], [], [], [], [], 0)),
        (None, ["a"], [], [], (["a"], [], [], [], ["b", "c"], 2)),
        (2, ["a", "b", "c"], [], [], (["a", "b"], ["c"], [], [], [], 0)),
        (2, [], [retry("b", 1)], [], ([], [], ["b"], [], ["a", "c"], 1)),
        (2, [], [retry("b", 5)], [], ([], [], [], [], ["a", "c"], 2)),  # spent pods are not chosen again
        (1, [], [], ["c"], ([], [], [], ["c"], ["a", "b"], 0)),  # an engine that lost the adapter gets it back first
    ],
)
def test_plan_replicas(replicas: int | None, instances: list, retries: list, lost: list, want: tuple) -> None:
    pods = {n: pod(n) for n in "abc"}
    seen = observe(spec(replicas), {"retries": retries}, list(pods.values()), NOW, OPTIONS)
    plan = plan_replicas(seen, replicas, [pods[n] for n in instances], [pods[n] for n in lost])
    got = (names(plan.keep), names(plan.extra), names(plan.retrying), names(plan.first), names(plan.pool), plan.need)
    assert got == want


def test_only_pods_whose_backoff_passed_are_due() -> None:
    waiting = Retry("b", "uid-b", 1, "boom", NOW, NOW + 5)
    passed = Retry("c", "uid-c", 1, "boom", NOW - 10, NOW - 1)
    assert names(due([pod("a"), pod("b"), pod("c")], {"b": waiting, "c": passed}, NOW)) == ["a", "c"]


@pytest.mark.parametrize(
    ("attempts", "outcome", "after", "wait", "reason"),
    [
        (0, Outcome.RETRY, 1, 5.0, "RetryScheduled"),
        (3, Outcome.RETRY, 4, 40.0, "RetryScheduled"),
        (4, Outcome.RETRY, 5, 160.0, "MaxRetriesExceeded"),  # spent: cool down, try other pods meanwhile
        (0, Outcome.FAILOVER, 5, 160.0, "MaxRetriesExceeded"),  # this pod cannot: go elsewhere at once
    ],
)
def test_a_failed_load_costs_the_pod_attempts(
    attempts: int, outcome: Outcome, after: int, wait: float, reason: str
) -> None:
    previous = Retry("a", "uid-a", attempts, "", 0, 0) if attempts else None
    entry = after_failure(previous, pod("a"), LoadError("refused", outcome), NOW, OPTIONS)
    assert (entry.attempts, entry.next_attempt - NOW) == (after, wait)
    news = failure_news("a", entry, "refused", NOW, OPTIONS)
    assert news[0] == reason and "refused" in news[1]


@pytest.mark.parametrize(
    ("instances", "desired", "retries", "candidates", "fatal", "phase", "reason"),
    [
        (2, 2, {}, ["a", "b"], None, Phase.RUNNING, "ModelAdapterAvailable"),
        (1, 2, {"b": 1}, ["a", "b"], None, Phase.RUNNING, "ModelAdapterAvailable"),
        (0, 1, {}, ["a"], "no such file", Phase.FAILED, "LoadFailed"),
        (0, 1, {"a": 2}, ["a"], None, Phase.LOADING, "Loading"),
        (0, 1, {"a": 5}, ["a"], None, Phase.PENDING, "NoPodAvailable"),  # passing errors: no verdict
        (0, 1, {"a": 5}, ["a", "b"], None, Phase.PENDING, "Scheduling"),  # "b" is still to be tried
        (0, 1, {}, ["a"], None, Phase.PENDING, "Scheduling"),  # another pod refused its rank: "a" is next
        (0, 0, {}, [], None, Phase.PENDING, "NoCandidatePods"),
    ],
)
def test_settle(
    instances: int, desired: int, retries: dict, candidates: list, fatal: str | None, phase: Phase, reason: str
) -> None:
    entries = {n: Retry(n, f"uid-{n}", a, "boom", NOW, NOW + 160) for n, a in retries.items()}
    verdict = settle("default/lora", instances, desired, entries, [pod(n) for n in candidates], fatal, NOW, OPTIONS)
    assert (verdict.phase, verdict.ready[1]) == (phase, reason)
    assert (verdict.ready[0] is ConditionStatus.TRUE) == (phase is Phase.RUNNING)
    assert verdict.unbound == (instances == 0)
    assert (verdict.hold_until is not None) == (fatal is not None)
    if instances and instances < desired:
        assert f"on {instances} of {desired} pods" in verdict.ready[2]


@pytest.mark.parametrize(
    ("status", "versions"),
    [
        ({}, {"a": "v2", "b": "v2"}),  # nothing recorded: what the spec asks for
        ({"artifactURL": "v1"}, {"a": "v1", "b": "v1"}),  # recorded before versions were kept per pod
        ({"artifactURL": "v1", "artifactDigest": "sha256:1"}, {"a": "sha256:1", "b": "sha256:1"}),
        ({"artifactURL": "v1", "instanceVersions": {"a": "v2"}}, {"a": "v2", "b": "v1"}),  # mid-rollout
    ],
)
def test_each_instance_holds_the_version_its_status_records(status: dict, versions: dict) -> None:
    from aibrix.controller.rollout import instance_versions

    assert instance_versions(status, [pod("a"), pod("b")], "v2") == versions


def test_stale_instances_roll_through_runtimes_and_reload_without_one() -> None:
    from aibrix.controller.rollout import stale_instances, version_of

    assert version_of("s3://b/k", None) == "s3://b/k" and version_of("s3://b/k", "sha256:1") == "sha256:1"
    pods = [pod("a"), pod("b", runtime_port=None), pod("c")]
    rolling, reloading = stale_instances(
        pods, {"a": "v1", "b": "v1", "c": "v2"}, "v2", lambda p: p.runtime_port is not None
    )
    assert (names(rolling), names(reloading)) == (["a"], ["b"])


def limited(name: str, rank: int | None = None, slots: int | None = None) -> Pod:
    from aibrix.controller.engine_args import PodLimits

    return pod(name, limits=PodLimits(rank, slots))


@pytest.mark.parametrize(
    "rank, priority, on_pod, holding, fit, unfit",
    [
        (64, 0, [], set(), ["r64"], {"r8": "RankTooHigh"}),  # a rank limit below the adapter's: never chosen
        (None, 0, [], set(), ["r8", "r64"], {}),  # rank not known yet: both may be tried
        (8, 0, [(0, "a"), (0, "b")], set(), ["r8"], {"r64": "InsufficientCapacity"}),  # two slots, both taken
        (8, 0, [(0, "a"), (0, "b")], {"r64"}, ["r8", "r64"], {}),  # holding it already: it stays
        (64, 0, [], {"r8"}, ["r64"], {"r8": "RankTooHigh"}),  # being tried there does not beat the rank limit
        (8, 5, [(0, "a"), (7, "b")], set(), ["r8", "r64"], {}),  # a lower priority there yields its slot
        (8, 0, [(0, "a"), (7, "b")], set(), ["r8"], {"r64": "InsufficientCapacity"}),  # equals never displace
    ],
)
def test_capacity_keeps_off_pods_that_cannot_hold_the_adapter(rank, priority, on_pod, holding, fit, unfit):
    from aibrix.controller.capacity import fitting, occupancy_of

    pods = [limited("r8", rank=8), limited("r64", rank=64, slots=2)]
    chosen, refused = fitting(pods, rank, occupancy_of(lambda name: on_pod if name == "r64" else []), holding, priority)
    assert [p.name for p in chosen] == fit and refused == unfit


@pytest.mark.parametrize(
    "on_pod, slots, yields",
    [
        ([(0, "low"), (10, "high")], 1, {"low"}),
        ([(0, "b"), (0, "a"), (10, "high")], 2, {"b"}),  # among equals the name sorting last yields
        ([(0, "a"), (0, "b")], 1, set()),  # slots lowered under equals: nobody is displaced
        ([(0, "a"), (10, "high")], 2, set()),  # room for both
        ([(0, "a"), (10, "high")], None, set()),  # no declared slots
    ],
)
def test_the_lowest_priority_beyond_the_slots_yields(on_pod, slots, yields):
    from aibrix.controller.capacity import preempted

    assert {name for _, name in on_pod if preempted(on_pod, slots, name)} == yields


def test_the_shortfall_says_how_many_and_why() -> None:
    from aibrix.controller.capacity import Unfit, shortfall

    unfit = {"a": Unfit.RANK_TOO_HIGH, "b": Unfit.RANK_TOO_HIGH, "c": Unfit.INSUFFICIENT_CAPACITY}
    assert shortfall(5, 2, unfit, 64) == (
        "RankTooHigh",
        "2 of 5 placeable: 2 pods lack rank >= 64; 1 pod has no free adapter slot",
    )
    assert shortfall(2, 2, unfit, 64) is None
    assert shortfall(3, 1, {}, None) == (
        "NoCandidatePods",
        "1 of 3 placeable: no other Ready pod matches spec.podSelector",
    )


def test_a_pods_occupancy_follows_arrivals_departures_and_priority_changes() -> None:
    """The slot check reads (count, lowest priority) without listing a pod's adapters; the kept lowest priority
    must change as adapters come, go or change priority, or a full pod would be wrongly open or closed."""
    from aibrix.controller.metrics import ControllerMetrics
    from aibrix.controller.placements import Placements

    places = Placements(ControllerMetrics())
    assert places.occupancy("ns", "p") == (0, 0)
    places.assign(("ns", "low"), {"p"}, -5)
    places.assign(("ns", "high"), {"p", "q"}, 10)
    assert places.occupancy("ns", "p") == (2, -5)
    assert places.occupancy("ns", "q") == (1, 10)
    places.assign(("ns", "low"), {"p"}, 20)  # reprioritized in place
    assert places.occupancy("ns", "p") == (2, 10)
    places.assign(("ns", "high"), {"q"})  # leaves p
    assert places.occupancy("ns", "p") == (1, 20)
    places.forget(("ns", "low"))
    assert places.occupancy("ns", "p") == (0, 0)


def test_a_restarted_controller_counts_no_slot_for_a_pod_given_up_on() -> None:
    """The placements are seeded from the statuses: a pod with attempts left is being tried and keeps its slot; a
    pod whose attempts are spent (it refused the rank) holds nothing and must not look full to the next adapter."""
    from aibrix.controller.metrics import ControllerMetrics
    from aibrix.controller.placements import Placements

    retries = [{"pod": "refused", "attempts": 5}, {"pod": "trying", "attempts": 2}]
    places = Placements(ControllerMetrics())
    places.seed({("ns", "a"): {"status": {"instances": ["held"], "retries": retries}}}, max_retries=5)
    assert places.pods_of(("ns", "a")) == {"held", "trying"}
    assert places.occupancy("ns", "refused") == (0, 0)


@pytest.mark.parametrize(
    "rank, limits, need",
    [
        (None, (8, 64, 64), 1),  # rank unknown, limits differ: one load first tells the rank
        (None, (16, 16, 16), 3),  # every pod takes the same ranks: nothing to learn first
        (8, (8, 64, 64), 3),  # rank known: place them all
    ],
)
def test_an_adapter_of_unknown_rank_loads_once_before_spreading(rank, limits, need) -> None:
    pods = [limited(f"p{i}", rank=limit) for i, limit in enumerate(limits)]
    seen = observe(spec(3), {"rank": rank} if rank else {}, pods, NOW, OPTIONS)
    assert plan_replicas(seen, 3, [], []).need == need


def test_a_status_patch_removes_what_the_new_status_no_longer_has() -> None:
    """A merge patch carrying a whole map keeps the keys it lacks: instanceVersions kept pods the adapter had left,
    and every pass wrote the status again. The patch names removed keys as null, nested ones too."""
    from aibrix.controller.writes import merge_patch

    old = {"phase": "Running", "instanceVersions": {"a": "v1", "b": "v1"}, "rank": 8, "retries": [{"pod": "a"}]}
    new = {"phase": "Running", "instanceVersions": {"b": "v2"}, "retries": []}
    assert merge_patch(old, new) == {"instanceVersions": {"a": None, "b": "v2"}, "rank": None, "retries": []}
    assert merge_patch(new, new) == {}


def test_free_slots_wait_for_first_replicas_before_extra_ones() -> None:
    """An adapter that already holds a pod takes no free slot another adapter still waiting for its first replica
    could use; a first replica takes it. Nothing placed is displaced, and a waiting rank-64 adapter keeps nothing
    on a rank-8 pod it could never use."""
    from aibrix.controller.capacity import reserved_for

    pods = [limited("r8", rank=8, slots=4), limited("r64", rank=64, slots=4), limited("open", rank=64)]
    extra = observe(spec(3), {"instances": ["r64"], "rank": 8}, pods, NOW, OPTIONS, reserved=reserved_for([64]))
    assert names(extra.candidates) == ["r8", "r64", "open"]  # held, rank-8 useless to it, no slots declared
    extra = observe(spec(3), {"instances": ["open"], "rank": 8}, pods, NOW, OPTIONS, reserved=reserved_for([None]))
    assert names(extra.candidates) == ["open"] and extra.unfit == {
        "r8": "InsufficientCapacity",
        "r64": "InsufficientCapacity",
    }
    first = observe(spec(3), {"rank": 8}, pods, NOW, OPTIONS, reserved=reserved_for([None]))
    assert names(first.candidates) == ["r8", "r64", "open"]


def test_an_adapter_whose_only_pod_went_to_a_higher_priority_seeks_a_first_replica_not_an_extra_one() -> None:
    """Being tried on a pod whose slot a higher-priority adapter took holds nothing: the adapter is placed as a
    first replica (it may take a slot kept for first replicas), not as an extra one."""
    from aibrix.controller.capacity import reserved_for
    from aibrix.controller.status import Retry

    pods = [limited("full", rank=64, slots=1), limited("free", rank=64, slots=2)]
    tried = Retry("full", "uid-full", 1, "refused", NOW - 1, NOW + 5).to_status()
    residents = {"full": [(0, "lora"), (10, "high")]}
    seen = observe(
        spec(1), {"retries": [tried]}, pods, NOW, OPTIONS, lambda p: residents.get(p, []), None, reserved_for([None])
    )
    assert not seen.extra and names(seen.candidates) == ["free"]
    kept = observe(spec(2), {"instances": ["free"], "retries": [tried]}, pods, NOW, OPTIONS, lambda p: [])
    assert kept.extra


def test_an_adapter_whose_only_pod_refused_its_rank_seeks_a_first_replica_not_an_extra_one() -> None:
    """A pod given up on (it refused the rank, or its retries are spent) holds nothing: the adapter may still take a
    slot kept for first replicas. Before, the refusal counted as holding a pod, and the adapter stayed without any
    replica behind the very adapters it was waiting like."""
    from aibrix.controller.capacity import reserved_for

    pods = [limited("r8", rank=8, slots=4), limited("r64", rank=64, slots=4)]
    refused = retry("r8", OPTIONS.max_retries, next_in=300)
    seen = observe(spec(1), {"retries": [refused], "rank": 64}, pods, NOW, OPTIONS, reserved=reserved_for([None]))
    assert not seen.extra and names(seen.candidates) == ["r64"] and seen.unfit == {"r8": "RankTooHigh"}
    trying = observe(
        spec(2), {"retries": [retry("r64", 1)], "rank": 64}, pods, NOW, OPTIONS, reserved=reserved_for([None])
    )
    assert trying.extra  # a pod still being tried is one the adapter keeps


def test_a_pod_chosen_for_an_extra_replica_is_checked_again_against_the_slots_kept_back() -> None:
    """Between observing and choosing, another adapter may start waiting for its first replica: the pass checks the
    chosen pod again with the same rule, so an extra replica never takes the slot kept for it."""
    from aibrix.controller.capacity import reserved_for, takeable

    slotted, open_pod = limited("r8", rank=8, slots=4), limited("open", rank=64)
    empty = lambda pod: (1, 0)  # noqa: E731
    full = lambda pod: (4, 0)  # noqa: E731
    assert takeable(slotted, 0, empty, None)  # a first replica takes a free slot
    assert not takeable(slotted, 0, empty, reserved_for([None]))  # an extra one leaves it to the waiting adapter
    assert takeable(slotted, 0, empty, reserved_for([64]))  # ...unless the waiting one could never use this pod
    assert takeable(open_pod, 0, empty, reserved_for([None]))  # a pod without declared slots is never short
    assert not takeable(slotted, 0, full, None)
    assert takeable(slotted, 1, full, None)  # a higher priority takes the slot of a lower one


def test_counts_that_move_as_pods_fill_are_not_a_change_of_condition() -> None:
    """The status write waits for a real change (or a resync interval) when only the numbers in a message moved;
    a new reason or status is a change at once."""
    from aibrix.controller.status import messages_only

    def scheduled(status: str, reason: str, message: str) -> dict:
        return {"type": "Scheduled", "status": status, "reason": reason, "message": message,
                "lastTransitionTime": "2026-12-03T10:00:00Z", "observedGeneration": 1}  # fmt: skip

    short = scheduled("False", "InsufficientCapacity", "1 of 3 placeable: 18 pods have no free adapter slot")
    fuller = scheduled("False", "InsufficientCapacity", "1 of 3 placeable: 19 pods have no free adapter slot")
    assert messages_only([short], [fuller])
    assert not messages_only([short], [scheduled("False", "RankTooHigh", fuller["message"])])
    assert not messages_only([scheduled("True", "Scheduled", "selected")], [short])
    assert not messages_only([], [short])
