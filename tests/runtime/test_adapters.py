"""Adapter management through the real runtime in front of the real simulator, for vLLM and SGLang."""

from __future__ import annotations

import asyncio
import shutil

import httpx
import pytest

from tests.helpers.procs import Proc
from tests.helpers.runtime_api import assert_error, load


def unload(client: httpx.Client, runtime: Proc, name: str) -> httpx.Response:
    return client.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": name})


def model_ids(client: httpx.Client, runtime: Proc) -> dict[str, str | None]:
    response = client.get(f"{runtime.url}/v1/models")
    assert response.status_code == 200
    return {card["id"]: card["parent"] for card in response.json()["data"]}


def test_load_list_unload(stack, client, adapter_dir):
    _, _, runtime = stack
    response = load(client, runtime, "lora-2", adapter_dir)
    assert response.status_code == 200, response.text
    assert response.json()["already_loaded"] is False

    models = model_ids(client, runtime)
    assert models["lora-2"] == "base-model"
    assert models["base-model"] is None

    assert unload(client, runtime, "lora-2").status_code == 200
    assert "lora-2" not in model_ids(client, runtime)


def test_model_cards_are_openai_shaped(stack, client, adapter_dir):
    _, _, runtime = stack
    load(client, runtime, "cards", adapter_dir)
    body = client.get(f"{runtime.url}/v1/models").json()
    assert body["object"] == "list"
    adapter = next(card for card in body["data"] if card["id"] == "cards")
    assert adapter["object"] == "model"
    assert adapter["root"] == str(adapter_dir)
    unload(client, runtime, "cards")


def test_load_is_idempotent_for_same_path(stack, client, adapter_dir):
    _, _, runtime = stack
    assert load(client, runtime, "idem", adapter_dir).json()["already_loaded"] is False
    again = load(client, runtime, "idem", str(adapter_dir) + "/")
    assert again.status_code == 200
    assert again.json()["already_loaded"] is True
    unload(client, runtime, "idem")


def test_same_name_other_path_conflicts(stack, client, adapter_dir, tmp_path):
    _, _, runtime = stack
    other = shutil.copytree(adapter_dir, tmp_path / "other")  # a good adapter, from another path
    load(client, runtime, "clash", adapter_dir)
    assert_error(load(client, runtime, "clash", other), 409, "already loaded", str(other))
    assert model_ids(client, runtime)["clash"] == "base-model"
    unload(client, runtime, "clash")


def test_unload_unknown_is_404(stack, client):
    _, _, runtime = stack
    assert_error(unload(client, runtime, "never-loaded"), 404, "never-loaded")


def test_engine_rejection_passes_through(stack, client):
    engine, _, runtime = stack
    response = load(client, runtime, "missing", "/definitely/not/here")
    expected = {"vllm": 404, "sglang": 400}[engine]
    assert_error(response, expected, "/definitely/not/here")


RULE = "letters, digits, '.', '_' and '-' (at most 253), not starting with '.' and without '..'"


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"lora_path": "/x"}', 422, "lora_name"),
        (b'{"lora_name": "ok"}', 422, "lora_path"),
        (b'{"lora_name": "a/b", "lora_path": "/x"}', 422, RULE),
        (b'{"lora_name": "../etc", "lora_path": "/x"}', 422, RULE),
        (b'{"lora_name": ".hidden", "lora_path": "/x"}', 422, RULE),
        (b'{"lora_name": "a..b", "lora_path": "/x"}', 422, RULE),
        (b'{"lora_name": "with space", "lora_path": "/x"}', 422, RULE),
        (b'{"lora_name": "ok", "lora_path": ""}', 422, "lora_path"),
        (b'{"lora_name": "ok", "lora_path": "/x\\u0000y"}', 422, "control characters"),
    ],
)
def test_bad_input_is_a_clear_error(stack, client, body, status, fragment):
    _, _, runtime = stack
    response = client.post(f"{runtime.url}/v1/lora_adapter/load", content=body)
    assert_error(response, status, fragment)


@pytest.mark.parametrize("name", ["team-a.qwen-lora.v2", "sql_lora", "Upper_Case-1", "-dash", "x" * 253])
def test_kubernetes_names_and_upstreams_adapter_names_are_accepted(stack, client, adapter_dir, name):
    """Upstream accepts [A-Za-z0-9_-] (vLLM's own documents load "sql_lora"); the controller uses Kubernetes names."""
    _, _, runtime = stack
    assert load(client, runtime, name, adapter_dir).status_code == 200
    listed = [a["name"] for a in client.get(f"{runtime.url}/v1/lora_adapter").json()["data"]]
    assert name in listed
    assert unload(client, runtime, name).status_code == 200


def test_unknown_route_is_json_404(stack, client):
    _, _, runtime = stack
    assert_error(client.get(f"{runtime.url}/v1/nothing"), 404, "/v1/nothing")
    assert_error(client.get(f"{runtime.url}/v1/lora_adapter/load"), 405)


def test_concurrent_loads_of_one_name_are_serialized(stack, adapter_dir):
    """Twenty simultaneous loads: the engine sees one load at a time, so exactly one creates the adapter."""
    _, _, runtime = stack

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as aclient:
            body = {"lora_name": "racy", "lora_path": str(adapter_dir)}
            return await asyncio.gather(
                *(aclient.post(f"{runtime.url}/v1/lora_adapter/load", json=body) for _ in range(20))
            )

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 20
    assert sum(not r.json()["already_loaded"] for r in responses) == 1
    with httpx.Client() as client:
        assert unload(client, runtime, "racy").status_code == 200


def test_concurrent_load_and_unload_leave_engine_consistent(stack, adapter_dir):
    """Interleaved loads and unloads of one name end in a state both the runtime and the engine agree on."""
    _, sim, runtime = stack

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as aclient:
            calls = []
            for i in range(16):
                if i % 2:
                    calls.append(aclient.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "flip"}))
                else:
                    body = {"lora_name": "flip", "lora_path": str(adapter_dir)}
                    calls.append(aclient.post(f"{runtime.url}/v1/lora_adapter/load", json=body))
            return await asyncio.gather(*calls)

    responses = asyncio.run(run())
    assert {r.status_code for r in responses} <= {200, 404}
    with httpx.Client() as client:
        in_runtime = "flip" in model_ids(client, runtime)
        in_engine_reply = unload(client, runtime, "flip")
        assert (in_engine_reply.status_code == 200) == in_runtime
