"""The controller at the edges: IPv6 pods, secrets that are not text, an Event when no pod matches, a one-line answer
when its extra is missing, the last pod going, a name loaded from another path, a pod that answers an unload only
later, and a Service deleted by hand."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.kube import FakeKube, fast_flags, phase, running
from tests.helpers.procs import Proc, free_port

FAST = fast_flags()


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    server = FakeKube(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def running_direct(kube: FakeKube, adapter_dir: Path) -> Iterator[Proc]:
    """Adapter ``lora-x`` Running on pod ``base-0`` (a simulator, loaded directly); yields the simulator."""
    from tests.helpers.procs import start_sim

    sim = start_sim("vllm")
    controller = kube.start_controller(*FAST, "--enable-runtime-sidecar=false")
    try:
        kube.add_pod("base-0", engine=sim)
        kube.add_adapter("lora-x", artifactURL=str(adapter_dir), replicas=1)
        kube.wait_adapter("lora-x", running, timeout=15)
        yield sim
    finally:
        controller.stop()
        sim.stop()


def on_ipv6_loopback(argv: list[str], port: int, env: dict[str, str] | None = None) -> Proc:
    proc = Proc(argv, port, env)
    proc.url = f"http://[::1]:{port}"
    proc.wait_http("/health" if "aibrix.sim.cli" in argv else "/healthz")
    return proc


def test_pods_with_ipv6_addresses_are_reached_in_brackets(kube: FakeKube, adapter_dir: Path, tmp_path: Path) -> None:
    sim_port, runtime_port = free_port(), free_port()
    sim = on_ipv6_loopback(
        [
            sys.executable,
            "-m",
            "aibrix.sim.cli",
            "--engine",
            "vllm",
            "--host",
            "::1",
            "--port",
            str(sim_port),
            "--model",
            "base-model",
        ],
        sim_port,
        {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true"},
    )
    runtime = on_ipv6_loopback(
        [sys.executable, "-m", "aibrix.runtime.cli", "--host", "::1", "--port", str(runtime_port)],
        runtime_port,
        {
            "INFERENCE_ENGINE": "vllm",
            "INFERENCE_ENGINE_ENDPOINT": sim.url,
            "AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters"),
        },
    )
    controller = None
    try:
        kube.add_pod("v6-0", runtime=runtime, engine=sim)
        kube.patch_status("/api/v1/namespaces/default/pods/v6-0", {"podIP": "::1", "podIPs": [{"ip": "::1"}]})
        controller = kube.start_controller(*FAST)
        kube.add_adapter("v6-lora", artifactURL=str(adapter_dir), replicas=1)
        obj = kube.wait_adapter("v6-lora", running, timeout=20)
        assert obj["status"]["instances"] == ["v6-0"]
        endpoint_slice = kube.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/v6-lora")
        assert endpoint_slice is not None and endpoint_slice["addressType"] == "IPv6"
        assert endpoint_slice["endpoints"][0]["addresses"] == ["::1"]
    finally:
        for proc in (controller, runtime, sim):
            if proc is not None:
                proc.stop()


def test_a_secret_value_that_is_not_text_fails_once_with_the_key_named(kube: FakeKube, adapter_dir: Path) -> None:
    kube.add_pod("base-0")
    secret = {"metadata": {"name": "binary"}, "data": {"aws_secret_access_key": base64.b64encode(b"\xff\xfe").decode()}}
    kube.create("/api/v1/namespaces/default/secrets", secret)
    controller = kube.start_controller(*FAST, "--enable-runtime-sidecar=false")
    try:
        kube.add_adapter(
            "binary-secret", artifactURL=str(adapter_dir), replicas=1, credentialsSecretRef={"name": "binary"}
        )
        failed = kube.wait_adapter("binary-secret", lambda o: phase(o) == "Failed", timeout=15)
        ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
        assert "'aws_secret_access_key' is not UTF-8 text" in ready["message"]
        assert controller.popen.poll() is None  # no crash loop
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", failed["status"]["nextAttemptTime"])
    finally:
        controller.stop()


def test_an_adapter_no_pod_matches_says_so_in_an_event(kube: FakeKube, adapter_dir: Path) -> None:
    controller = kube.start_controller(*FAST)
    try:
        kube.add_adapter("lonely", artifactURL=str(adapter_dir), replicas=1)
        kube.wait_adapter("lonely", lambda o: phase(o) == "Pending", timeout=15)
        assert "spec.podSelector" in kube.wait_event("lonely", "NoCandidatePods")["message"]
    finally:
        controller.stop()


def test_the_controller_without_its_extra_says_what_to_install_in_one_line() -> None:
    code = (
        "import sys; sys.modules['lightkube'] = None\n"
        "from aibrix.controller.cli import main; main(['--kubeconfig', '/nonexistent'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "aibrix_controller: the controller needs its extra: pip install 'aibrix[controller]'"
    )


def test_when_the_last_pod_goes_the_endpoint_slice_is_emptied(kube: FakeKube, running_direct: Proc) -> None:
    """Seen with kubectl: phase Pending, and a slice still sending traffic to a pod that no longer exists."""
    path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/lora-x"
    before = kube.get(path)
    assert before is not None and [e["targetRef"]["name"] for e in before["endpoints"]] == ["base-0"]
    service = kube.get("/api/v1/namespaces/default/services/lora-x")
    assert service is not None and service["spec"]["ports"][0]["port"] == running_direct.port  # the engine's port
    kube.delete("/api/v1/namespaces/default/pods/base-0")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (kube.get(path) or {}).get("endpoints"):
        time.sleep(0.1)
    after = kube.get(path)
    assert after is not None and not after.get("endpoints"), after
    assert phase(kube.adapter("lora-x") or {}) != "Running"


@pytest.mark.parametrize("mode", ["sidecar", "direct"])
def test_a_pod_holding_the_name_from_another_path_ends_up_serving_the_spec(
    kube: FakeKube, adapter_dir: Path, tmp_path: Path, mode: str
) -> None:
    """An artifactURL change whose unload failed, or a copy loaded by hand, used to count as loaded (a 409 or the
    engine's "already loaded" were taken for success) while the pod served the old weights."""
    import httpx

    from tests.helpers.procs import start_runtime, start_sim

    old = tmp_path / "old-weights"
    old.mkdir()
    (old / "adapter_config.json").write_text('{"r": 8}')
    sim = start_sim("vllm")
    runtime = start_runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")})
    controller = None
    try:
        target = runtime.url + "/v1/lora_adapter/load" if mode == "sidecar" else sim.url + "/v1/load_lora_adapter"
        assert httpx.post(target, json={"lora_name": "swap", "lora_path": str(old)}, timeout=10).status_code == 200
        kube.add_pod("base-0", runtime=runtime if mode == "sidecar" else None, engine=sim)
        flags = () if mode == "sidecar" else ("--enable-runtime-sidecar=false",)
        controller = kube.start_controller(*FAST, *flags)
        kube.add_adapter("swap", artifactURL=str(adapter_dir), replicas=1)
        kube.wait_adapter("swap", running, timeout=20)
        cards = httpx.get(sim.url + "/v1/models", timeout=10).json()["data"]
        assert {c["id"]: c["root"] for c in cards if c.get("parent")} == {"swap": str(adapter_dir)}
    finally:
        for proc in (controller, runtime, sim):
            if proc is not None:
                proc.stop()


def test_a_deleted_adapter_is_unloaded_from_a_pod_that_answers_only_later(
    kube: FakeKube, adapter_dir: Path, tmp_path: Path
) -> None:
    """Finalization used to treat a failed unload as done: the runtime kept its record and brought the adapter back.
    Now the unload is retried (bounded by --deletion-timeout) and the finalizer stays until it succeeds."""
    import os
    import signal

    import httpx

    from tests.helpers.procs import start_runtime, start_sim

    sim = start_sim("vllm")
    runtime = start_runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")})
    controller = kube.start_controller(*fast_flags("0.5", "20"))
    try:
        kube.add_pod("base-0", runtime=runtime, engine=sim)
        kube.add_adapter("sticky", artifactURL=str(adapter_dir), replicas=1)
        kube.wait_adapter("sticky", running, timeout=15)
        os.killpg(runtime.popen.pid, signal.SIGSTOP)  # the runtime stops answering for a while
        kube.delete("/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters/sticky")
        time.sleep(2)
        assert kube.adapter("sticky") is not None  # held: the unload has not gone through yet
        os.killpg(runtime.popen.pid, signal.SIGCONT)
        kube.wait_gone("/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters/sticky", timeout=15)
        cards = httpx.get(sim.url + "/v1/models", timeout=5).json()["data"]
        assert not [c for c in cards if c["id"] == "sticky"]
        assert httpx.get(runtime.url + "/v1/lora_adapter", timeout=5).json()["data"] == []
    finally:
        controller.stop()
        runtime.stop()
        sim.stop()


def test_a_service_deleted_by_hand_is_written_again_at_once(kube: FakeKube, running_direct: Proc) -> None:
    """It used to come back only after the controller's 300 s apply memory ran out."""
    for path in (
        "/api/v1/namespaces/default/services/lora-x",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/lora-x",
    ):
        assert kube.get(path) is not None
        kube.delete(path)
        deadline = time.monotonic() + 5
        while kube.get(path) is None:
            assert time.monotonic() < deadline, f"{path} was not written again"
            time.sleep(0.05)


def test_an_artifact_digest_is_checked_on_the_pod_and_a_change_reloads(kube: FakeKube, tmp_path: Path) -> None:
    """spec.artifactDigest reaches the runtime, which refuses files that do not match it (Failed at once, the reason
    said); the right digest loads; editing the digest loads the adapter again and the status records it."""
    import httpx

    from aibrix.peft import folder_digest
    from tests.helpers.procs import start_runtime, start_sim

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "adapter_config.json").write_text('{"r": 8}')
    sim = start_sim("vllm")
    runtime = start_runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")})
    controller = None
    try:
        kube.add_pod("base-0", runtime=runtime, engine=sim)
        controller = kube.start_controller(*FAST)
        kube.add_adapter("pinned", artifactURL=str(weights), replicas=1, artifactDigest="sha256:" + "0" * 64)
        failed = kube.wait_adapter("pinned", lambda o: phase(o) == "Failed", timeout=20)
        ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
        assert "not the expected sha256:0000" in ready["message"], ready
        digest = folder_digest(weights)
        kube.patch_adapter("pinned", {"spec": {"artifactDigest": digest}})
        loaded = kube.wait_adapter("pinned", running, timeout=20)
        assert loaded["status"]["artifactDigest"] == digest
        (weights / "README.md").write_text("a new version")
        digest = folder_digest(weights)
        kube.patch_adapter("pinned", {"spec": {"artifactDigest": digest}})
        kube.wait_adapter("pinned", lambda o: (o.get("status") or {}).get("artifactDigest") == digest, timeout=20)
        assert "pinned" in httpx.get(sim.url + "/v1/models", timeout=10).text
    finally:
        for proc in (controller, runtime, sim):
            if proc is not None:
                proc.stop()
