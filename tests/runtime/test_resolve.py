"""Adapters on first request, the runtime's half (vLLM's resolver asks POST /v1/lora_adapter/resolve): a name nobody
loaded is fetched from AIBRIX_LORA_SOURCE once however many ask, then kept like any adapter; an unknown name is
refused at once and remembered for a while. The engine's half runs against real vLLM in tests/e2e."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers.artifacts import ADAPTER, tree
from tests.helpers.procs import Proc
from tests.helpers.runtime_api import assert_error


def resolve(runtime: Proc, name: str) -> httpx.Response:
    body = {"lora_name": name, "base_model": "base-model"}
    return httpx.post(f"{runtime.url}/v1/lora_adapter/resolve", json=body, timeout=60)


def resolves(runtime: Proc) -> dict[str, float]:
    """aibrix:lora_adapter_resolves_total by result."""
    found = {}
    for line in httpx.get(runtime.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("aibrix:lora_adapter_resolves_total{"):
            found[line.split('result="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return found


def start(procs, hub, tmp_path: Path, reconcile: float) -> tuple[Proc, Proc, Path]:
    """A simulator (which has no resolver: the runtime's keeper loads what it resolved, every ``reconcile`` s) and a
    runtime resolving from the Hub."""
    sim = procs.sim("vllm")
    adapters = tmp_path / "adapters"
    env = {
        "AIBRIX_ADAPTER_DIR": str(adapters),
        "HF_ENDPOINT": hub.url,
        "AIBRIX_LORA_SOURCE": "huggingface://org/{name}",
        "AIBRIX_ADAPTER_RECONCILE_SECONDS": str(reconcile),
    }
    return sim, procs.runtime("vllm", sim.url, env=env), adapters


@pytest.fixture
def resolving(procs, hub, tmp_path: Path) -> tuple[Proc, Proc, Path]:
    return start(procs, hub, tmp_path, reconcile=60)  # the keeper stays out of the way


def test_concurrent_asks_for_an_adapter_nobody_loaded_cause_one_download(resolving, hub) -> None:
    sim, runtime, adapters = resolving
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: resolve(runtime, "sql-lora"), range(8)))
    assert [a.status_code for a in answers] == [200] * 8, answers[0].text
    assert {a.json()["lora_path"] for a in answers} == {str(adapters / "sql-lora")}
    assert tree(adapters / "sql-lora") == ADAPTER
    fetched = [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]
    assert sorted(fetched) == sorted(set(fetched)) and len(fetched) == len(ADAPTER)  # each file once
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert [(a["name"], a["state"], a["source"]) for a in listing] == [
        ("sql-lora", "loaded", "huggingface://org/sql-lora")
    ]
    assert resolve(runtime, "sql-lora").json()["result"] == "already"
    counted = resolves(runtime)  # asks that came after the download finished found it held
    assert counted["resolved"] >= 1 and counted["resolved"] + counted.get("already", 0) == 9, counted


def test_a_resolved_adapter_is_kept_and_unloaded_like_any_other(procs, hub, tmp_path: Path) -> None:
    sim, runtime, adapters = start(procs, hub, tmp_path, reconcile=0.2)
    assert resolve(runtime, "sql-lora").status_code == 200
    deadline = time.monotonic() + 10  # an engine without a resolver never loaded it: the keeper does
    while "sql-lora" not in httpx.get(sim.url + "/v1/models", timeout=5).text:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    unloaded = httpx.post(runtime.url + "/v1/lora_adapter/unload", json={"lora_name": "sql-lora"}, timeout=10)
    assert unloaded.status_code == 200, unloaded.text
    assert not (adapters / "sql-lora").exists()


def test_an_unknown_name_is_refused_and_the_next_ask_is_answered_at_once(resolving, hub) -> None:
    sim, runtime, adapters = resolving
    first = resolve(runtime, "no-such-lora")
    assert_error(first, 404, "no-such-lora")
    asked = len(hub.requests)
    started = time.monotonic()
    second = resolve(runtime, "no-such-lora")
    assert time.monotonic() - started < 0.5  # 100 ms against real vLLM in tests/e2e; here six workers share 2 cores
    assert second.json() == first.json()
    assert len(hub.requests) == asked  # the source was not asked again
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert [(a["name"], a["state"]) for a in listing] == [("no-such-lora", "failed")]
    assert listing[0]["reason"]
    assert not (adapters / "no-such-lora").exists()
    assert resolves(runtime) == {"not_found": 1.0, "recent_miss": 1.0}


def test_without_a_source_or_with_a_bad_name_resolve_refuses_at_once(procs) -> None:
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url)
    assert_error(resolve(runtime, "sql-lora"), 404, "AIBRIX_LORA_SOURCE is not set")
    assert resolve(runtime, "../escape").status_code == 422
