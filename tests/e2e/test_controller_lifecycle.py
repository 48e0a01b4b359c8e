"""The ModelAdapter controller against the fake Kubernetes API and a real kube-apiserver, with real runtimes and
engine simulators as pods: loading, spreading, retries, failover, credentials and deletion."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.helpers.controller_env import (
    POD,
    SERVICE,
    SLICE,
    Controllers,
    Engines,
    adapters_on,
    condition,
    metric,
    pod_with_runtime,
)
from tests.helpers.hf_server import HubServer, Repo
from tests.helpers.kube import ADAPTERS, FakeKube, phase, running, status
from tests.helpers.procs import Proc, free_port


def test_adapter_reaches_running_with_service_and_endpoint_slice(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sim, _ = pod_with_runtime(kube, engines, "base-0")
    controller()
    kube.add_adapter("my-lora", artifactURL=str(adapter_dir), replicas=1)

    obj = kube.wait_adapter("my-lora", running)
    status = obj["status"]
    assert status["instances"] == ["base-0"]
    assert (status["readyReplicas"], status["desiredReplicas"], status["candidates"]) == (1, 1, 1)
    assert condition(obj, "Scheduled")["message"] == (
        "ModelAdapter default/my-lora has selected 1 pods for scheduling: [base-0]"
    )
    assert condition(obj, "Ready")["reason"] == "ModelAdapterAvailable"
    assert condition(obj, "Bound")["status"] == "True"
    assert condition(obj, "Initialized")["status"] == "True"
    assert "adapter.model.aibrix.ai/finalizer" in obj["metadata"]["finalizers"]
    assert "my-lora" in adapters_on(sim.url)

    service = kube.get(SERVICE.format("my-lora"))
    assert service is not None
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"] == [{"name": "http", "port": sim.port, "protocol": "TCP", "targetPort": sim.port}]
    assert service["metadata"]["labels"] == {
        "model.aibrix.ai/name": "my-lora",
        "adapter.model.aibrix.ai/name": "my-lora",
    }
    assert service["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    assert service["metadata"]["annotations"] == {"model.aibrix.ai/base-model": "base-model"}
    endpoint_slice = kube.get(SLICE.format("my-lora"))
    assert endpoint_slice is not None
    assert endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "my-lora"
    assert [e["targetRef"]["name"] for e in endpoint_slice["endpoints"]] == ["base-0"]
    assert endpoint_slice["endpoints"][0]["addresses"] == [engines.host]
    assert endpoint_slice["ports"][0]["port"] == sim.port

    events = kube.items("/api/v1/namespaces/default/events")
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "my-lora"}
    assert {"Scheduled", "Loaded"} <= reasons


def test_replicas_omitted_loads_on_every_matching_pod_and_n_on_n(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sims = [pod_with_runtime(kube, engines, f"base-{i}")[0] for i in range(3)]
    kube.add_pod("other-model", runtime=None, labels={"model.aibrix.ai/name": "other"})
    kube.add_pod("not-enabled", labels={"adapter.model.aibrix.ai/enabled": "false"})
    controller()
    kube.add_adapter("everywhere", artifactURL=str(adapter_dir))
    kube.add_adapter("two", artifactURL=str(adapter_dir), replicas=2, schedulerName="least-adapters")

    everywhere = kube.wait_adapter("everywhere", lambda o: running(o) and status(o)["readyReplicas"] == 3)
    assert everywhere["status"]["instances"] == ["base-0", "base-1", "base-2"]
    assert everywhere["status"]["desiredReplicas"] == 3
    two = kube.wait_adapter("two", lambda o: running(o) and status(o)["readyReplicas"] == 2)
    assert len(two["status"]["instances"]) == 2
    assert sum("two" in adapters_on(sim.url) for sim in sims) == 2
    assert all("everywhere" in adapters_on(sim.url) for sim in sims)

    # A new matching pod joins the adapter that wants every pod, not the one that wants two.
    sim3, _ = pod_with_runtime(kube, engines, "base-3")
    kube.wait_adapter("everywhere", lambda o: status(o).get("readyReplicas") == 4)
    assert "everywhere" in adapters_on(sim3.url)
    assert len(kube.adapter("two")["status"]["instances"]) == 2  # type: ignore[index]


def test_least_adapters_spreads_adapters_evenly(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sims = [pod_with_runtime(kube, engines, f"base-{i}")[0] for i in range(3)]
    controller()
    for i in range(9):
        kube.add_adapter(f"lora-{i}", artifactURL=str(adapter_dir), replicas=1, schedulerName="least-adapters")
    for i in range(9):
        kube.wait_adapter(f"lora-{i}", running)
    assert sorted(len(adapters_on(sim.url)) for sim in sims) == [3, 3, 3]


def test_retries_back_off_and_survive_a_controller_restart(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    engine_port = free_port()
    kube.add_pod("starting", engine=None, labels={"model.aibrix.ai/port": str(engine_port)})
    first = controller("--enable-runtime-sidecar=false", "--retry-base-seconds", "0.4")
    kube.add_adapter("slow-start", artifactURL=str(adapter_dir), replicas=1)

    obj = kube.wait_adapter("slow-start", lambda o: any(r["attempts"] >= 2 for r in status(o).get("retries", [])))
    retry = obj["status"]["retries"][0]
    assert retry["pod"] == "starting"
    assert "refused" in retry["lastError"].lower() or "unreachable" in retry["lastError"].lower()
    assert phase(obj) == "Loading"
    first.stop()
    attempts = retry["attempts"]

    controller("--enable-runtime-sidecar=false", "--retry-base-seconds", "0.4")
    later = kube.wait_adapter(
        "slow-start", lambda o: any(r["attempts"] > attempts for r in status(o).get("retries", []))
    )
    assert later["status"]["retries"][0]["attempts"] == attempts + 1  # carried on, not started over

    entry = later["status"]["retries"][0]
    gap = datetime.fromisoformat(entry["nextAttemptTime"]) - datetime.fromisoformat(entry["lastAttemptTime"])
    assert gap.total_seconds() == pytest.approx(0.4 * 2**attempts, rel=0.01)

    engines.sim(port=engine_port)  # the engine comes up: the next attempt succeeds
    done = kube.wait_adapter("slow-start", running, timeout=15)
    assert done["status"]["instances"] == ["starting"]
    assert done["status"].get("retries") == []


def test_retries_spent_on_every_pod_leave_it_pending_not_failed_until_a_new_pod_takes_it(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    kube.add_pod("dead", engine=None)  # nothing listens on its engine port
    proc = controller(
        "--enable-runtime-sidecar=false", "--max-retries", "3", "--retry-base-seconds", "0.1", "--log-format", "json"
    )
    kube.add_adapter("lonely", artifactURL=str(adapter_dir), replicas=1)

    spent = kube.wait_adapter("lonely", lambda o: "NoPodAvailable" in json.dumps(status(o)), timeout=15)
    ready = condition(spent, "Ready")
    assert phase(spent) == "Pending"  # a passing failure everywhere is no verdict on the adapter
    assert ready["reason"] == "NoPodAvailable" and "dead" in ready["message"] and "trying again in" in ready["message"]
    events = kube.items("/api/v1/namespaces/default/events")
    assert any(e["reason"] == "MaxRetriesExceeded" and "dead" in e["message"] for e in events)

    sim = engines.sim()
    kube.add_pod("alive", engine=sim)
    done = kube.wait_adapter("lonely", running, timeout=10)
    assert done["status"]["instances"] == ["alive"]
    assert "lonely" in adapters_on(sim.url)

    proc.stop()
    lines = [json.loads(line) for line in proc.output(limit=10**8).splitlines() if line.startswith("{")]
    attempts = [
        e["attempt"]
        for e in lines
        if e.get("pod") == "dead" and e.get("adapter") == "default/lonely" and "attempt" in e
    ]
    # 1, 2, then the third gives up; a slow run may see the pod cool down (0.8 s) and get a fresh set
    assert attempts[:2] == [1, 2] and attempts == [1, 2] * (len(attempts) // 2)
    assert any(e["level"] == "warning" and e.get("pod") == "dead" and "giving up" in e["msg"] for e in lines)


def test_deleted_pod_fails_over_within_seconds(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sims = {f"base-{i}": pod_with_runtime(kube, engines, f"base-{i}")[0] for i in range(2)}
    controller()
    kube.add_adapter("movable", artifactURL=str(adapter_dir), replicas=1)
    first = kube.wait_adapter("movable", running)["status"]["instances"][0]

    kube.delete(POD.format(first))
    started = time.monotonic()
    other = next(name for name in sims if name != first)
    moved = kube.wait_adapter("movable", lambda o: running(o) and status(o)["instances"] == [other], timeout=10)
    assert time.monotonic() - started < 10
    assert "movable" in adapters_on(sims[other].url)
    endpoint_slice = kube.get(SLICE.format("movable"))
    assert [e["targetRef"]["name"] for e in endpoint_slice["endpoints"]] == [other]  # type: ignore[index]
    assert moved["status"]["readyReplicas"] == 1


def test_engine_restart_is_noticed_and_the_adapter_loaded_again(
    kube: FakeKube, engines: Engines, controller: Controllers
) -> None:
    sim = engines.sim()
    kube.add_pod("base-0", engine=sim)
    controller("--enable-runtime-sidecar=false")
    kube.add_adapter("hub-lora", artifactURL="huggingface://org/sql-lora", replicas=1)
    kube.wait_adapter("hub-lora", running)
    cards = httpx.get(sim.url + "/v1/models", timeout=5).json()["data"]
    assert next(c for c in cards if c["id"] == "hub-lora")["root"] == "org/sql-lora"  # the repo id, not the URL

    sim.stop()
    engines.sim(port=sim.port)
    deadline = time.monotonic() + 15
    while "hub-lora" not in adapters_on(sim.url):
        assert time.monotonic() < deadline, "the adapter was not loaded again after the engine restarted"
        time.sleep(0.1)


def test_a_hub_adapter_is_checked_before_a_direct_load_and_the_engine_never_sees_a_bad_one(
    kube: FakeKube, engines: Engines, controller: Controllers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a runtime the engine downloads a Hub repository itself; the controller reads its listing and config
    first and applies the runtime's rules: pickled weights fail at once, a rank above the pod's limit (vLLM's
    default --max-lora-rank, 16) is this pod's limit, not the adapter's fault, and is said so."""
    repos = {}
    for name, config, weights in (
        ("pickled", {"r": 8}, "adapter_model.bin"),
        ("rank64", {"r": 64}, "adapter_model.safetensors"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps(config))
        (tmp_path / name / weights).write_bytes(b"weights")
        repos[f"org/{name}"] = Repo(tmp_path / name)
    with HubServer(repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        sim = engines.sim()
        kube.add_pod("base-0", engine=sim)
        controller("--enable-runtime-sidecar=false")
        kube.add_adapter("pickled", artifactURL="huggingface://org/pickled", replicas=1)
        failed = kube.wait_adapter("pickled", lambda o: phase(o) == "Failed", timeout=15)
        assert (
            "pickle-based format can run code when loaded: adapter_model.bin" in condition(failed, "Ready")["message"]
        )

        kube.add_adapter("wide", artifactURL="huggingface://org/rank64", replicas=1)
        said = "0 of 1 placeable: 1 pod lacks rank >= 64"  # the rank learned from the check's refusal
        wide = kube.wait_adapter("wide", lambda o: said in json.dumps(status(o).get("conditions", [])), timeout=15)
        assert phase(wide) == "Pending" and status(wide)["rank"] == 64
    assert adapters_on(sim.url) == set()  # neither reached the engine


@pytest.mark.parametrize(
    ("spec", "reason_part"),
    [
        ({"artifactURL": "/does/not/exist"}, "does/not/exist"),
        ({"artifactURL": "s3://bucket/lora"}, "runtime sidecar"),  # direct mode cannot fetch from S3
    ],
)
def test_errors_that_cannot_pass_fail_at_once_with_the_reason(
    kube: FakeKube, engines: Engines, controller: Controllers, spec: dict[str, str], reason_part: str
) -> None:
    sim = engines.sim()
    kube.add_pod("base-0", engine=sim)
    controller("--enable-runtime-sidecar=false")
    kube.add_adapter("broken", replicas=1, **spec)
    failed = kube.wait_adapter("broken", lambda o: phase(o) == "Failed", timeout=10)
    ready = condition(failed, "Ready")
    assert ready["reason"] == "LoadFailed"
    assert reason_part in ready["message"]
    assert not failed["status"].get("retries")  # no retry was spent on it


def test_wrong_api_key_fails_and_right_one_loads(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sim = engines.sim("--api-key", "sk-right")
    kube.add_pod("base-0", engine=sim)
    proc = controller("--enable-runtime-sidecar=false")
    kube.add_adapter("keyed", artifactURL=str(adapter_dir), replicas=1, additionalConfig={"api-key": "sk-wrong"})
    failed = kube.wait_adapter("keyed", lambda o: phase(o) == "Failed", timeout=10)
    assert "401" in condition(failed, "Ready")["message"] or "nauthorized" in condition(failed, "Ready")["message"]
    assert "sk-wrong" not in str(failed["status"])  # the key is in the spec, never in the status

    kube.add_adapter("keyed-ok", artifactURL=str(adapter_dir), replicas=1, additionalConfig={"api-key": "sk-right"})
    kube.wait_adapter("keyed-ok", running)
    proc.stop()
    assert "sk-wrong" not in proc.output(limit=10**8) and "sk-right" not in proc.output(limit=10**8)


def test_credentials_secret_reaches_the_runtime(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    from tests.helpers.hf_server import HubServer, Repo

    with HubServer({"org/private-lora": Repo(adapter_dir, private=True)}) as hub:
        sim = engines.sim()
        port = free_port(engines.host)
        runtime = Proc(
            [sys.executable, "-m", "aibrix.runtime.cli", "--host", engines.host, "--port", str(port)],
            port,
            {
                "INFERENCE_ENGINE": "vllm",
                "INFERENCE_ENGINE_ENDPOINT": sim.url,
                "HF_ENDPOINT": hub.url,
                "AIBRIX_ADAPTER_DIR": str(adapter_dir.parent / "adapters"),
            },
            engines.host,
        )
        engines.add(runtime)
        runtime.wait_http("/healthz")
        kube.add_pod("base-0", runtime=runtime, engine=sim)
        kube.create(
            "/api/v1/namespaces/default/secrets",
            {"metadata": {"name": "hf-credentials"}, "stringData": {"huggingface_token": hub.token}},
        )
        proc = controller()
        kube.add_adapter("private", artifactURL="huggingface://org/private-lora", replicas=1)
        failed = kube.wait_adapter("private", lambda o: phase(o) == "Failed", timeout=10)
        assert (
            "401" in condition(failed, "Ready")["message"] or "denied" in condition(failed, "Ready")["message"].lower()
        )

        kube.add_adapter(
            "private-ok",
            artifactURL="huggingface://org/private-lora",
            replicas=1,
            credentialsSecretRef={"name": "hf-credentials"},
        )
        kube.wait_adapter("private-ok", running)
        assert "private-ok" in adapters_on(sim.url)
        listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=5).text
        assert hub.token not in listing
        events = kube.http.get("/api/v1/namespaces/default/events").text
        status_text = str(kube.adapter("private-ok"))
        proc.stop()
        for text in (events, status_text, proc.output(limit=10**8)):
            assert hub.token not in text


def test_deletion_unloads_and_cleans_up(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sim, _ = pod_with_runtime(kube, engines, "base-0")
    controller()
    kube.add_adapter("short-lived", artifactURL=str(adapter_dir), replicas=1)
    kube.wait_adapter("short-lived", running)
    assert "short-lived" in adapters_on(sim.url)

    kube.delete(ADAPTERS.format(ns="default") + "/short-lived")
    kube.wait_gone(ADAPTERS.format(ns="default") + "/short-lived", timeout=10)
    assert "short-lived" not in adapters_on(sim.url)
    assert kube.get(SERVICE.format("short-lived")) is None
    assert kube.get(SLICE.format("short-lived")) is None


def test_deletion_is_bounded_when_pods_are_gone_or_silent(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    sims = [pod_with_runtime(kube, engines, f"base-{i}") for i in range(2)]
    controller()
    kube.add_adapter("orphan", artifactURL=str(adapter_dir))
    kube.wait_adapter("orphan", lambda o: status(o).get("readyReplicas") == 2)

    kube.delete(POD.format("base-0"))  # one pod is gone from the API
    sims[1][1].popen.send_signal(19)  # the other one's runtime stops answering (SIGSTOP)
    sims[1][0].popen.send_signal(19)
    try:
        started = time.monotonic()
        kube.delete(ADAPTERS.format(ns="default") + "/orphan")
        kube.wait_gone(ADAPTERS.format(ns="default") + "/orphan", timeout=10)
        assert time.monotonic() - started < 5  # unload timeout 1 s, deletion timeout 3 s
    finally:
        sims[1][1].popen.send_signal(18)
        sims[1][0].popen.send_signal(18)


def test_two_controllers_do_not_fight(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    pod_with_runtime(kube, engines, "base-0")
    first = controller()
    second = controller()
    kube.add_adapter("shared", artifactURL=str(adapter_dir), replicas=1)
    kube.wait_adapter("shared", running)
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{kube.lease_namespace}/leases/aibrix-controller-manager"
    lease = kube.get(lease_path)
    assert lease is not None
    holder = lease["spec"]["holderIdentity"]
    leader, standby = (first, second) if metric(first, "aibrix_controller_leader") == 1 else (second, first)
    assert metric(standby, "aibrix_controller_leader") == 0
    assert metric(standby, 'aibrix_controller_reconciles_total{result="ok"}') == 0

    os_kill = leader.popen.send_signal
    os_kill(9)  # no clean release: the standby waits for the lease to expire
    kube.add_adapter("after", artifactURL=str(adapter_dir), replicas=1)
    kube.wait_adapter("after", running, timeout=10)
    lease = kube.get(lease_path)
    assert lease["spec"]["holderIdentity"] != holder  # type: ignore[index]
    assert lease["spec"]["leaseTransitions"] >= 1  # type: ignore[index]


def test_the_slice_is_emptied_when_the_last_pod_goes(
    kube: FakeKube, engines: Engines, controller: Controllers, adapter_dir: Path
) -> None:
    """With no pod left the EndpointSlice empties, no traffic goes to a pod that lost the adapter. The real API
    server validates a create before it finds the slice exists: an emptied slice must still carry addressType
    (it answered 422 "addressType: Required value" for every pass, and the slice kept the gone pod)."""
    pod_with_runtime(kube, engines, "only")
    controller()
    kube.add_adapter("orphan", artifactURL=str(adapter_dir), replicas=1)
    kube.wait_adapter("orphan", running)
    kube.delete(POD.format("only"))
    deadline = time.monotonic() + 15
    while (kube.get(SLICE.format("orphan")) or {}).get("endpoints"):
        assert time.monotonic() < deadline, kube.get(SLICE.format("orphan"))
        time.sleep(0.1)
    assert kube.get(SLICE.format("orphan"))["addressType"] == "IPv4"  # type: ignore[index]
    kube.wait_adapter("orphan", lambda o: phase(o) == "Pending", timeout=10)  # the status follows the slice's write
