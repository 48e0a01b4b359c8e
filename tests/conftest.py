"""Fixtures every area uses: processes started per test, an adapter folder, a Hub server, a small disk, the
Kubernetes API servers. Each area's conftest.py adds its own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.artifacts import ADAPTER
from tests.helpers.hf_server import HubServer, Repo
from tests.helpers.procs import ProcGroup
from tests.helpers.real_kube import ControlPlane

# The controller scenarios' fixtures (kube, engines, controller): the controller's tests and the end-to-end ones.
pytest_plugins = ["tests.helpers.controller_env"]


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
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager for the whole session (built by scripts/build_kube.sh)."""
    plane = ControlPlane(tmp_path_factory.mktemp("kube"))
    yield plane
    plane.stop()


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
