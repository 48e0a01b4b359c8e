"""The ModelAdapter controller against the fake Kubernetes API and a real kube-apiserver, with real runtimes and
engine simulators as pods: metrics, schema, phases, edits, schedulers and an API server or leader that goes away."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.controller_env import Controllers, Engines, adapters_on, condition, metric, pod_with_runtime
from tests.helpers.kube import ADAPTERS, FakeKube, phase, running, status
from tests.helpers.procs import Proc, free_port


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"artifactURL": "ftp://host/lora"}, "artifactURL"),
        ({"replicas": 0}, "replicas"),
        ({"podSelector": None}, "podSelector"),
        ({"podSelector": {}}, "podSelector"),
        ({"schedulerName": "random"}, "schedulerName"),
        ({"artifactDigest": "sha256:nothex"}, "artifactDigest"),
    ],
)
def test_crd_schema_rejects_bad_objects(kube: FakeKube, spec: dict[str, Any], complaint: str) -> None:
    body = {
        "apiVersion": "model.aibrix.ai/v1alpha1",
        "kind": "ModelAdapter",
        "metadata": {"name": "bad"},
        "spec": {"podSelector": {"matchLabels": {"a": "b"}}, "artifactURL": "/models/x", **spec},
    }
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    response = kube.http.post(ADAPTERS.format(ns="default"), json=body)
    assert response.status_code == 422, response.text
    assert complaint in response.text


FIVE_PHASES = ["Pending", "Scheduled", "Loading", "Bound", "Running"]


@pytest.mark.parametrize(
    ("load_ms", "api_delay_ms", "phases"),
    [
        pytest.param("1000", 300, FIVE_PHASES, marks=pytest.mark.fake_only("the fake API server's /fault slows it")),
        ("5", 0, ["Pending", "Scheduled", "Running"]),
    ],
)
def test_phases_follow_the_documented_order(
    kube: FakeKube,
    engines: Engines,
    controller: Controllers,
    adapter_dir: Path,
    load_ms: str,
    api_delay_ms: int,
    phases: list[str],
) -> None:
    """Each phase shows as it begins, in the documented order (Pending from the create on, the CRD's status
    default, on the fake API server as on the real one); Loading and Bound only when their step lasts
    (over 0.25 s: a slow load, a slow API server creating the Service): a quick step would cost every adapter a
    status write nobody could see (docs/controller.md)."""
    pod_with_runtime(kube, engines, "base-0", "--lora-load-ms", load_ms)
    controller()
    version = kube.adapters_version()
    if api_delay_ms:
        kube.http.post("/fault", json={"delay_ms": api_delay_ms})
    try:
        kube.add_adapter("watched", artifactURL=str(adapter_dir), replicas=1)
        kube.wait_adapter("watched", running)
    finally:
        if api_delay_ms:
            kube.http.post("/fault", json={"delay_ms": 0})
    assert kube.phases_since(version, "watched") == phases


def test_failed_adapter_waits_for_the_cool_down_or_an_edit(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sim = engines.sim()
    kube.add_pod("base-0", engine=sim)
    proc = controller("--enable-runtime-sidecar=false", "--metrics-bind-address", f"127.0.0.1:{free_port()}")
    kube.add_adapter("typo", artifactURL="/no/such/adapter", replicas=1)
    failed = kube.wait_adapter("typo", lambda o: phase(o) == "Failed", timeout=10)
    assert status(failed)["nextAttemptTime"]
    time.sleep(3)  # three resyncs: a fatal error is not retried on every one
    assert metric(proc, 'aibrix_controller_adapter_loads_total{result="fatal"}') == 1

    response = kube.http.patch(
        ADAPTERS.format(ns="default") + "/typo",
        json={"spec": {"artifactURL": str(adapter_dir)}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 200
    fixed = kube.wait_adapter("typo", running, timeout=5)
    assert "nextAttemptTime" not in status(fixed)
    assert "typo" in adapters_on(sim.url)


def test_editing_the_artifact_or_selector_moves_the_adapter(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path, tmp_path: Path
) -> None:
    sims = {name: engines.sim() for name in ("a-0", "b-0")}
    kube.add_pod("a-0", engine=sims["a-0"], labels={"pool": "a"})
    kube.add_pod("b-0", engine=sims["b-0"], labels={"pool": "b"})
    controller("--enable-runtime-sidecar=false")
    selector = {"matchLabels": {"model.aibrix.ai/name": "base-model", "pool": "a"}}
    kube.add_adapter("editable", artifactURL=str(adapter_dir), podSelector=selector)
    kube.wait_adapter("editable", running)

    newer = tmp_path / "v2"
    newer.mkdir()
    (newer / "adapter_config.json").write_text('{"r": 16}')
    path = ADAPTERS.format(ns="default") + "/editable"
    merge = {"content-type": "application/merge-patch+json"}
    kube.http.patch(path, json={"spec": {"artifactURL": str(newer)}}, headers=merge).raise_for_status()
    kube.wait_adapter("editable", lambda o: running(o) and status(o).get("artifactURL") == str(newer))
    cards = httpx.get(sims["a-0"].url + "/v1/models", timeout=5).json()["data"]
    assert next(c for c in cards if c["id"] == "editable")["root"] == str(newer)

    selector["matchLabels"]["pool"] = "b"
    kube.http.patch(path, json={"spec": {"podSelector": selector}}, headers=merge).raise_for_status()
    kube.wait_adapter("editable", lambda o: running(o) and status(o)["instances"] == ["b-0"])
    assert "editable" in adapters_on(sims["b-0"].url)
    assert "editable" not in adapters_on(sims["a-0"].url)


def test_direct_loading_into_sglang(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sim = engines.sim(engine="sglang")
    kube.add_pod("sglang-0", engine=sim, engine_name="sglang")
    controller("--enable-runtime-sidecar=false")
    kube.add_adapter("sg-lora", artifactURL=str(adapter_dir), replicas=1)
    kube.wait_adapter("sg-lora", running)
    assert "sg-lora" in httpx.get(sim.url + "/v1/models", timeout=5).text
    # SGLang runs the base model for a bare adapter name: the user is told how to address it
    warned = kube.wait_event("sg-lora", "AddressAsBaseColonAdapter")
    assert '"model": "<base model>:sg-lora"' in warned["message"]
    kube.delete(ADAPTERS.format(ns="default") + "/sg-lora")
    kube.wait_gone(ADAPTERS.format(ns="default") + "/sg-lora")
    assert "sg-lora" not in httpx.get(sim.url + "/v1/models", timeout=5).text


def test_least_load_avoids_the_busy_pod(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    import threading

    sims = {}
    for name in ("p-0", "p-1"):
        sims[name], _ = pod_with_runtime(kube, engines, name, "--itl-ms", "50")
    controller()

    def busy(sim: Proc, stop: threading.Event) -> None:
        body = {"model": "base-model", "prompt": "hello", "max_tokens": 200, "stream": True}
        with httpx.stream("POST", sim.url + "/v1/completions", json=body, timeout=30) as response:
            for _ in response.iter_bytes():
                if stop.is_set():
                    return

    for round_, (loaded, idle) in enumerate([("p-0", "p-1"), ("p-1", "p-0")]):
        stop = threading.Event()
        threads = [threading.Thread(target=busy, args=(sims[loaded], stop)) for _ in range(3)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while _enginemetric(sims[loaded], "vllm:num_requests_running") < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        kube.add_adapter(f"lora-{round_}", artifactURL=str(adapter_dir), replicas=1, schedulerName="least-load")
        placed = kube.wait_adapter(f"lora-{round_}", running)
        stop.set()
        for thread in threads:
            thread.join()
        assert status(placed)["instances"] == [idle]
        time.sleep(1.1)  # the controller reuses a pod's metrics for a second


def _enginemetric(sim: Proc, name: str) -> float:
    for line in httpx.get(sim.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.fake_only("the real server's CEL rule refuses the object: test_real_kube.py checks that")
def test_a_spec_the_controller_cannot_use_is_failed_with_the_reason(kube: FakeKube, controller: Controllers) -> None:
    controller()
    kube.add_adapter("9lives", replicas=1)  # the fake server does not run the CRD's CEL rule; the controller checks
    failed = kube.wait_adapter("9lives", lambda o: phase(o) == "Failed")
    initialized = condition(failed, "Initialized")
    assert (initialized["status"], initialized["reason"]) == ("False", "InvalidSpec")
    assert "DNS-1035" in initialized["message"]


@pytest.mark.fake_only("the real server keeps its state in etcd: tests/e2e/test_real_kube.py restarts it")
def test_controller_rides_out_an_api_server_restart(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path, tmp_path: Path
) -> None:
    sim = engines.sim()
    kube.add_pod("base-0", engine=sim)
    # Without leader election: a leader that cannot renew its lease exits on purpose (the kubelet restarts it);
    # here the informers must reconnect, list the new server's state and carry on.
    controller("--enable-runtime-sidecar=false", "--leader-elect=false")
    kube.add_adapter("before", artifactURL=str(adapter_dir), replicas=1)
    kube.wait_adapter("before", running)

    kube.proc.stop()  # the API server goes away and comes back empty (etcd restored from nothing)
    time.sleep(1)
    (tmp_path / "again").mkdir()
    again = FakeKube(tmp_path / "again", port=kube.proc.port)
    try:
        again.add_pod("base-0", engine=sim)
        again.add_adapter("after", artifactURL=str(adapter_dir), replicas=1)
        again.wait_adapter("after", running, timeout=20)
        assert "after" in adapters_on(sim.url)
    finally:
        again.stop()


@pytest.mark.fake_only("tests/e2e/test_real_kube.py stops the real API server under a leader")
def test_a_leader_that_cannot_renew_stops_acting(kube: FakeKube, controller: Controllers) -> None:
    proc = controller()  # renew deadline 1.5 s
    deadline = time.monotonic() + 5
    while metric(proc, "aibrix_controller_leader") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    kube.proc.stop()
    assert proc.popen.wait(timeout=10) == 1  # exits so that no two leaders can act; the kubelet restarts it
    assert "leadership lost" in proc.output()


def test_a_changed_artifact_rolls_across_the_pods_one_at_a_time_without_a_gap(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path, tmp_path: Path
) -> None:
    """With runtimes, each pod swaps to the new version in place (vLLM's load_inplace) while the others keep the
    old one: every engine serves the adapter throughout, and the status says which version each pod holds."""
    sims = {}
    for name in ("r-0", "r-1", "r-2"):
        sims[name], _ = pod_with_runtime(kube, engines, name)
    controller()
    kube.add_adapter("rolled", artifactURL=str(adapter_dir))
    kube.wait_adapter("rolled", lambda o: running(o) and len(status(o).get("instances", [])) == 3)
    newer = tmp_path / "v2"
    newer.mkdir()
    (newer / "adapter_config.json").write_text('{"r": 8}')
    kube.patch_adapter("rolled", {"spec": {"artifactURL": str(newer)}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        roots = {name: served_root(sim, "rolled") for name, sim in sims.items()}
        assert None not in roots.values(), roots  # no engine ever stopped serving it
        if set(roots.values()) == {str(newer)}:
            break
        time.sleep(0.02)
    done = kube.wait_adapter("rolled", lambda o: status(o).get("artifactURL") == str(newer))
    assert status(done)["instanceVersions"] == {name: str(newer) for name in sims}
    assert condition(done, "Updated")["status"] == "True"
    updates = [e["message"] for e in kube.items("/api/v1/namespaces/default/events") if e["reason"] == "Updated"]
    assert any("2 to go" in m for m in updates) and any("1 to go" in m for m in updates), updates  # one at a time


def served_root(sim: Proc, name: str) -> str | None:
    cards = httpx.get(sim.url + "/v1/models", timeout=5).json()["data"]
    return next((c["root"] for c in cards if c["id"] == name), None)
