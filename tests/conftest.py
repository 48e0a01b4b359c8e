from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hf_server import HubServer, Repo  # noqa: E402
from procs import Proc, ProcGroup, start_runtime, start_sim  # noqa: E402
from real_kube import ControlPlane  # noqa: E402
from real_vllm import RealVLLM  # noqa: E402
from services import RadosGateway  # noqa: E402

# The controller scenarios' fixtures (kube, engines, controller), shared by the modules that test the controller.
pytest_plugins = ["controller_env"]


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadosGateway]:
    """One Ceph S3 gateway for the whole session (it takes ~13 s to start)."""
    gateway = RadosGateway(tmp_path_factory.mktemp("ceph"))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module", params=["vllm", "sglang"])
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[str, Proc, Proc]]:
    """An engine simulator and a runtime in front of it, for each engine with a LoRA API."""
    sim = start_sim(request.param, "--lora-load-ms", "20")
    runtime = start_runtime(request.param, sim.url)
    yield request.param, sim, runtime
    runtime.stop()
    sim.stop()


@pytest.fixture
def procs() -> Iterator[ProcGroup]:
    """Start simulators and runtimes with ``procs.sim(...)`` and ``procs.runtime(...)``; all stop after the test."""
    group = ProcGroup()
    yield group
    group.stop()


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    path = tmp_path / "my-lora"
    path.mkdir()
    (path / "adapter_config.json").write_text('{"r": 8}')
    return path


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, to see what a full disk does (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.fixture(scope="session")
def real_vllm() -> Iterator[RealVLLM]:
    """One real vLLM (CPU build, tiny model, no API key) for the whole session: it takes 30-60 s to start."""
    engine = RealVLLM().start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager for the whole session (built by scripts/build_kube.sh)."""
    plane = ControlPlane(tmp_path_factory.mktemp("kube"))
    yield plane
    plane.stop()


ADAPTER = {"adapter_config.json": b'{"r": 8, "lora_alpha": 16}', "adapter_model.safetensors": os.urandom(3 << 20)}


@pytest.fixture(scope="module")
def adapter_repo(tmp_path_factory) -> Path:
    """A folder holding ADAPTER's files, served by ``hub`` as org/sql-lora."""
    root = tmp_path_factory.mktemp("hub") / "sql-lora"
    root.mkdir()
    for name, data in ADAPTER.items():
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def hub(adapter_repo):
    with HubServer({"org/sql-lora": Repo(adapter_repo), "org/private-lora": Repo(adapter_repo, private=True)}) as s:
        yield s


@pytest.fixture
def hub_stack(tmp_path, hub):
    """A vLLM simulator and a runtime whose HF_ENDPOINT is a hub serving org/sql-lora (and a private copy)."""
    sim = start_sim("vllm")
    adapters = tmp_path / "adapters"
    runtime = start_runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(adapters), "HF_ENDPOINT": hub.url})
    yield sim, runtime, adapters
    runtime.stop()
    sim.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A scenario only the fake API server can stage has no real-server variant: leave it out, not skipped (each is
    covered by a real-only test in test_real_kube.py)."""
    keep, drop = [], []
    for item in items:
        real = getattr(item, "callspec", None) is not None and item.callspec.params.get("kube") == "real"
        (drop if real and item.get_closest_marker("fake_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
