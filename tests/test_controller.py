"""The ModelAdapter controller against the fake Kubernetes API, with real runtimes and engine simulators as pods."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kube import ADAPTERS, FakeKube, phase, running
from procs import Proc, free_port, start_runtime, start_sim

SERVICE = "/api/v1/namespaces/default/services/{}"
SLICE = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/{}"
POD = "/api/v1/namespaces/default/pods/{}"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    server = FakeKube(tmp_path)
    yield server
    server.stop()


class Engines:
    """Engine simulators (and runtimes in front of them) started on demand and stopped at the end."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def sim(self, *args: str, engine: str = "vllm", port: int | None = None) -> Proc:
        proc = start_sim(engine, *args, port=port)
        self.procs.append(proc)
        return proc

    def runtime(self, sim: Proc, engine: str = "vllm") -> Proc:
        proc = start_runtime(engine, sim.url)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def engines() -> Iterator[Engines]:
    group = Engines()
    yield group
    group.stop()


Controllers = Callable[..., Proc]


@pytest.fixture
def controller(kube: FakeKube) -> Iterator[Controllers]:
    started: list[Proc] = []

    def start(*args: str) -> Proc:
        port = free_port()
        argv = [sys.executable, "-m", "aibrix.controller.cli", "--kubeconfig", str(kube.kubeconfig),
                "--health-probe-bind-address", f"127.0.0.1:{port}", "--metrics-bind-address", "0",
                "--leader-election-namespace", "default", "--retry-base-seconds", "0.2",
                "--stability-seconds", "1", "--resync-seconds", "1", "--lease-duration", "2",
                "--renew-deadline", "1.5", "--retry-period", "0.3", "--unload-timeout", "1",
                "--deletion-timeout", "3", *args]  # fmt: skip
        proc = Proc(argv, port)
        proc.wait_http("/healthz")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def adapters_on(url: str) -> set[str]:
    cards = httpx.get(url + "/v1/models", timeout=5).json()["data"]
    return {card["id"] for card in cards if card.get("parent")}


def pod_with_runtime(kube: FakeKube, engines: Engines, name: str, *sim_args: str) -> tuple[Proc, Proc]:
    sim = engines.sim(*sim_args)
    runtime = engines.runtime(sim)
    kube.add_pod(name, runtime=runtime, engine=sim)
    return sim, runtime


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


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
    assert "adapter.model.aibrix.ai/finalizer" in obj["metadata"]["finalizers"]
    assert "my-lora" in adapters_on(sim.url)

    service = kube.get(SERVICE.format("my-lora"))
    assert service is not None
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "protocol": "TCP", "targetPort": 8000}]
    assert service["metadata"]["labels"] == {"model.aibrix.ai/name": "my-lora", "adapter.model.aibrix.ai/name": "my-lora"}
    assert service["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    endpoint_slice = kube.get(SLICE.format("my-lora"))
    assert endpoint_slice is not None
    assert endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "my-lora"
    assert [e["targetRef"]["name"] for e in endpoint_slice["endpoints"]] == ["base-0"]
    assert endpoint_slice["endpoints"][0]["addresses"] == ["127.0.0.1"]
    assert endpoint_slice["ports"][0]["port"] == sim.port

    events = kube.items("/api/v1/namespaces/default/events")
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "my-lora"}
    assert {"Scheduled", "Loaded"} <= reasons
