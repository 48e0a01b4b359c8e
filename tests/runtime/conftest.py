"""The runtime's fixtures: a simulator with a runtime in front of it, per engine, and one whose HF_ENDPOINT is a Hub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.procs import Proc, start_runtime, start_sim


@pytest.fixture(scope="module", params=["vllm", "sglang"])
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[str, Proc, Proc]]:
    """An engine simulator and a runtime in front of it, for each engine with a LoRA API."""
    sim = start_sim(request.param, "--lora-load-ms", "20")
    runtime = start_runtime(request.param, sim.url)
    yield request.param, sim, runtime
    runtime.stop()
    sim.stop()


@pytest.fixture
def hub_stack(tmp_path, hub):
    """A vLLM simulator and a runtime whose HF_ENDPOINT is a hub serving org/sql-lora (and a private copy)."""
    sim = start_sim("vllm")
    adapters = tmp_path / "adapters"
    runtime = start_runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(adapters), "HF_ENDPOINT": hub.url})
    yield sim, runtime, adapters
    runtime.stop()
    sim.stop()
