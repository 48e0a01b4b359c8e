"""What only the end-to-end tests start: Ceph's S3 gateway and real vLLM, once per session each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.real_vllm import RealVLLM
from tests.helpers.services import RadosGateway


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadosGateway]:
    """One Ceph S3 gateway for the whole session (it takes ~13 s to start)."""
    gateway = RadosGateway(tmp_path_factory.mktemp("ceph"))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def real_vllm() -> Iterator[RealVLLM]:
    """One real vLLM (CPU build, tiny model, no API key) for the whole session: it takes 30-60 s to start."""
    engine = RealVLLM().start()
    yield engine
    engine.stop()
