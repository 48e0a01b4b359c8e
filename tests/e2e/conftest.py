"""What only the end-to-end tests start: Ceph's S3 gateway and real vLLM, once per session each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.real_vllm import RealVLLM, install_resolver_plugin
from tests.helpers.services import RadosGateway


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadosGateway]:
    """One Ceph S3 gateway for the whole session (it takes ~13 s to start)."""
    gateway = RadosGateway(tmp_path_factory.mktemp("ceph"))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def real_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealVLLM]:
    """One real vLLM (CPU build, tiny model, no API key) for the whole session: it takes 30-60 s to start. Our
    resolver plugin is installed in it but not enabled, as in an engine image that ships it switched off: every
    test against this engine shows that the plugin changes nothing until it is enabled."""
    plugin = install_resolver_plugin(tmp_path_factory.mktemp("plugin"))
    engine = RealVLLM(env={"PYTHONPATH": str(plugin)}).start()
    yield engine
    engine.stop()
