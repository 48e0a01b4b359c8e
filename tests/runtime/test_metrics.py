"""GET /metrics through the real runtime: standard names, modes, fallback, engine trouble, own metrics."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.helpers.metric_pages import ACCEPTED_LINT, PROMTOOL, fixture, parsed
from tests.helpers.payload_server import PayloadServer
from tests.helpers.services import require

VLLM_DOC = fixture("vllm_v0_docs.txt")


def scrape(client: httpx.Client, url: str) -> httpx.Response:
    response = client.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response


def sample(families: dict, family: str, name: str | None = None, **labels: str) -> float:
    return families[family]["samples"][(name or family, tuple(sorted(labels.items())))]


def test_default_mode_keeps_engine_metrics_and_adds_standard_ones(procs, client):
    with PayloadServer({"/metrics": VLLM_DOC, "/health": ""}) as engine:
        runtime = procs.runtime("vllm", engine.url)
        response = client.get(f"{runtime.url}/metrics", follow_redirects=False)
        assert response.status_code == 200  # served at /metrics itself, no redirect to /metrics/
        assert response.text.startswith(VLLM_DOC)
        families = parsed(response.text)
        labels = {"model_name": "Qwen/Qwen2.5-Coder-1.5B-Instruct"}
        assert sample(families, "aibrix:queue_size", **labels) == 0.0
        assert sample(families, "aibrix:prompt_tokens", "aibrix:prompt_tokens_total", **labels) == 148.0
        assert sample(families, "aibrix:engine_up") == 1.0
        assert sample(families, "aibrix:runtime_info", version="0.1.0", inference_engine="vllm") == 1.0
        # vLLM's own engine="0" (its engine index) is the only meaning of `engine`: the runtime never uses it.
        ours = [
            labels for f in families.values() for (name, labels) in f["samples"] if name.startswith("aibrix:runtime")
        ]
        assert ours and not [labels for labels in ours if "engine" in dict(labels)]


@pytest.mark.parametrize(
    "env",
    [
        {"METRICS_RAW_PASSTHROUGH_MODE": "1"},
        {"METRICS_ENABLE_TRANSFORMATION": "0"},
        {"METRICS_ENABLE_TRANSFORMATION": "0", "METRICS_RAW_PASSTHROUGH_MODE": "0"},
    ],
)
def test_raw_modes_pass_the_engine_payload_unchanged(procs, client, env):
    with PayloadServer({"/metrics": VLLM_DOC}) as engine:
        runtime = procs.runtime("vllm", engine.url, env=env)
        text = scrape(client, runtime.url).text
        assert text.startswith(VLLM_DOC)
        families = parsed(text)
        assert "aibrix:queue_size" not in families and "aibrix:prompt_tokens" not in families
        assert sample(families, "aibrix:engine_up") == 1.0


def test_transformation_failure_falls_back_to_raw_and_is_counted(procs, client):
    broken = VLLM_DOC.replace(
        'vllm:prompt_tokens_total{model_name="Qwen/Qwen2.5-Coder-1.5B-Instruct"} 148.0',
        'vllm:prompt_tokens_total{model_name="Qwen/Qwen2.5-Coder-1.5B-Instruct"} NaN-ish',
    )
    with PayloadServer({"/metrics": broken}) as engine:
        runtime = procs.runtime("vllm", engine.url)
        for _ in range(2):
            text = scrape(client, runtime.url).text
        assert text.startswith(broken)
        assert "aibrix:queue_size" not in text
        assert "aibrix:runtime_metrics_transform_fallbacks_total 2.0" in text


def test_engine_down_answers_promptly_with_engine_up_zero(procs, client):
    with PayloadServer({}) as gone:
        url = gone.url
    runtime = procs.runtime("vllm", url)
    started = time.monotonic()
    families = parsed(scrape(client, runtime.url).text)
    assert time.monotonic() - started < 1.0
    assert sample(families, "aibrix:engine_up") == 0.0
    assert "aibrix:runtime_requests" in families


def test_slow_engine_is_cut_off_at_the_scrape_timeout(procs, client):
    with PayloadServer({"/metrics": VLLM_DOC}, delay=5) as engine:
        runtime = procs.runtime("vllm", engine.url, env={"METRICS_SCRAPE_TIMEOUT": "0.5"})
        started = time.monotonic()
        families = parsed(scrape(client, runtime.url).text)
        assert time.monotonic() - started < 2.0
        assert sample(families, "aibrix:engine_up") == 0.0


@pytest.mark.parametrize(
    "engine, path, payload, family",
    [
        ("xllm", "/brpc_metrics", "xllm_brpc.txt", "aibrix:num_requests_running"),
        ("trtllm", "/prometheus/metrics", "trtllm.txt", "aibrix:kv_cache_usage_perc"),
        ("sglang", "/metrics", "sglang.txt", "aibrix:queue_size"),
        ("tgi", "/metrics", "tgi.txt", "aibrix:queue_size"),
        ("llamacpp", "/metrics", "llamacpp.txt", "aibrix:queue_size"),
    ],
)
def test_each_engine_is_scraped_at_its_own_path(procs, client, engine, path, payload, family):
    with PayloadServer({path: fixture(payload)}) as server:
        runtime = procs.runtime(engine, server.url)
        families = parsed(scrape(client, runtime.url).text)
        assert family in families
        assert server.hits.get(path, 0) >= 1


def test_metric_scrape_path_overrides_the_engine_default(procs, client):
    with PayloadServer({"/custom": VLLM_DOC}) as engine:
        runtime = procs.runtime("vllm", engine.url, env={"METRIC_SCRAPE_PATH": "/custom"})
        assert "aibrix:queue_size" in parsed(scrape(client, runtime.url).text)


def test_runtime_counts_its_own_api_and_adapter_operations(procs, client, adapter_dir):
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url)
    body = {"lora_name": "counted", "lora_path": str(adapter_dir)}
    assert client.post(f"{runtime.url}/v1/lora_adapter/load", json=body).status_code == 200
    client.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "nope"})
    client.get(f"{runtime.url}/no/such/route")
    families = parsed(scrape(client, runtime.url).text)
    ops = "aibrix:runtime_adapter_operations"
    assert sample(families, ops, ops + "_total", operation="load", outcome="ok") == 1.0
    assert sample(families, ops, ops + "_total", operation="unload", outcome="AdapterNotFound") == 1.0
    requests = "aibrix:runtime_requests"
    labels = {"method": "POST", "route": "/v1/lora_adapter/load", "status": "200"}
    assert sample(families, requests, requests + "_total", **labels) == 1.0
    assert sample(families, requests, requests + "_total", method="GET", route="unmatched", status="404") == 1.0
    assert families["aibrix:runtime_metrics_scrape_duration_seconds"]["type"] == "histogram"
    assert families["aibrix:runtime_download_bytes"]["type"] == "counter"


def test_per_adapter_metrics_follow_loads_failures_and_unloads(procs, client, adapter_dir, tmp_path):
    sim = procs.sim("vllm", "--max-lora-rank", "16")
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_ENGINE_MAX_ADAPTERS": "8"})
    load = f"{runtime.url}/v1/lora_adapter/load"
    assert client.post(load, json={"lora_name": "kept", "lora_path": str(adapter_dir)}).status_code == 200
    big = tmp_path / "big"
    big.mkdir()
    (big / "adapter_config.json").write_text('{"r": 64}')
    assert client.post(load, json={"lora_name": "big", "lora_path": str(big)}).status_code == 422
    families = parsed(scrape(client, runtime.url).text)
    loaded = families["aibrix:lora_adapter_loaded"]["samples"]
    assert loaded == {("aibrix:lora_adapter_loaded", (("lora_name", "kept"),)): 1.0}
    assert sample(families, "aibrix:lora_slots_used", "aibrix:lora_slots_used") == 1.0
    assert sample(families, "aibrix:lora_slots_total", "aibrix:lora_slots_total") == 8.0
    seconds = "aibrix:lora_adapter_load_seconds"
    assert sample(families, seconds, seconds + "_count", phase="engine") == 1.0
    failures = "aibrix:lora_adapter_load_failures"
    assert sample(families, failures, failures + "_total", reason="RankTooHigh") == 1.0
    assert client.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "kept"}).status_code == 200
    families = parsed(scrape(client, runtime.url).text)
    assert families["aibrix:lora_adapter_loaded"]["samples"] == {}
    assert sample(families, "aibrix:lora_slots_used", "aibrix:lora_slots_used") == 0.0


def test_per_adapter_demand_comes_from_vllms_newest_lora_requests_info(procs, client):
    """vLLM keeps one series per state the adapter lists have been in, for ever; the newest is now (value: when it
    was set). The runtime serves only that one: the others would make the page grow as long as the engine serves."""
    info = (
        "# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n"
        'vllm:lora_requests_info{max_lora="2",running_lora_adapters="old",waiting_lora_adapters=""} 1.79e+09\n'
        'vllm:lora_requests_info{max_lora="2",running_lora_adapters="a,b",waiting_lora_adapters="c"} 1.7961e+09\n'
        'vllm:lora_requests_info{max_lora="2",running_lora_adapters="older",waiting_lora_adapters=""} 1.78e+09\n'
        "vllm:num_requests_running 3.0\n"
    )
    with PayloadServer({"/metrics": info}) as engine:
        runtime = procs.runtime("vllm", engine.url)
        families = parsed(scrape(client, runtime.url).text)
    active = families["aibrix:lora_adapter_requests_active"]["samples"]
    found = {dict(labels)["lora_name"] + "/" + dict(labels)["state"] for _, labels in active}
    assert found == {"a/running", "b/running", "c/waiting"}
    (newest,) = families["vllm:lora_requests_info"]["samples"]  # the engine's family, its current series only
    assert dict(newest[1])["running_lora_adapters"] == "a,b"
    assert families["vllm:num_requests_running"]["samples"]  # the rest of the page passes through


def test_metrics_served_on_another_port_are_scraped_there(procs, client):
    """INFERENCE_ENGINE_METRICS_ENDPOINT (the webhook sets it from the pod label model.aibrix.ai/metric-port)."""
    sim = procs.sim("vllm")
    with PayloadServer({"/metrics": VLLM_DOC}) as metrics_port:
        runtime = procs.runtime("vllm", sim.url, env={"INFERENCE_ENGINE_METRICS_ENDPOINT": metrics_port.url})
        families = parsed(scrape(client, runtime.url).text)
    assert sample(families, "aibrix:engine_up", "aibrix:engine_up") == 1.0
    assert families["vllm:num_requests_running"]["samples"] == parsed(VLLM_DOC)["vllm:num_requests_running"]["samples"]


def test_derived_throughput_moves_with_simulated_traffic(procs, client):
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url)
    scrape(client, runtime.url)
    for _ in range(3):
        client.post(f"{sim.url}/v1/completions", json={"prompt": "x" * 400, "max_tokens": 8})
    families = parsed(scrape(client, runtime.url).text)
    throughput = families["aibrix:avg_generation_throughput_toks_per_s"]["samples"]
    assert sum(throughput.values()) > 0
    assert families["aibrix:prefix_cache_hit_rate"]["samples"]


def test_sglang_simulator_metrics_are_standardized(procs, client):
    sim = procs.sim("sglang")
    runtime = procs.runtime("sglang", sim.url)
    client.post(f"{sim.url}/v1/completions", json={"prompt": "hello", "max_tokens": 4})
    families = parsed(scrape(client, runtime.url).text)
    prompt = families["aibrix:prompt_tokens"]["samples"]
    assert sum(prompt.values()) >= 2
    assert "aibrix:time_to_first_token_seconds" in families


@pytest.mark.parametrize(
    "engine, path, payload",
    [
        ("vllm", "/metrics", "vllm_v0_docs.txt"),
        ("vllm", "/metrics", "vllm_0_32_cpu.txt"),
        ("sglang", "/metrics", "sglang.txt"),
        ("xllm", "/brpc_metrics", "xllm_brpc.txt"),
        ("trtllm", "/prometheus/metrics", "trtllm.txt"),
        ("tgi", "/metrics", "tgi.txt"),
        ("llamacpp", "/metrics", "llamacpp.txt"),
    ],
)
def test_prometheus_itself_accepts_the_output(procs, client, engine, path, payload):
    require(PROMTOOL.exists(), "promtool (scripts/fetch_promtool.sh)")
    with PayloadServer({path: fixture(payload)}) as server:
        runtime = procs.runtime(engine, server.url)
        text = scrape(client, runtime.url).text
    result = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True)
    report = result.stdout + result.stderr
    assert result.returncode in (0, 3), report  # 3: lint remarks only; 1: the text does not parse
    # Remarks on the engine's own names are the engine's business; on the names we add, only the accepted ones.
    ours = [line for line in report.splitlines() if line.startswith("aibrix:")]
    assert ours, "promtool saw none of the aibrix: families"
    unexpected = [line for line in ours if not line.endswith(ACCEPTED_LINT)]
    assert not unexpected, unexpected


@pytest.mark.parametrize(
    ("page", "lines"),
    [
        ("x{a} 1\ny 2\nx{b} 3", ["x{a} 1", "x{b} 3"]),  # first line, last line without a newline
        ("y\nx{a} 1\n", ["x{a} 1"]),
        ("y 1\nxx{a} 2", []),  # only lines that start with it
        ("", []),
    ],
)
def test_the_lines_of_one_family_are_found_without_splitting_the_page(page: str, lines: list[str]) -> None:
    from aibrix.metrics.lora import lines_starting

    assert list(lines_starting(page, "x{")) == lines
