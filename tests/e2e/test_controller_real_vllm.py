"""The ModelAdapter controller loading adapters onto a real vLLM pod, through the runtime sidecar and directly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.kube import ADAPTERS, FakeKube, fast_flags, phase, running
from tests.helpers.procs import start_runtime
from tests.helpers.real_vllm import RealVLLM, WideVLLM, serving_args, tiny_models

pytestmark = pytest.mark.real_vllm
FAST = fast_flags("5", "10")


@pytest.fixture(params=["sidecar", "direct"])
def real_pod(request: pytest.FixtureRequest, real_vllm: RealVLLM, tmp_path: Path) -> Iterator[FakeKube]:
    """A pod whose engine is the session's real vLLM, with a runtime sidecar or without, and a controller."""
    kube = FakeKube(tmp_path)
    runtime = start_runtime("vllm", real_vllm.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")})
    controller = None
    try:
        sidecar = request.param == "sidecar"
        kube.add_pod(
            "real-0",
            runtime=runtime if sidecar else None,  # type: ignore[arg-type]
            engine=real_vllm,  # type: ignore[arg-type]
            args=serving_args(tiny_models()),  # its limits, as a pod spec would say them
        )
        controller = kube.start_controller(*FAST, *(() if sidecar else ("--enable-runtime-sidecar=false",)))
        yield kube
    finally:
        if controller is not None:
            controller.stop()
        runtime.stop()
        kube.stop()


def wait_until(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_an_adapter_reaches_running_on_real_vllm_and_serves(
    real_vllm: RealVLLM, real_pod: FakeKube, request: pytest.FixtureRequest
) -> None:
    kube = real_pod
    name = f"ctl-{request.node.callspec.params['real_pod']}"
    kube.add_adapter(name, artifactURL=str(tiny_models() / "lora-r8"), replicas=1)
    obj = kube.wait_adapter(name, running, timeout=60)
    assert obj["status"]["instances"] == ["real-0"]
    assert name in real_vllm.adapters()
    completion = real_vllm.complete(name)
    assert completion.status_code == 200, completion.text

    kube.delete(ADAPTERS.format(ns="default") + f"/{name}")
    kube.wait_gone(ADAPTERS.format(ns="default") + f"/{name}", timeout=30)
    assert wait_until(lambda: name not in real_vllm.adapters(), 10)


def test_an_adapter_above_the_pods_rank_limit_is_kept_off_it_and_the_status_says_why(
    real_vllm: RealVLLM, real_pod: FakeKube
) -> None:
    """Rank above --max-lora-rank: vLLM says 500, which used to be retried 5 times per pod. It is the pod's limit, not
    the adapter's fault: vLLM is asked once, the rank is learned, and the status says why no pod holds it."""
    assert real_vllm.proc is not None

    def loads_asked() -> int:
        return real_vllm.proc.output(10**8).count("POST /v1/load_lora_adapter")  # type: ignore[union-attr]

    before = loads_asked()
    real_pod.add_adapter("too-big", artifactURL=str(tiny_models() / "lora-r64"), replicas=1)
    said = "0 of 1 placeable: 1 pod lacks rank >= 64"
    stuck = real_pod.wait_adapter("too-big", lambda o: said in json.dumps(o.get("status", {})), timeout=30)
    assert phase(stuck) == "Pending" and stuck["status"]["rank"] == 64
    ready = next(c for c in stuck["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RankTooHigh"
    time.sleep(3)  # later passes (and cool-downs ending) never ask vLLM again
    assert loads_asked() == before + 1


def test_two_engines_with_different_rank_limits_hold_only_what_fits(
    real_vllm: RealVLLM, wide_vllm: WideVLLM, tmp_path: Path
) -> None:
    """A second real vLLM with --max-lora-rank 64 beside the session's (8): an adapter of rank 64 with replicas
    omitted lands only on the wide one, the status says why not on the other, and completions through it work."""
    wide = wide_vllm.engine
    kube = FakeKube(tmp_path)
    runtimes = [
        start_runtime("vllm", engine.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / f"adapters-{i}")})
        for i, engine in enumerate((real_vllm, wide))
    ]
    controller = None
    try:
        kube.add_pod("rank-8", runtime=runtimes[0], engine=real_vllm, args=real_vllm.args)  # type: ignore[arg-type]
        kube.add_pod("rank-64", runtime=runtimes[1], engine=wide, args=wide.args)  # type: ignore[arg-type]
        controller = kube.start_controller(*FAST)
        kube.add_adapter("wide-lora", artifactURL=str(tiny_models() / "lora-r64"))
        said = "1 of 2 placeable: 1 pod lacks rank >= 64"
        done = kube.wait_adapter("wide-lora", lambda o: running(o) and said in json.dumps(o["status"]), timeout=60)
        assert done["status"]["instances"] == ["rank-64"] and done["status"]["rank"] == 64
        completion = wide.complete("wide-lora")
        assert completion.status_code == 200, completion.text
        assert "wide-lora" not in real_vllm.adapters()
    finally:
        if controller is not None:
            controller.stop()
        for runtime in runtimes:
            runtime.stop()
        kube.stop()
