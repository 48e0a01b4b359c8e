"""The simulator answers like the engines it stands in for, and its metrics move with traffic."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.procs import start_sim


@pytest.fixture(scope="module")
def vllm():
    sim = start_sim("vllm", "--ttft-ms", "5", "--itl-ms", "20", "--api-key", "k")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def sglang():
    sim = start_sim("sglang", "--ttft-ms", "5", "--itl-ms", "20")
    yield sim
    sim.stop()


AUTH = {"Authorization": "Bearer k"}


def samples(text: str) -> dict[str, float]:
    """Sample name with sorted labels -> value, summed over nothing: every sample kept apart."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in ("engine", "model_name"))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def families(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_vllm_lora_routes_follow_the_runtime_flag():
    gated = start_sim("vllm", env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "0"})
    try:
        response = httpx.post(f"{gated.url}/v1/load_lora_adapter", json={"lora_name": "a", "lora_path": "b"})
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}
    finally:
        gated.stop()


@pytest.fixture
def tmp_path(tmp_path):
    """A folder vLLM takes for an adapter: it has an adapter_config.json."""
    (tmp_path / "adapter_config.json").write_text('{"r": 8}')
    return tmp_path


def test_vllm_load_and_error_bodies(vllm, tmp_path):
    url = f"{vllm.url}/v1/load_lora_adapter"
    ok = httpx.post(url, json={"lora_name": "sql", "lora_path": str(tmp_path)}, headers=AUTH)
    assert (ok.status_code, ok.text) == (200, "Success: LoRA adapter 'sql' added successfully.")
    dup = httpx.post(url, json={"lora_name": "sql", "lora_path": str(tmp_path)}, headers=AUTH)
    assert dup.status_code == 400
    assert dup.json()["error"]["type"] == "InvalidUserInput"
    assert "has already been loaded" in dup.json()["error"]["message"]
    missing = httpx.post(url, json={"lora_name": "x", "lora_path": "/srv/nope"}, headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "Loading lora x failed: No adapter found for <path>",  # vLLM hides paths in its errors
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    gone = httpx.post(f"{vllm.url}/v1/unload_lora_adapter", json={"lora_name": "ghost"}, headers=AUTH)
    assert (gone.status_code, gone.json()["error"]["type"]) == (404, "NotFoundError")
    cards = httpx.get(f"{vllm.url}/v1/models", headers=AUTH).json()["data"]
    assert {"id": "sql", "parent": "base-model", "root": str(tmp_path)}.items() <= cards[1].items()


def test_vllm_flat_error_style(tmp_path):
    sim = start_sim("vllm", "--error-style", "flat")
    try:
        body = {"lora_name": "a", "lora_path": str(tmp_path)}
        httpx.post(f"{sim.url}/v1/load_lora_adapter", json=body)
        dup = httpx.post(f"{sim.url}/v1/load_lora_adapter", json=body).json()
        assert dup["object"] == "error" and dup["code"] == 400
        assert dup["message"] == "The lora adapter 'a' has already been loaded."
    finally:
        sim.stop()


def test_vllm_api_key_guards_v1_only(vllm):
    assert httpx.get(f"{vllm.url}/v1/models").status_code == 401
    assert httpx.get(f"{vllm.url}/v1/models").json() == {"error": "Unauthorized"}
    assert httpx.get(f"{vllm.url}/health").status_code == 200
    assert httpx.get(f"{vllm.url}/metrics").status_code == 200


def test_sglang_update_bodies(sglang, tmp_path):
    url = f"{sglang.url}/load_lora_adapter"
    ok = httpx.post(url, json={"lora_name": "a", "lora_path": str(tmp_path)})
    assert ok.status_code == 200
    assert ok.json() == {
        "rid": None,
        "http_worker_ipc": None,
        "success": True,
        "error_message": "",
        "loaded_adapters": {"a": str(tmp_path)},
    }
    dup = httpx.post(url, json={"lora_name": "a", "lora_path": str(tmp_path)})
    assert dup.status_code == 400 and "already loaded" in dup.json()["error_message"]
    gone = httpx.post(f"{sglang.url}/unload_lora_adapter", json={"lora_name": "zzz"})
    assert gone.status_code == 400
    assert gone.json()["error_message"].startswith("LoRA with name zzz does not exist")
    assert gone.json()["loaded_adapters"] is None
    assert httpx.post(f"{sglang.url}/unload_lora_adapter", json={"lora_name": "a"}).json()["success"] is True
    invalid = httpx.post(url, json={"lora_name": "b"})
    assert (invalid.status_code, invalid.json()["object"], invalid.json()["type"]) == (400, "error", "Bad Request")


def test_completions_generate_tokens_for_base_and_adapters(vllm, tmp_path):
    body = {"model": "base-model", "prompt": "hello world", "max_tokens": 3}
    reply = httpx.post(f"{vllm.url}/v1/completions", json=body, headers=AUTH).json()
    assert reply["usage"]["completion_tokens"] == 3
    assert reply["choices"][0]["text"].split() == ["tok0", "tok1", "tok2"]
    unknown = httpx.post(f"{vllm.url}/v1/completions", json={**body, "model": "nope"}, headers=AUTH)
    assert unknown.status_code == 404
    httpx.post(
        f"{vllm.url}/v1/load_lora_adapter", json={"lora_name": "chat-lora", "lora_path": str(tmp_path)}, headers=AUTH
    )
    chat = {"model": "chat-lora", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    reply = httpx.post(f"{vllm.url}/v1/chat/completions", json=chat, headers=AUTH).json()
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"].split() == ["tok0", "tok1"]


def test_streaming_completion_ends_with_done(sglang):
    body = {"model": "base-model", "prompt": "x", "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{sglang.url}/v1/completions", json=body) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert [json.loads(e)["choices"][0]["text"] for e in events[:4]] == [" tok0", " tok1", " tok2", " tok3"]


@pytest.mark.parametrize(
    "engine, running, prompt, success",
    [
        (
            "vllm",
            "vllm:num_requests_running{}",
            "vllm:prompt_tokens_total{}",
            "vllm:request_success_total{finished_reason=length}",
        ),
        (
            "sglang",  # SGLang's scheduler families carry its rank labels, its tokenizer families fewer
            "sglang:num_running_reqs{engine_type=unified,moe_ep_rank=0,pp_rank=0,tp_rank=0}",
            "sglang:prompt_tokens_total{engine_type=unified}",
            "sglang:num_requests_total{engine_type=unified}",
        ),
    ],
)
def test_metrics_move_as_requests_flow(engine, running, prompt, success, vllm, sglang):
    sim = {"vllm": vllm, "sglang": sglang}[engine]
    before = samples(httpx.get(f"{sim.url}/metrics").text)

    async def traffic() -> dict[str, float]:
        async with httpx.AsyncClient(headers=AUTH, timeout=10) as client:
            body = {"model": "base-model", "prompt": "a" * 400, "max_tokens": 10}
            calls = [asyncio.create_task(client.post(f"{sim.url}/v1/completions", json=body)) for _ in range(5)]
            await asyncio.sleep(0.1)
            during = samples((await client.get(f"{sim.url}/metrics")).text)
            await asyncio.gather(*calls)
            return during

    during = asyncio.run(traffic())
    after = samples(httpx.get(f"{sim.url}/metrics").text)
    assert during[running] == 5
    assert after[running] == 0
    assert after[prompt] - before.get(prompt, 0) == 500
    assert after[success] - before.get(success, 0) == 5


def test_vllm_metric_names_and_types(vllm):
    types = families(httpx.get(f"{vllm.url}/metrics").text)
    assert types["vllm:num_requests_waiting"] == "gauge"
    assert types["vllm:kv_cache_usage_perc"] == "gauge"
    assert types["vllm:prompt_tokens"] == "counter"
    assert types["vllm:generation_tokens"] == "counter"
    assert types["vllm:prefix_cache_hits"] == "counter"
    assert types["vllm:time_to_first_token_seconds"] == "histogram"
    assert types["vllm:inter_token_latency_seconds"] == "histogram"


def test_sglang_metric_names_and_types(sglang):
    types = families(httpx.get(f"{sglang.url}/metrics").text)
    assert types["sglang:num_queue_reqs"] == "gauge"
    assert types["sglang:token_usage"] == "gauge"
    assert types["sglang:prompt_tokens"] == "counter"
    assert types["sglang:time_to_first_token_seconds"] == "histogram"


def test_the_sidecar_runs_without_the_simulators_extra_and_the_simulator_says_what_to_install():
    import subprocess
    import sys

    blocked = "import sys; sys.modules['prometheus_client'] = sys.modules['pydantic'] = None; "
    sidecar = subprocess.run(
        [sys.executable, "-c", blocked + "import aibrix.runtime.app, aibrix.runtime.cli"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sidecar.returncode == 0, sidecar.stderr
    sim = subprocess.run(
        [sys.executable, "-c", blocked + "from aibrix.sim.cli import main; main(['--port', '0'])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sim.returncode == 2
    assert sim.stderr.strip() == "aibrix_engine_sim: the simulator needs its extra: pip install 'aibrix[sim]'"


def test_vllm_lists_adapters_with_requests_in_flight_in_both_lora_lists(vllm, tmp_path):
    """Real vLLM 0.32 names every adapter with a request in flight in running_lora_adapters and
    waiting_lora_adapters alike (v1/metrics/stats.py LoRARequestStates; tests/fixtures/metrics/vllm_0_32_cpu.txt),
    and the newest series is the one to read: the controller's demand estimate depends on both."""
    from aibrix.metrics.lora import vllm_lora_activity

    load = {"lora_name": "busy", "lora_path": str(tmp_path)}
    httpx.post(f"{vllm.url}/v1/load_lora_adapter", json=load, headers=AUTH)

    async def traffic() -> str:
        async with httpx.AsyncClient(headers=AUTH, timeout=10) as client:
            body = {"model": "busy", "prompt": "a", "max_tokens": 10}
            calls = [asyncio.create_task(client.post(f"{vllm.url}/v1/completions", json=body)) for _ in range(3)]
            await asyncio.sleep(0.1)
            during = (await client.get(f"{vllm.url}/metrics")).text
            await asyncio.gather(*calls)
            return during

    during = vllm_lora_activity(asyncio.run(traffic()))
    after = vllm_lora_activity(httpx.get(f"{vllm.url}/metrics").text)
    assert during is not None and during["running"] == during["waiting"] == {"busy"}
    assert after is not None and after["running"] == after["waiting"] == frozenset()


def _adapter(folder, rank: int):
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank}))
    return str(folder)


def test_vllm_cache_evicts_the_least_recently_used_and_unload_only_forgets_the_name(tmp_path):
    """--max-cpu-loras bounds the adapters that answer without a load first, not the names served (vLLM 0.32:
    LRUCacheWorkerLoRAManager; unload deletes the name only); a load costs more with rank (sim/lora_cache.py)."""
    sim = start_sim(
        "vllm",
        "--max-lora-rank",
        "64",
        "--max-loras",
        "1",
        "--max-cpu-loras",
        "2",
        "--lora-load-ms",
        "1000",  # a cached answer must come back in less than one load, even on a machine busy with other tests
        "--lora-load-ms-per-rank",
        "4",
    )
    try:

        def load(name: str, rank: int) -> float:
            started = time.perf_counter()
            body = {"lora_name": name, "lora_path": _adapter(tmp_path / name, rank)}
            assert httpx.post(f"{sim.url}/v1/load_lora_adapter", json=body).status_code == 200
            return time.perf_counter() - started

        def ask(name: str) -> float:
            started = time.perf_counter()
            body = {"model": name, "prompt": "x", "max_tokens": 1}
            assert httpx.post(f"{sim.url}/v1/completions", json=body).status_code == 200
            return time.perf_counter() - started

        assert load("wide", 64) >= 1.0 + 0.256 and load("a", 8) >= 1.0 + 0.032  # rank 64 costs 224 ms more
        load("b", 8)  # the cache holds two: "wide" is evicted
        served = {card["id"] for card in httpx.get(f"{sim.url}/v1/models").json()["data"]}
        assert {"wide", "a", "b"} <= served  # every name is still served
        assert ask("b") < 1.0  # cached: no load first (a load of "b" would take 1.032 s)
        assert ask("wide") >= 1.0 + 0.256  # evicted: loaded again first
        assert ask("wide") < 1.0  # and cached now
        assert httpx.post(f"{sim.url}/v1/unload_lora_adapter", json={"lora_name": "b"}).status_code == 200
        assert "b" not in {card["id"] for card in httpx.get(f"{sim.url}/v1/models").json()["data"]}
    finally:
        sim.stop()
