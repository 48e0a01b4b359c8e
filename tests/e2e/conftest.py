"""What only the end-to-end tests start: Ceph's S3 gateway and real vLLM, once per session each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.procs import free_port
from tests.helpers.real_vllm import RealVLLM, WideVLLM, install_resolver_plugin
from tests.helpers.services import RadosGateway


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadosGateway]:
    """One Ceph S3 gateway for the whole session (it takes ~13 s to start)."""
    gateway = RadosGateway(tmp_path_factory.mktemp("ceph"))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def resolver_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our vLLM plugin, installed once for the engines that have it."""
    return install_resolver_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="session")
def real_vllm(resolver_plugin: Path) -> Iterator[RealVLLM]:
    """One real vLLM (CPU build, tiny model, no API key) for the whole session: it takes 20-40 s to start. Our
    resolver plugin is installed in it but not enabled, as in an engine image that ships it switched off: every
    test against this engine shows that the plugin changes nothing until it is enabled."""
    # the worker in a process of its own, vLLM's default on CPU: the conformance table compares error texts, and an
    # in-process worker words a failed load differently ("Call to add_lora method failed: ...")
    env = {"PYTHONPATH": str(resolver_plugin), "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    engine = RealVLLM(env=env).start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def wide_vllm(resolver_plugin: Path) -> Iterator[WideVLLM]:
    """A second real vLLM, different from the first where the tests need it: --max-lora-rank 64 (the first takes 8)
    and our resolver plugin enabled. The rank tests and the resolver tests share it: one start instead of two."""
    port = free_port()
    env = {
        "PYTHONPATH": str(resolver_plugin),
        "AIBRIX_LORA_RESOLVER": "1",
        "AIBRIX_LORA_RESOLVER_URL": f"http://127.0.0.1:{port}",
    }
    engine = RealVLLM(env=env, args=["--max-lora-rank", "64"]).start()
    yield WideVLLM(engine, port)
    engine.stop()
