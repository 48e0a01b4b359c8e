"""What the controller scenarios share: the API server (fake or real), engines and runtimes as pods, controllers
started with fast timings, and small readers of what they produced."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.kube import FakeKube, fast_flags
from tests.helpers.procs import HOST, Proc, ProcGroup
from tests.helpers.real_kube import RealKube, pod_ip

SERVICE = "/api/v1/namespaces/default/services/{}"
SLICE = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/{}"
POD = "/api/v1/namespaces/default/pods/{}"


@pytest.fixture(params=["fake", "real"])
def kube(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeKube]:
    """Each scenario runs against the fake API server and against a real kube-apiserver (tests/helpers/real_kube.py)."""
    if request.param == "fake":
        server = FakeKube(tmp_path)
        yield server
        server.stop()
        return
    real = RealKube(request.getfixturevalue("control_plane"))
    real.plane.reset()
    yield real
    real.stop()


class Engines(ProcGroup):
    """A ProcGroup whose sims take their arguments first (engine by keyword), as the scenarios read."""

    def sim(self, *args: str, engine: str = "vllm", port: int | None = None, env: dict[str, str] | None = None) -> Proc:  # type: ignore[override]
        return super().sim(engine, *args, port=port, env=env)

    def runtime(self, sim: Proc, engine: str = "vllm", *args: str, env: dict[str, str] | None = None) -> Proc:  # type: ignore[override]
        return super().runtime(engine, sim.url, *args, env=env)


@pytest.fixture
def engines(kube: FakeKube) -> Iterator[Engines]:
    group = Engines(pod_ip() if isinstance(kube, RealKube) else HOST)
    yield group
    group.stop()


Controllers = Callable[..., Proc]


@pytest.fixture
def controller(kube: FakeKube) -> Iterator[Controllers]:
    started: list[Proc] = []

    def start(*args: str) -> Proc:
        proc = kube.start_controller(
            *fast_flags(),
            *("--lease-duration", "2", "--renew-deadline", "1.5", "--retry-period", "0.3"),
            *args,
        )
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


def metric(proc: Proc, series: str) -> float:
    """One series' value on a process's /metrics page (0 when absent)."""
    for line in httpx.get(proc.url + "/metrics", timeout=5).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0
