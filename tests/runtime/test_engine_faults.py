"""What the runtime answers when the engine is down, slow, guarded by a key, or has no LoRA API."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from tests.helpers.procs import free_port, start_sim
from tests.helpers.runtime_api import assert_error, load


def wait_for_status(client: httpx.Client, url: str, status: int, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(url)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_engine_down_then_back(procs, engine, client, adapter_dir):
    port = free_port()
    sim = start_sim(engine, port=port)
    runtime = procs.runtime(engine, sim.url, env={"RUNTIME_READY_CACHE_SECONDS": "0.2"})
    assert client.get(f"{runtime.url}/ready").status_code == 200
    sim.stop()

    not_ready = wait_for_status(client, f"{runtime.url}/ready", 503)
    assert_error(not_ready, 503, "unreachable")
    assert_error(load(client, runtime, "during-outage", adapter_dir), 502, "unreachable")
    assert_error(client.get(f"{runtime.url}/v1/models"), 502)
    assert client.get(f"{runtime.url}/healthz").status_code == 200

    sim = procs.sim(engine, port=port)
    assert wait_for_status(client, f"{runtime.url}/ready", 200).status_code == 200
    assert load(client, runtime, "after-outage", adapter_dir).status_code == 200


def test_ready_is_503_before_engine_starts(procs, client):
    runtime = procs.runtime("vllm", f"http://127.0.0.1:{free_port()}")
    assert_error(client.get(f"{runtime.url}/ready"), 503, "not ready")


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_slow_engine_times_out_with_504(procs, engine, client, adapter_dir):
    sim = procs.sim(engine, "--lora-load-ms", "1000")  # stopping the simulator waits for this load to end
    runtime = procs.runtime(engine, sim.url, "--engine-timeout", "0.3")
    started = time.monotonic()
    assert_error(load(client, runtime, "slow", adapter_dir), 504, "0.3")
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_authorization_reaches_the_engine(procs, engine, client, adapter_dir):
    sim = procs.sim(engine, "--api-key", "s3cret")
    runtime = procs.runtime(engine, sim.url)
    keyed = procs.runtime(engine, sim.url, env={"INFERENCE_ENGINE_API_KEY": "s3cret"})
    assert_error(load(client, runtime, "no-key", adapter_dir), 401)
    response = client.post(
        f"{runtime.url}/v1/lora_adapter/load",
        json={"lora_name": "header-key", "lora_path": str(adapter_dir)},
        headers={"Authorization": "Bearer s3cret"},
    )
    assert response.status_code == 200, response.text
    assert load(client, keyed, "env-key", adapter_dir).status_code == 200
    ids = [card["id"] for card in client.get(f"{keyed.url}/v1/models").json()["data"]]
    assert {"header-key", "env-key"} <= set(ids)
    assert client.get(f"{keyed.url}/ready").status_code == 200


def test_vllm_without_runtime_lora_flag_is_501(procs, client, adapter_dir):
    sim = procs.sim("vllm", env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "false"})
    runtime = procs.runtime("vllm", sim.url)
    assert_error(load(client, runtime, "gated", adapter_dir), 501, "VLLM_ALLOW_RUNTIME_LORA_UPDATING")


def test_vllm_flat_error_bodies_are_understood(procs, client, adapter_dir, tmp_path):
    """vLLM up to ~0.9 answered flat ErrorResponse bodies; duplicates and unknown names still map right."""
    sim = procs.sim("vllm", "--error-style", "flat")
    runtime = procs.runtime("vllm", sim.url)
    other = shutil.copytree(adapter_dir, tmp_path / "other")  # a good adapter, from another path
    assert load(client, runtime, "flat", adapter_dir).status_code == 200
    assert load(client, runtime, "flat", adapter_dir).json()["already_loaded"] is True
    assert_error(load(client, runtime, "flat", other), 409)
    assert_error(load(client, runtime, "flat-missing", "/no/such/dir"), 404, "No adapter found")
    response = client.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "nope"})
    assert_error(response, 404, "nope")


@pytest.mark.parametrize("engine", ["tgi", "llamacpp", "xllm", "trtllm"])
def test_engines_without_lora_api_start_and_answer_501(procs, engine, client, adapter_dir):
    sim = procs.sim("vllm")  # any OpenAI-style server stands in for the engine's /health and /v1/models
    runtime = procs.runtime(engine, sim.url)
    assert client.get(f"{runtime.url}/ready").status_code == 200
    assert_error(load(client, runtime, "x", adapter_dir), 501, engine)
    response = client.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "x"})
    assert_error(response, 501, engine)
    assert_error(client.post(f"{runtime.url}/v1/lora_adapter/load", content=b"{}"), 422)


def test_older_sglang_models_list_still_shows_runtime_loaded_adapters(procs, client, adapter_dir):
    """SGLang before PR #12229 lists only the base model; the runtime adds the adapters it loaded."""
    sim = procs.sim("sglang", "--sglang-legacy-models")
    runtime = procs.runtime("sglang", sim.url)
    assert load(client, runtime, "legacy", adapter_dir).status_code == 200
    engine_ids = [card["id"] for card in client.get(f"{sim.url}/v1/models").json()["data"]]
    assert engine_ids == ["base-model"]
    cards = {card["id"]: card for card in client.get(f"{runtime.url}/v1/models").json()["data"]}
    assert cards["legacy"]["parent"] == "base-model"
    assert cards["legacy"]["root"] == str(adapter_dir)
    assert load(client, runtime, "legacy", adapter_dir).json()["already_loaded"] is True


def test_openapi_docs_only_when_enabled(procs, client):
    sim = procs.sim("vllm")
    plain = procs.runtime("vllm", sim.url)
    documented = procs.runtime("vllm", sim.url, "--enable-fastapi-docs")
    assert client.get(f"{plain.url}/openapi.json").status_code == 404
    schema = client.get(f"{documented.url}/openapi.json").json()
    load_op = schema["paths"]["/v1/lora_adapter/load"]["post"]
    assert {"200", "409", "422", "502", "504"} <= set(load_op["responses"])
    body = schema["components"]["schemas"]["LoadAdapterRequest"]
    assert body["required"] == ["lora_name"]
    assert {"lora_path", "artifact_url", "credentials", "credentials_secret"} <= set(body["properties"])
    assert client.get(f"{documented.url}/docs").status_code == 200
