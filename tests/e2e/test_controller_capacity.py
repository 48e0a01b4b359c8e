"""What a pod can hold (issue 23): an adapter goes only where its rank fits and a slot is free, and the status says
why it is not on the other pods, with counts, instead of retrying there for ever."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest

from tests.helpers.controller_env import Controllers, Engines, adapters_on, condition
from tests.helpers.kube import ADAPTERS, FakeKube, phase, running, status

ADAPTERS_PATH = ADAPTERS.format(ns="default")


BASE = "base-model"  # the simulators' --model (tests/helpers/controller_env.py)


def _adapter(folder: Path, rank: int) -> Path:
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def _engine_pod(kube: FakeKube, engines: Engines, name: str, rank: int, *extra: str, engine: str = "vllm") -> tuple:
    """A pod whose engine runs with --max-lora-rank ``rank`` (its container's arguments say so too)."""
    slots = ["--max-cpu-loras", "4"] if engine == "vllm" else ["--max-loras-per-batch", "4", "--max-loaded-loras", "4"]
    args = ["--enable-lora", "--max-lora-rank", str(rank), *slots, *extra]
    served = [] if engine == "vllm" else ["--enable-lora", "--lora-target-modules", "all", "--enable-metrics", *slots]
    sim = engines.sim("--max-lora-rank", str(rank), *served, *extra, engine=engine)
    runtime = engines.runtime(sim, engine)
    kube.add_pod(name, runtime=runtime, engine=sim, args=args, engine_name=engine)
    return sim, runtime


def test_a_wide_adapter_lands_only_where_its_rank_fits_and_the_status_says_why(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path
) -> None:
    small, _ = _engine_pod(kube, engines, "rank-8", 8)
    wide, _ = _engine_pod(kube, engines, "rank-64", 64)
    controller()
    kube.add_adapter("wide-lora", artifactURL=str(_adapter(tmp_path / "wide", 64)))  # every pod that can hold it

    said = "1 of 2 placeable: 1 pod lacks"  # the count, then why
    done = kube.wait_adapter(
        "wide-lora",
        lambda o: running(o) and said in condition(o, "Scheduled")["message"],
        timeout=20,
    )
    assert status(done)["instances"] == ["rank-64"] and status(done)["rank"] == 64
    assert status(done)["desiredReplicas"] == 1 and status(done)["readyReplicas"] == 1
    scheduled = condition(done, "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "RankTooHigh")
    assert "rank >= 64" in scheduled["message"]
    assert "wide-lora" in adapters_on(wide.url) and "wide-lora" not in adapters_on(small.url)
    events = kube.http.get("/api/v1/namespaces/default/events").json()["items"]
    assert any(e["reason"] == "RankTooHigh" and "rank >= 64" in e["message"] for e in events)

    tried = [r.get("lastAttemptTime") for r in status(done).get("retries") or [] if r["pod"] == "rank-8"]
    time.sleep(2)  # later passes never try the small pod again: its one refusal stays as it was
    again = [
        r.get("lastAttemptTime") for r in status(kube.adapter("wide-lora")).get("retries") or [] if r["pod"] == "rank-8"
    ]
    assert again in (tried, [])


def test_a_pod_refusing_the_rank_is_followed_in_the_same_pass_by_one_that_fits(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path
) -> None:
    """The first load teaches the rank (the rank-8 pod, first in the default policy's order, refuses it); the same
    pass then loads it where it fits: the status never goes back to Pending on the way to Running."""
    _engine_pod(kube, engines, "rank-8", 8)
    wide, _ = _engine_pod(kube, engines, "rank-64", 64)
    controller()
    name = next(f"wide-{i}" for i in range(100) if _first_choice(f"wide-{i}", ["rank-8", "rank-64"]) == "rank-8")
    version = kube.adapters_version()
    kube.add_adapter(name, artifactURL=str(_adapter(tmp_path / "wide", 64)), replicas=1)

    done = kube.wait_adapter(name, running, timeout=20)
    assert status(done)["instances"] == ["rank-64"] and status(done)["rank"] == 64
    assert [r["pod"] for r in status(done)["retries"]] == ["rank-8"]  # the refusal, kept: never tried again
    assert kube.phases_since(version, name) == ["Pending", "Scheduled", "Running"]
    assert name in adapters_on(wide.url)


def test_a_pod_that_refused_a_rank_keeps_its_slot_for_an_adapter_that_fits(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path
) -> None:
    """Two pods of one slot each: the wide adapter is refused by the rank-8 pod and lands on the rank-64 one; the
    refusal, kept in its status, takes no slot, so the narrow adapter after it gets the rank-8 pod's."""
    one_slot = {"adapter.model.aibrix.ai/max-adapters": "1"}
    pods = {}
    for name, rank in (("rank-8", 8), ("rank-64", 64)):
        sim = pods[name] = engines.sim("--max-lora-rank", str(rank))
        args = ["--enable-lora", "--max-lora-rank", str(rank)]
        kube.add_pod(name, runtime=engines.runtime(sim), engine=sim, args=args, annotations=one_slot)
    controller("--retry-base-seconds", "5")  # the refusal is kept for the default cool-down: 160 s
    wide = next(f"wide-{i}" for i in range(100) if _first_choice(f"wide-{i}", list(pods)) == "rank-8")
    kube.add_adapter(wide, artifactURL=str(_adapter(tmp_path / "wide", 64)), replicas=1)
    done = kube.wait_adapter(wide, running, timeout=20)
    assert status(done)["instances"] == ["rank-64"] and [r["pod"] for r in status(done)["retries"]] == ["rank-8"]

    kube.add_adapter("narrow", artifactURL=str(_adapter(tmp_path / "narrow", 8)), replicas=1)
    placed = kube.wait_adapter("narrow", running, timeout=20)
    assert status(placed)["instances"] == ["rank-8"]
    assert adapters_on(pods["rank-8"].url) == {"narrow"} and adapters_on(pods["rank-64"].url) == {wide}


def _first_choice(adapter: str, pods: list[str]) -> str:
    """The pod the default policy (rendezvous hashing, controller/schedulers.py) tries first."""
    return min(pods, key=lambda pod: hashlib.blake2b(f"{adapter}/{pod}".encode(), digest_size=8).digest())


def test_an_adapter_that_fits_nowhere_says_so_and_no_pod_is_tried_for_ever(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path
) -> None:
    small, _ = _engine_pod(kube, engines, "rank-8", 8)
    controller()
    kube.add_adapter("too-wide", artifactURL=str(_adapter(tmp_path / "too-wide", 64)), replicas=1)
    stuck = kube.wait_adapter("too-wide", lambda o: '"reason": "RankTooHigh"' in json.dumps(o.get("status", {})))
    assert phase(stuck) == "Pending" and status(stuck)["rank"] == 64
    ready = condition(stuck, "Ready")
    assert ready["reason"] == "RankTooHigh" and "0 of 1 placeable: 1 pod lacks rank >= 64" in ready["message"]
    assert adapters_on(small.url) == set()


def test_slots_are_never_exceeded(kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path) -> None:
    """A pod annotated for two adapters gets two; the third is told there is no free slot."""
    sim = engines.sim()
    runtime = engines.runtime(sim)
    kube.add_pod("tiny", runtime=runtime, engine=sim, annotations={"adapter.model.aibrix.ai/max-adapters": "2"})
    controller()
    folder = _adapter(tmp_path / "lora", 8)
    for name in ("first", "second"):
        kube.add_adapter(name, artifactURL=str(folder), replicas=1)
        kube.wait_adapter(name, running)
    kube.add_adapter("third", artifactURL=str(folder), replicas=1)
    told = kube.wait_adapter(
        "third", lambda o: '"reason": "InsufficientCapacity"' in json.dumps(o.get("status", {})), timeout=15
    )
    assert "0 of 1 placeable: 1 pod has no free adapter slot" in condition(told, "Ready")["message"]
    assert adapters_on(sim.url) == {"first", "second"}
    assert httpx.get(runtime.url + "/v1/lora_adapter", timeout=5).json()["data"][0]["rank"] == 8


def test_a_higher_priority_takes_the_slot_and_the_lower_one_is_told_why(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path
) -> None:
    sim = engines.sim()
    runtime = engines.runtime(sim)
    kube.add_pod("one-slot", runtime=runtime, engine=sim, annotations={"adapter.model.aibrix.ai/max-adapters": "1"})
    controller()
    folder = _adapter(tmp_path / "lora", 8)
    kube.add_adapter("low", artifactURL=str(folder), replicas=1)
    kube.wait_adapter("low", running)
    kube.add_adapter("peer", artifactURL=str(folder), replicas=1)  # the same priority never displaces
    kube.wait_adapter("peer", lambda o: '"reason": "InsufficientCapacity"' in json.dumps(o.get("status", {})))

    kube.add_adapter("high", artifactURL=str(folder), replicas=1, priority=10)
    kube.wait_adapter("high", running, timeout=20)
    low = kube.wait_adapter("low", lambda o: "InsufficientCapacity" in json.dumps(status(o)), timeout=20)
    assert not status(low).get("instances") and phase(low) == "Pending"
    deadline = time.monotonic() + 10
    while adapters_on(sim.url) != {"high"}:
        assert time.monotonic() < deadline, adapters_on(sim.url)
        time.sleep(0.1)
    events = kube.http.get("/api/v1/namespaces/default/events").json()["items"]
    assert any(e["reason"] == "Preempted" and e["involvedObject"]["name"] == "low" for e in events)
    assert status(kube.adapter("peer")).get("instances") in (None, [])  # still waiting: equals do not displace


@pytest.mark.fake_only("the fake API server injects the delay; the real one cannot be slowed on demand")
def test_an_overloaded_fleet_and_api_server_leave_adapters_pending_never_failed(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path
) -> None:
    """Overload is a passing condition, not a verdict: with every API request 150 ms late and one pod's engine and
    runtime frozen (a CPU-starved pod that accepts connections and answers nothing), adapters wait or go elsewhere
    and are never Failed; once the pod thaws, every one of them holds both its replicas."""
    folder = _adapter(tmp_path / "lora", 8)
    frozen_sim, frozen_runtime = _engine_pod(kube, engines, "starved", 16)
    for name in ("p1", "p2"):
        _engine_pod(kube, engines, name, 16)
    kube.http.post("/fault", json={"delay_ms": 150})
    for proc in (frozen_sim, frozen_runtime):
        os.kill(proc.popen.pid, signal.SIGSTOP)
    try:
        controller("--retry-base-seconds", "0.2", "--max-retries", "2", "--resync-seconds", "2")
        names = [f"busy-{i}" for i in range(4)]  # 12 replicas: the three pods' 4 slots each
        for name in names:
            kube.add_adapter(name, artifactURL=str(folder), replicas=3)
        phases: set[str] = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the starved pod answers nothing all this while
            phases |= {phase(a) for a in kube.items(ADAPTERS_PATH)}
            time.sleep(0.3)
        assert "Failed" not in phases
    finally:
        for proc in (frozen_sim, frozen_runtime):
            os.kill(proc.popen.pid, signal.SIGCONT)
    kube.http.post("/fault", json={"delay_ms": 0})
    for name in names:
        kube.wait_adapter(name, lambda o: running(o) and status(o).get("readyReplicas") == 3, timeout=60)
    assert "busy-0" in adapters_on(frozen_sim.url)


def _busy_until_apart(
    kube: FakeKube,
    sims: dict,
    busy: list[str],
    watched: Sequence[str],
    model: Callable[[str], str],
    each: Callable[[], None] = lambda: None,
) -> list[str]:
    """Two clients per ``busy`` adapter send completions to the pod its status names, until the two busy adapters
    are on different pods and each ``watched`` adapter on one (30 s at most), then 2 s more (six more plans: the
    pods are even, nothing moves again). ``each`` runs at every check. Returns the adapters a client found without
    a pod."""
    stop = threading.Event()
    gaps: list[str] = []

    def load(adapter: str) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                instances = status(kube.adapter(adapter)).get("instances") or []
                if not instances:
                    gaps.append(adapter)
                    time.sleep(0.05)
                    continue
                body = {"model": model(adapter), "prompt": "x", "max_tokens": 10}
                client.post(f"{sims[instances[0]].url}/v1/completions", json=body)

    workers = [threading.Thread(target=load, args=(name,)) for name in busy for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            each()
            places = {name: status(kube.adapter(name)).get("instances") for name in watched}
            if places[busy[0]] != places[busy[1]] and all(len(p or []) == 1 for p in places.values()):
                break
            time.sleep(0.1)
        time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
    return gaps


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_balanced_policy_moves_an_adapter_off_a_busy_pod_without_a_gap(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path, engine: str
) -> None:
    """Two busy adapters that share a pod while the other pod idles: the balancer sees their requests (vLLM names
    them in lora_requests_info; SGLang counts the adapters of its running batch, and the pod's requests are split
    over the adapters placed there), moves one of them, loading it on the idle pod before it leaves the busy one,
    and moves nothing more once the two pods carry even demand."""
    folder = _adapter(tmp_path / "lora", 8)
    sims = {}
    for name in ("pod-a", "pod-b"):
        sims[name], _ = _engine_pod(kube, engines, name, 16, "--itl-ms", "40", engine=engine)
    controller("--balance-interval-seconds", "0.3")
    for name in ("x", "y", "z"):
        kube.add_adapter(name, artifactURL=str(folder), replicas=1, schedulerName="balanced")
    for name in ("x", "y", "z"):
        kube.wait_adapter(name, running, timeout=20)
    held = {name: status(kube.adapter(name))["instances"][0] for name in ("x", "y", "z")}
    shared = next(pod for pod in sims if list(held.values()).count(pod) == 2)
    busy = sorted(name for name, pod in held.items() if pod == shared)

    model = (lambda name: name) if engine == "vllm" else (lambda name: f"{BASE}:{name}")  # SGLang: base:adapter
    gaps = _busy_until_apart(kube, sims, busy, busy, model)
    places = {name: status(kube.adapter(name))["instances"] for name in busy}
    assert places[busy[0]] != places[busy[1]], places
    events = [e for e in kube.items("/api/v1/namespaces/default/events") if e["reason"] == "Moved"]
    assert len(events) == 1 and f"from pod {shared}" in events[0]["message"]
    assert gaps == []  # the adapter was served throughout the move


def test_two_full_pods_trade_a_busy_adapter_for_an_idle_one_without_a_gap_or_an_extra_slot(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path
) -> None:
    """Two pods of two slots each, both full, the two busy adapters on one of them: no pod has a free slot for a
    plain move, so an idle adapter leaves the quiet pod first, a busy one takes its slot and leaves the busy pod,
    and the idle one takes the slot freed there. The busy adapter is served throughout, and no pod ever holds three."""
    folder = _adapter(tmp_path / "lora", 8)
    sims = {}
    for name in ("pod-a", "pod-b"):
        limits = ["--max-lora-rank", "16", "--max-loras", "2", "--max-cpu-loras", "2"]
        sims[name] = engines.sim(*limits, "--itl-ms", "40")
        kube.add_pod(name, runtime=engines.runtime(sims[name]), engine=sims[name], args=["--enable-lora", *limits])
    controller("--balance-interval-seconds", "0.3")
    names = ("w", "x", "y", "z")
    for name in names:
        kube.add_adapter(name, artifactURL=str(folder), replicas=1, schedulerName="balanced")
    for name in names:
        kube.wait_adapter(name, running, timeout=20)
    held = {name: status(kube.adapter(name))["instances"][0] for name in names}
    busy = sorted(name for name, pod in held.items() if pod == held["w"])
    assert len(busy) == 2, held  # two slots a pod, four adapters: two on each
    most: dict[str, int] = {}

    def count_adapters() -> None:
        for pod, sim in sims.items():
            most[pod] = max(most.get(pod, 0), len(adapters_on(sim.url)))

    gaps = _busy_until_apart(kube, sims, busy, names, lambda name: name, count_adapters)
    places = {name: status(kube.adapter(name))["instances"] for name in names}
    assert places[busy[0]] != places[busy[1]], places
    assert sorted(len(adapters_on(sim.url)) for sim in sims.values()) == [2, 2]
    assert most == {"pod-a": 2, "pod-b": 2}  # never a third adapter on a pod of two slots
    events = [e for e in kube.items("/api/v1/namespaces/default/events") if e["reason"] == "Moved"]
    assert len(events) == 2, [e["message"] for e in events]  # the busy adapter and the idle one, once each
    assert gaps == []
