"""The simulator holds to real vLLM: one table of engine-API cases and the /metrics families, both engines asked."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.conformance import CASES, mismatches, run
from tests.helpers.real_vllm import RealVLLM, start_twin_sim, tiny_models

pytestmark = pytest.mark.real_vllm


def families(payload: str) -> dict[str, tuple]:
    """vLLM's own families and the HTTP instrumentator's: type, help, label names and histogram buckets."""
    found = {}
    for family in text_string_to_metric_families(payload):
        if not family.name.startswith(("vllm:", "http_")):
            continue
        labels = sorted({name for s in family.samples for name in s.labels if name not in ("le", "quantile")})
        buckets = sorted({float(s.labels["le"]) for s in family.samples if "le" in s.labels})
        documentation = family.documentation if family.name.startswith("vllm:") else ""
        found[family.name] = (family.type, documentation, labels, buckets if family.name.startswith("vllm:") else [])
    return found


def test_the_simulator_answers_the_engine_api_as_real_vllm_does(real_vllm: RealVLLM) -> None:
    models = tiny_models()
    sim = start_twin_sim()
    try:
        real = run(real_vllm.url, CASES, models)
        simulated = run(sim.url, CASES, models)
        real_metrics = httpx.get(real_vllm.url + "/metrics", timeout=10)
        sim_metrics = httpx.get(sim.url + "/metrics", timeout=10)
    finally:
        sim.stop()
    assert not mismatches(CASES, real, simulated), mismatches(CASES, real, simulated)

    assert sim_metrics.headers["content-type"] == real_metrics.headers["content-type"]
    want, got = families(real_metrics.text), families(sim_metrics.text)
    assert sorted(set(want) - set(got)) == [], "families real vLLM has and the simulator lacks"
    assert sorted(set(got) - set(want)) == [], "families the simulator has and real vLLM lacks"
    differ = {name: (want[name], got[name]) for name in want if want[name] != got[name]}
    assert not differ, differ


def test_an_idle_engine_already_has_every_finished_reason_and_max_lora() -> None:
    """Before any request vLLM exposes request_success at 0 for every reason and lora_requests_info with
    --max-loras, so the standard families exist on an idle engine (checked against the real engine above)."""
    sim = start_twin_sim()
    try:
        payload = httpx.get(sim.url + "/metrics", timeout=10).text
    finally:
        sim.stop()
    reasons = {
        line.split('finished_reason="')[1].split('"')[0]
        for line in payload.splitlines()
        if line.startswith("vllm:request_success_total{")
    }
    assert reasons == {"stop", "length", "abort", "error", "repetition"}
    assert 'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""}' in payload
    assert 'vllm:request_prompt_tokens_bucket{engine="0",le="200.0",model_name="tiny"} 0.0' in payload
    assert 'le="500.0",model_name="tiny"' not in payload  # buckets stop at --max-model-len 256
