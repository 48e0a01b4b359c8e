"""SGLang held to its source: the simulator answers the table in tests/helpers/sglang_conformance.py (every row cites
SGLang 0.5.23), and the runtime works against a server paced and behaving as SGLang does (readiness, evictions)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.sglang_conformance import BASE, FLAGS, PLAIN_FLAGS, PLAIN_ROWS, ROWS, Row


def make_adapters(root: Path) -> Path:
    for name, rank, modules in (
        ("r8", 8, ["q_proj", "v_proj"]),
        ("r64", 64, ["q_proj", "v_proj"]),
        ("r8-mlp", 8, ["gate_proj"]),
    ):
        (root / name).mkdir(parents=True)
        config = {"peft_type": "LORA", "r": rank, "lora_alpha": 16, "target_modules": modules}
        (root / name / "adapter_config.json").write_text(json.dumps(config))
    return root


def listed(url: str) -> tuple[str, ...]:
    cards = httpx.get(url + "/v1/models", timeout=10).json()["data"]
    return tuple(sorted(card["id"] for card in cards if card.get("parent")))


def check(url: str, rows: list[Row], adapters: Path) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for row in rows:
            body = json.loads(json.dumps(row.body).replace("{adapters}", str(adapters))) if row.body else None
            response = client.request(row.method, row.path, json=body)
            assert response.status_code == row.status, (row.name, response.text)
            assert [part for part in row.holds if part not in response.text] == [], (row.name, response.text[:500])
            assert [part for part in row.lacks if part in response.text] == [], (row.name, response.text[:500])
            if row.listed is not None:
                assert listed(url) == row.listed, row.name


def test_the_simulator_answers_as_sglangs_source_says(procs, tmp_path: Path) -> None:
    adapters = make_adapters(tmp_path / "adapters")
    check(procs.sim("sglang", *FLAGS).url, ROWS, adapters)
    check(procs.sim("sglang", *PLAIN_FLAGS).url, PLAIN_ROWS, adapters)


def test_ready_is_200_against_an_sglang_whose_health_takes_a_second(procs) -> None:
    """SGLang's /health generates a token and polls once a second; with a 1 s probe it never passed. The runtime
    asks /ready, and falls back to /health (3 s by default) on releases without it."""
    for extra in ((), ("--sglang-no-ready",)):
        sim = procs.sim("sglang", *extra)
        started = time.monotonic()
        assert httpx.get(sim.url + "/health", timeout=10).status_code == 200
        assert time.monotonic() - started >= 0.9  # paced as SGLang is
        runtime = procs.runtime("sglang", sim.url, env={"RUNTIME_READY_CACHE_SECONDS": "0"})
        started = time.monotonic()
        ready = httpx.get(runtime.url + "/ready", timeout=10)
        assert ready.status_code == 200, (extra, ready.text)
        assert time.monotonic() - started < (0.9 if not extra else 2.5)  # under 0.9 s: not the paced /health


def test_the_runtime_does_not_fight_sglangs_evictions(procs, tmp_path: Path) -> None:
    """With --max-loaded-loras SGLang evicts an adapter on a load and loads it back on its next request. Re-loading
    it from the runtime's keeper would evict another, and the next pass that one: the runtime leaves evictions to
    SGLang, keeps listing the adapter (it is served), and re-loads only after an engine restart."""
    adapters = make_adapters(tmp_path / "adapters")
    flags = (
        "--enable-lora",
        "--max-lora-rank",
        "16",
        "--lora-target-modules",
        "all",
        "--max-loras-per-batch",
        "2",
        "--max-loaded-loras",
        "2",
        "--enable-metrics",
    )
    sim = procs.sim("sglang", *flags)
    runtime = procs.runtime("sglang", sim.url, env={"AIBRIX_ADAPTER_RECONCILE_SECONDS": "0.2"})
    for name in ("a", "b", "c"):
        body = {"lora_name": name, "lora_path": str(adapters / "r8")}
        assert httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=10).status_code == 200
    assert listed(sim.url) == ("b", "c")  # SGLang evicted a
    time.sleep(1.5)  # several keeper passes
    assert listed(sim.url) == ("b", "c")  # nobody loaded a back, nothing churned
    assert "aibrix:runtime_adapter_reloads_total 0" in httpx.get(runtime.url + "/metrics", timeout=10).text
    assert listed(runtime.url) == ("a", "b", "c")  # all three are served
    answer = httpx.post(sim.url + "/v1/completions", json={"model": f"{BASE}:a", "prompt": "hi", "max_tokens": 2})
    assert answer.status_code == 200 and listed(sim.url) == ("a", "c")  # SGLang loaded it back itself


@pytest.mark.parametrize("stream", [True, False])
def test_an_unload_waits_for_the_requests_running_on_the_adapter(procs, tmp_path: Path, stream: bool) -> None:
    adapters = make_adapters(tmp_path / "adapters")
    sim = procs.sim("sglang", "--itl-ms", "50")
    body = {"lora_name": "slow", "lora_path": str(adapters / "r8")}
    assert httpx.post(sim.url + "/load_lora_adapter", json=body, timeout=10).status_code == 200
    finished: list[float] = []

    def run() -> None:
        request = {"model": f"{BASE}:slow", "prompt": "hi", "max_tokens": 20, "stream": stream}
        httpx.post(sim.url + "/v1/completions", json=request, timeout=30).read()
        finished.append(time.monotonic())

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.3)  # the request is running (20 tokens at 50 ms)
    unloaded = httpx.post(sim.url + "/unload_lora_adapter", json={"lora_name": "slow"}, timeout=30)
    answered = time.monotonic()
    worker.join(10)
    assert unloaded.status_code == 200 and finished and answered >= finished[0] - 0.05


def test_the_families_our_rules_map_from_sglang_now_arrive_through_the_runtime(procs) -> None:
    """sglang:utilization and sglang:queue_time_seconds were mapped but never emitted by the simulator."""
    sim = procs.sim("sglang")
    runtime = procs.runtime("sglang", sim.url)
    for _ in range(3):
        httpx.post(sim.url + "/v1/completions", json={"model": BASE, "prompt": "hi", "max_tokens": 2}, timeout=10)
    text = httpx.get(runtime.url + "/metrics", timeout=10).text
    assert "aibrix:engine_utilization{" in text
    assert "aibrix:request_queue_time_seconds_bucket{" in text and 'le="3000.0"' in text
    assert "_created" not in text
