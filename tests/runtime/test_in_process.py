"""The runtime's API in process (``build_app`` under Starlette's test client, no process, no engine): what a caller
gets for bad input, missing configuration and an engine that is down, in milliseconds. What needs an engine, a
store or a restart runs against real processes in the other runtime tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from aibrix.runtime.app import build_app
from aibrix.runtime.settings import load_settings

DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port: the engine is down


def client_for(tmp_path: Path, **env: str) -> TestClient:
    environ = {"INFERENCE_ENGINE_ENDPOINT": DOWN, "AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters"), **env}
    return TestClient(build_app(load_settings([], environ)), raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(tmp_path, INFERENCE_ENGINE_TIMEOUT="1", AIBRIX_MAX_BODY_BYTES="4096") as c:
        yield c


LOAD, RESOLVE, UNLOAD = "/v1/lora_adapter/load", "/v1/lora_adapter/resolve", "/v1/lora_adapter/unload"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind", "says"),
    [
        ("POST", LOAD, b"{not json", 400, "BadRequest", ""),
        ("POST", LOAD, {"lora_name": "a", "lora_path": "/p", "artifact_url": "s3://b/k"}, 422, "", "exactly one"),
        ("POST", LOAD, {"lora_name": "../up", "lora_path": "/p"}, 422, "", "lora_name"),
        ("POST", LOAD, {"lora_name": "a", "lora_path": "/p" + "x" * 5000}, 413, "", "4096"),
        ("POST", LOAD, {"lora_name": "a", "lora_path": "/p"}, 502, "EngineUnavailable", ""),
        ("POST", UNLOAD, {"lora_name": "a"}, 502, "EngineUnavailable", ""),
        ("POST", RESOLVE, {"lora_name": "a"}, 404, "AdapterNotFound", "AIBRIX_LORA_SOURCE is not set"),
        ("POST", RESOLVE, {"lora_name": ".hidden"}, 422, "", "lora_name"),
        ("GET", "/ready", None, 503, "EngineNotReady", "engine not ready"),
        ("GET", "/nowhere", None, 404, "NotFound", "GET /nowhere"),
        ("DELETE", LOAD, None, 405, "MethodNotAllowed", ""),
    ],
)
def test_what_a_caller_gets_without_an_engine(
    client: TestClient, method: str, path: str, body: object, status: int, kind: str, says: str
) -> None:
    content = body if isinstance(body, bytes) else None
    response = client.request(method, path, json=None if content else body, content=content)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["type"] and (not kind or error["type"] == kind)
    assert says in error["message"]


def test_health_listing_and_metrics_answer_while_the_engine_is_down(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/lora_adapter").json() == {"object": "list", "data": []}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "aibrix:engine_up 0" in metrics.text


def test_the_runtime_key_guards_everything_but_probes_and_metrics(tmp_path: Path) -> None:
    with client_for(tmp_path, AIBRIX_RUNTIME_API_KEY="k-123") as c:
        assert c.get("/v1/lora_adapter").status_code == 401
        assert c.post(RESOLVE, json={"lora_name": "a"}).status_code == 401
        assert c.get("/v1/lora_adapter", headers={"Authorization": "Bearer k-123"}).status_code == 200
        assert [c.get(p).status_code for p in ("/healthz", "/metrics")] == [200, 200]
