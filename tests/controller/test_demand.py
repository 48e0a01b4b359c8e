"""Demand estimation and the moves that even it out (controller/demand.py): pure, milliseconds."""

from __future__ import annotations

import pytest

from aibrix.controller.demand import DemandEstimator, Move, PodState, plan_moves, reading, split
from aibrix.metrics.lora import active_adapters, newest_lora_info, sglang_pool_used


def test_a_pods_requests_are_split_over_the_adapters_active_there_and_fade_when_they_stop() -> None:
    est = DemandEstimator(half_life=10.0)
    est.sample(("ns", "p"), split({"a", "b"}, 6.0), now=0.0)
    assert est.on_pod(("ns", "p")) == {"a": 3.0, "b": 3.0}
    est.sample(("ns", "q"), split({"a"}, 0.0), now=0.0)  # active with no count read: at least one request
    assert est.of_adapter("ns", "a") == 4.0 and est.of_adapter("ns", "b") == 3.0
    est.sample(("ns", "p"), split(set(), 0.0), now=0.1)  # the second sample counts as much as the first
    assert est.on_pod(("ns", "p")) == pytest.approx({"a": 1.5, "b": 1.5})
    est.sample(("ns", "p"), split({"a", "b"}, 6.0), now=0.2)
    est.sample(("ns", "p"), split(set(), 0.0), now=10.2)  # later, one half-life weighs as much as the past
    assert est.on_pod(("ns", "p")) == pytest.approx({"a": 1.0, "b": 1.0})
    est.sample(("ns", "p"), split(set(), 0.0), now=200.0)
    assert est.on_pod(("ns", "p")) == {} and est.of_adapter("ns", "b") == 0.0
    est.forget(("ns", "q"))
    assert est.of_adapter("ns", "a") == 0.0


def test_a_hot_adapter_active_beside_a_cold_one_gets_the_larger_share_once_the_estimate_knows_it() -> None:
    """vLLM names the active adapters only. Split evenly, a hot adapter (5 requests) that shares a pod with a cold
    one (half a request on average) looks like 4 and 1.5; weighted by what the estimate already knows, like 5 and
    0.5, and the balancer moves by these numbers."""
    assert split({"a", "b"}, 1.0, {"a": 5.0}) == {"a": 1.0, "b": 1.0}  # each active one has one at least
    shares = split({"hot", "cold"}, 10.0, {"hot": 8.0, "cold": 0.1})
    assert shares["hot"] > 8.5 and shares["cold"] < 1.1 and sum(shares.values()) == pytest.approx(10.0)
    estimates = {}
    for weighted in (False, True):
        est, pod_ = DemandEstimator(half_life=10.0), ("ns", "p")
        for t in range(60):  # the cold one is active in every other sample, with one request
            active, requests = ({"hot", "cold"}, 6.0) if t % 2 else ({"hot"}, 5.0)
            est.sample(pod_, split(active, requests, est.on_pod(pod_) if weighted else None), now=float(t))
        estimates[weighted] = est.on_pod(pod_)
    assert estimates[False]["hot"] < 4.0 and estimates[False]["cold"] > 1.5
    assert estimates[True]["hot"] > 4.7 and estimates[True]["cold"] < 0.8


def test_the_active_adapters_come_from_the_newest_vllm_series_or_the_runtimes_gauge() -> None:
    vllm = (
        'vllm:lora_requests_info{max_lora="4",running_lora_adapters="a,b",waiting_lora_adapters="a,b"} 100.0\n'
        'vllm:lora_requests_info{max_lora="4",running_lora_adapters="c",waiting_lora_adapters="c"} 200.0\n'
        'vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 50.0\n'
    )
    assert active_adapters(vllm) == {"c"}
    # a page with exposition timestamps after the values (a federating scrape): still the newest value, and the
    # runtime keeps the same series when it drops the others
    stamped = "".join(line + " 1700000000000\n" for line in vllm.splitlines())
    assert active_adapters(stamped) == {"c"}
    kept = newest_lora_info(stamped.encode()).decode()
    assert kept.count("lora_requests_info") == 1 and 'running_lora_adapters="c"' in kept
    runtime = (
        "# TYPE aibrix:lora_adapter_requests_active gauge\n"
        'aibrix:lora_adapter_requests_active{lora_name="x",state="running"} 1\n'
        'aibrix:lora_adapter_requests_active{lora_name="y",state="waiting"} 1\n'
    )
    assert active_adapters(runtime) == {"x", "y"}
    assert active_adapters("# TYPE aibrix:lora_adapter_requests_active gauge\n") == frozenset()
    assert active_adapters("vllm:num_requests_running 3\n") is None  # says nothing about adapters


def test_sglang_counts_the_adapters_of_its_batch_and_its_requests_are_split_over_those_placed_there() -> None:
    page = (
        "# TYPE sglang:lora_pool_slots_used gauge\n"
        'sglang:lora_pool_slots_used{model_name="base",engine_type="unified",tp_rank="0",dp_rank="0"} 2.0\n'
        'sglang:num_running_reqs{model_name="base"} 5.0\n'
    )
    assert sglang_pool_used(page) == 2
    assert sglang_pool_used(page + 'sglang:lora_pool_slots_used{dp_rank="1"} 1.0 1700000000000\n') == 3  # stamped
    assert sglang_pool_used("vllm:num_requests_running 3\n") is None
    assert reading(None, 6.0, 2, {"a", "b", "c"}) == {"a": 2.0, "b": 2.0, "c": 2.0}
    assert reading(None, 6.0, 0, {"a", "b"}) == {}  # a batch without adapters: base-model traffic
    assert reading(frozenset(), 6.0, 1, {"a"}) == {"a": 6.0}  # the runtime's (empty) vLLM gauge says nothing here
    assert reading(frozenset({"a"}), 3.0, None, {"a", "b"}) == {"a": 3.0}  # vLLM names the active ones
    assert reading(frozenset(), 3.0, None, {"a"}) == {} and reading(None, 3.0, None, {"a"}) is None


def pod(name: str, demand: dict[str, float], *, rank: int | None = 64, free: int | None = None) -> PodState:
    return PodState(name, sum(demand.values()), rank, free, demand, frozenset(demand))


def test_the_busiest_pod_sheds_onto_the_least_busy_one_that_can_hold_it() -> None:
    pods = [pod("hot", {"a": 6.0, "b": 2.0}), pod("cold", {}), pod("warm", {"c": 4.0})]
    assert plan_moves(pods, {}, 0.25, 5) == [Move("b", "hot", "cold")]  # moving a (6) would just trade places


def test_within_the_threshold_nothing_moves() -> None:
    assert plan_moves([pod("p", {"a": 5.0}), pod("q", {"b": 4.5})], {}, 0.25, 5) == []


@pytest.mark.parametrize(
    "cold, ranks",
    [
        (pod("cold", {}, rank=8), {"a": 64, "b": 16}),  # the target's rank limit is below the adapter's
        (pod("cold", {}, free=0), {}),  # no free slot
        (PodState("cold", 0.0, 64, None, {}, frozenset({"a", "b"})), {}),  # it holds them already
    ],
)
def test_a_move_keeps_the_hard_constraints(cold: PodState, ranks: dict) -> None:
    assert plan_moves([pod("hot", {"a": 6.0, "b": 2.0}), cold], ranks, 0.25, 5) == []


def test_moves_per_plan_are_bounded() -> None:
    hot = pod("hot", {name: 1.0 for name in "abcdefgh"})
    colds = [pod(f"cold{i}", {}) for i in range(4)]
    assert len(plan_moves([hot, *colds], {}, 0.25, 3)) == 3
    assert len(plan_moves([hot, *colds], {}, 0.25, 10)) == 6  # then the busiest pod is within 25 % of the mean


def test_a_pod_held_up_by_one_hot_adapter_sheds_the_others_and_keeps_the_hot_one() -> None:
    """No move can lower one adapter's share: its pod gives away the rest, and the hot one stays."""
    pods = [pod("hot", {"big": 8.0, "small": 1.5}), pod("a", {"x": 1.0}), pod("b", {})]
    assert plan_moves(pods, {}, 0.25, 5) == [Move("small", "hot", "b")]


def test_an_engine_that_contradicts_its_arguments_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    """vLLM reports its --max-loras back in lora_requests_info; when the arguments the controller read say
    otherwise, the limits read from them are suspect, and the log says so once per pod."""
    from aibrix.controller.balancer import Balancer
    from aibrix.controller.engine_args import pod_limits
    from aibrix.controller.pods import Pod

    def vllm_pod(*args: str) -> Pod:
        limits = pod_limits("vllm", [{"name": "vllm", "args": list(args)}])
        values = {"name": "p", "namespace": "ns", "uid": "u", "labels": {}, "ip": "10.0.0.1", "ready_since": 0.0}
        return Pod(**values, terminating=False, engine_port=8000, runtime_port=None, engine="vllm", limits=limits)

    page = 'vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.0\n'
    balancer = Balancer(fleet=None)  # type: ignore[arg-type]  # the check reads only the pod and the page
    balancer.cross_check(vllm_pod("--max-loras", "4"), page)
    assert not caplog.records
    balancer.cross_check(vllm_pod(), page)  # vLLM's default is 1: the engine runs with other arguments
    balancer.cross_check(vllm_pod(), page)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "max_lora=4" in said[0] and "--max-loras 1" in said[0]


def test_two_full_pods_trade_a_busy_adapter_for_an_idle_one() -> None:
    """No free slot anywhere: the busy pod's lighter adapter swaps with an idle one on the quiet pod; the idle one
    leaves first (``vacate``), and the pair counts as two moves."""
    hot = pod("hot", {"a": 6.0, "b": 4.0}, free=0)
    quiet = pod("quiet", {"i": 0.0, "j": 0.0}, free=0)
    assert plan_moves([hot, quiet], {}, 0.25, 5) == [
        Move("b", "hot", "quiet", partner="i"),
        Move("i", "quiet", "hot", partner="b", vacate=True),
    ]
    assert plan_moves([hot, quiet], {}, 0.25, 1) == []  # a swap is two moves: over the bound


@pytest.mark.parametrize(
    "quiet, ranks",
    [
        (pod("quiet", {"i": 1.0}, free=0), {}),  # its adapter has demand: it would go without a pod for a moment
        (pod("quiet", {"i": 0.0}, free=0), {"i": 64}),  # the idle one's rank is above the busy pod's limit
        (pod("quiet", {"a": 0.0}, free=0), {}),  # the busy pod holds the idle one already (as "a")
    ],
)
def test_a_swap_keeps_the_hard_constraints_and_disturbs_no_traffic(quiet: PodState, ranks: dict) -> None:
    hot = pod("hot", {"a": 6.0, "b": 4.0}, rank=16, free=0)
    assert plan_moves([hot, quiet], ranks, 0.25, 5) == []


def test_a_pod_held_up_by_one_hot_adapter_leaves_the_next_busiest_pod_to_shed() -> None:
    """A pod that no move can lower does not stop the others from evening out below it."""
    pods = [pod("hot", {"big": 9.0}), pod("busy", {"x": 2.0, "y": 2.0, "z": 2.0}), pod("a", {}), pod("b", {})]
    # the mean is 3.75; after one move busy carries 4, within 25 % of it (a floor of 9 for all would move nothing)
    assert plan_moves(pods, {}, 0.25, 5) == [Move("x", "busy", "a")]


def test_a_used_adapter_that_another_pod_holds_too_can_be_the_other_side_of_a_swap() -> None:
    """Its traffic goes to its other pod while it moves; the swap counts its demand both ways."""
    hot = pod("hot", {"a": 6.0, "b": 4.0}, free=0)
    quiet = PodState("quiet", 1.0, 64, 0, {"i": 1.0}, frozenset("i"), elsewhere=frozenset("i"))
    assert plan_moves([hot, quiet], {}, 0.25, 2) == [  # 10 and 1 become 5 and 6 (moving b: 7 and 4)
        Move("a", "hot", "quiet", partner="i"),
        Move("i", "quiet", "hot", partner="a", vacate=True),
    ]


def test_the_idle_side_of_a_swap_is_one_that_another_pod_holds_too_when_there_is_one() -> None:
    hot = pod("hot", {"a": 6.0, "b": 4.0}, free=0)
    quiet = PodState("quiet", 0.0, 64, 0, {"i": 0.0, "j": 0.0}, frozenset("ij"), elsewhere=frozenset("j"))
    assert plan_moves([hot, quiet], {}, 0.25, 2)[1] == Move("j", "quiet", "hot", partner="b", vacate=True)


def test_a_free_slot_is_taken_before_a_swap_with_a_pod_as_quiet() -> None:
    hot = pod("hot", {"a": 6.0, "b": 4.0}, free=0)
    full, free = pod("full", {"i": 0.0}, free=0), pod("free", {}, free=1)
    assert plan_moves([hot, full, free], {}, 0.25, 1) == [Move("b", "hot", "free")]


def test_an_idle_fleet_is_sampled_less_often_until_a_request_is_seen() -> None:
    """Each sample scrapes every pod; while no adapter is active anywhere (a fleet being set up), the wait doubles
    up to 8 x the interval, and one active adapter brings it back."""
    import asyncio
    from types import SimpleNamespace

    from aibrix.controller.balancer import Balancer, pause
    from aibrix.controller.engine_args import pod_limits
    from aibrix.controller.pods import Pod

    values = {"name": "p", "namespace": "ns", "uid": "u", "labels": {}, "ip": "10.0.0.1", "ready_since": 0.0}
    engine = Pod(
        **values, terminating=False, engine_port=8000, runtime_port=None, engine="vllm", limits=pod_limits("vllm", [])
    )
    page = 'vllm:lora_requests_info{{max_lora="1",running_lora_adapters="{0}",waiting_lora_adapters=""}} 1.0\n'
    pages = [page.format(""), page.format("a")]

    async def pod_metrics(pod: Pod) -> str:
        return pages[0]

    estimate = DemandEstimator()
    fleet = SimpleNamespace(
        all_pods=lambda: [engine],
        pod_metrics=pod_metrics,
        placements=SimpleNamespace(names_on=lambda namespace, pod: {"a"}),
        expected_demand=lambda namespace, pod: {},
        demand=estimate,
    )
    balancer = Balancer(fleet)  # type: ignore[arg-type]  # sample reads only these
    assert asyncio.run(balancer.sample()) is False and not estimate.any_seen()
    pages.pop(0)
    assert asyncio.run(balancer.sample()) is True and estimate.of_adapter("ns", "a") == 0.5  # two samples' mean
    assert [pause(2.0, quiet) for quiet in range(6)] == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0]


def test_a_swap_that_gives_back_too_much_on_the_least_busy_pod_is_sought_on_the_next() -> None:
    """The least busy full pod's only partner is as busy as the adapter leaving: the next pod, a little busier but
    with an idle adapter to trade, takes the move (until this measurement the search stopped at the first pod)."""
    hot = PodState("hot", 10.0, 64, 0, {"b": 4.0}, frozenset("ab"))
    first = PodState("first", 5.0, 64, 0, {"p": 5.0}, frozenset("p"), elsewhere=frozenset("p"))
    second = PodState("second", 5.5, 64, 0, {"q": 0.0, "r": 5.5}, frozenset("qr"))
    assert plan_moves([hot, first, second], {}, 0.25, 2) == [
        Move("b", "hot", "second", partner="q"),
        Move("q", "second", "hot", partner="b", vacate=True),
    ]
