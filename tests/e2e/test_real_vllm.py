"""The runtime in front of real vLLM (CPU build, tiny model): the API docs/runtime.md lists, S3 delegation, /metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.metric_pages import ACCEPTED_LINT, PROMTOOL
from tests.helpers.procs import Proc, start_runtime
from tests.helpers.real_vllm import RealVLLM, tiny_models
from tests.helpers.services import RadosGateway, require

pytestmark = pytest.mark.real_vllm


@pytest.fixture
def runtime(real_vllm: RealVLLM, tmp_path: Path) -> Iterator[Proc]:
    proc = start_runtime("vllm", real_vllm.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")})
    yield proc
    proc.stop()


def load(runtime: Proc, **body: object) -> httpx.Response:
    return httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=120)


def unload(runtime: Proc, name: str) -> httpx.Response:
    return httpx.post(runtime.url + "/v1/lora_adapter/unload", json={"lora_name": name}, timeout=60)


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["type"]


def test_the_runtime_api_against_real_vllm(real_vllm: RealVLLM, runtime: Proc) -> None:
    models = tiny_models()
    assert httpx.get(runtime.url + "/ready", timeout=10).json() == {"status": "ready", "engine": "vllm"}

    ok = load(runtime, lora_name="rt-a", lora_path=str(models / "lora-r8"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["already_loaded"] is False
    assert "rt-a" in real_vllm.adapters()
    assert load(runtime, lora_name="rt-a", lora_path=str(models / "lora-r8")).json()["already_loaded"] is True
    elsewhere = load(runtime, lora_name="rt-a", lora_path=str(models / "lora-r8-b"))
    assert error_of(elsewhere) == (409, "AdapterAlreadyLoaded")

    cards = httpx.get(runtime.url + "/v1/models", timeout=10).json()["data"]
    card = next(c for c in cards if c["id"] == "rt-a")
    assert (card["parent"], card["root"]) == ("tiny", str(models / "lora-r8"))
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert [(a["name"], a["state"]) for a in listing] == [("rt-a", "loaded")]

    completion = real_vllm.complete("rt-a")
    assert completion.status_code == 200, completion.text
    assert completion.json()["model"] == "rt-a"

    assert unload(runtime, "rt-a").status_code == 200
    assert "rt-a" not in real_vllm.adapters()
    assert error_of(unload(runtime, "rt-a")) == (404, "AdapterNotFound")
    assert httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"] == []


@pytest.mark.parametrize(
    "folder, status, kind, says",
    [
        ("lora-r64", 422, "RankTooHigh", "LoRA rank 64 is greater than max_lora_rank 8"),  # an engine's limit
        ("lora-r8/adapter_config.json", 422, "AdapterRejected", "is not a folder"),
        ("no-such-adapter", 404, "NotFoundError", "No adapter found"),  # a path the runtime cannot see: vLLM's word
        ("model", 422, "AdapterRejected", "no adapter_config.json"),
    ],
)
def test_adapters_vllm_can_never_load_are_client_errors(
    runtime: Proc, folder: str, status: int, kind: str, says: str
) -> None:
    """vLLM answers 500 for a rank above --max-lora-rank or a file given as the folder, and 404 for a folder that is not
    an adapter; none can ever pass, so the runtime says 422 with the reason (the controller then fails fast instead of
    retrying from pod to pod): from the engine's refusal the first time, from its own check after that."""
    response = load(runtime, lora_name="rt-bad", lora_path=str(tiny_models() / folder))
    assert error_of(response) == (status, kind)
    assert says in response.json()["error"]["message"]
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert all(a["state"] != "loaded" for a in listing)


def test_a_name_vllm_serves_as_its_base_model_is_refused(runtime: Proc) -> None:
    response = load(runtime, lora_name="tiny", lora_path=str(tiny_models() / "lora-r8"))
    assert error_of(response) == (400, "InvalidUserInput")
    assert "conflicts with a served base model" in response.json()["error"]["message"]


def test_an_adapter_from_s3_is_loaded_into_real_vllm_and_serves(
    procs, real_vllm: RealVLLM, rgw: RadosGateway, tmp_path: Path
) -> None:
    client = rgw.client()
    client.create_bucket(Bucket="real-loras")
    folder = tiny_models() / "lora-r8-b"
    for path in folder.iterdir():
        client.put_object(Bucket="real-loras", Key=f"tiny/sql-lora/{path.name}", Body=path.read_bytes())
    adapters = tmp_path / "adapters"
    runtime = procs.runtime("vllm", real_vllm.url, env={"AIBRIX_ADAPTER_DIR": str(adapters), **rgw.env()})
    response = load(
        runtime,
        lora_name="sql-lora",
        artifact_url="s3://real-loras/tiny/sql-lora/",
        credentials={"aws_access_key_id": rgw.ACCESS_KEY, "aws_secret_access_key": rgw.SECRET_KEY},
    )
    assert response.status_code == 200, response.text
    assert response.json()["lora_path"] == str(adapters / "sql-lora")
    assert (adapters / "sql-lora" / "adapter_model.safetensors").read_bytes() == (
        folder / "adapter_model.safetensors"
    ).read_bytes()
    assert "sql-lora" in real_vllm.adapters()
    completion = real_vllm.complete("sql-lora")
    assert completion.status_code == 200, completion.text
    assert unload(runtime, "sql-lora").status_code == 200
    assert not (adapters / "sql-lora").exists()


def test_metrics_over_the_live_vllm_payload(real_vllm: RealVLLM, runtime: Proc) -> None:
    assert real_vllm.complete("tiny").status_code == 200  # some traffic, so histograms have samples
    direct = httpx.get(real_vllm.url + "/metrics", timeout=10).text
    served = httpx.get(runtime.url + "/metrics", timeout=10).text
    engine_families = {f.name for f in text_string_to_metric_families(direct) if f.name.startswith("vllm:")}
    ours = {f.name: f for f in text_string_to_metric_families(served)}
    assert engine_families and engine_families <= set(ours), engine_families - set(ours)
    for name in (
        "aibrix:num_requests_running",
        "aibrix:num_requests_waiting",
        "aibrix:kv_cache_usage_perc",
        "aibrix:prompt_tokens",
        "aibrix:generation_tokens",
        "aibrix:time_to_first_token_seconds",
        "aibrix:request_success",
        "aibrix:engine_up",
    ):
        assert name in ours, name
    assert [s.value for s in ours["aibrix:engine_up"].samples] == [1.0]
    assert sum(s.value for s in ours["aibrix:generation_tokens"].samples if s.name.endswith("_total")) >= 4

    require(PROMTOOL.exists(), "promtool (scripts/fetch_promtool.sh)")
    result = subprocess.run([str(PROMTOOL), "check", "metrics"], input=served, capture_output=True, text=True)
    report = result.stdout + result.stderr
    assert result.returncode in (0, 3), report  # 3: lint remarks only
    remarks = [line for line in report.splitlines() if line.startswith("aibrix:")]
    assert not [line for line in remarks if not line.endswith(ACCEPTED_LINT)], remarks


def test_a_delegated_adapter_vllm_refuses_leaves_no_files(
    procs, real_vllm: RealVLLM, rgw: RadosGateway, tmp_path: Path
) -> None:
    """An artifact vLLM can never load (rank above --max-lora-rank) is a 422, and its downloaded files are gone."""
    client = rgw.client()
    client.create_bucket(Bucket="big-loras")
    for path in (tiny_models() / "lora-r64").iterdir():
        client.put_object(Bucket="big-loras", Key=f"big/{path.name}", Body=path.read_bytes())
    adapters = tmp_path / "adapters"
    runtime = procs.runtime("vllm", real_vllm.url, env={"AIBRIX_ADAPTER_DIR": str(adapters), **rgw.env()})
    response = load(runtime, lora_name="big", artifact_url="s3://big-loras/big/")
    assert error_of(response) == (422, "RankTooHigh")
    assert not (adapters / "big").exists()
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert [(a["name"], a["state"]) for a in listing] == [("big", "failed")]
    assert "greater than max_lora_rank" in listing[0]["reason"]


def test_admission_refuses_before_vllm_is_asked(procs, real_vllm: RealVLLM, tmp_path: Path) -> None:
    """Each rule real vLLM would otherwise meet: vLLM's access log shows no load request for any of them."""
    good = tiny_models() / "lora-r8"
    env = {"AIBRIX_ENGINE_MAX_LORA_RANK": "8", "AIBRIX_BASE_MODEL_CHECK": "refuse"}
    runtime = procs.runtime("vllm", real_vllm.url, env=env)

    def variant(name: str, change: dict, extra: str | None = None) -> Path:
        folder = shutil.copytree(good, tmp_path / name)
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, **change}))
        if extra:
            shutil.copy(folder / "adapter_model.safetensors", folder / extra)
        return folder

    cases = {
        "adm-rank": (tiny_models() / "lora-r64", "LoRA rank 64 is greater than max_lora_rank 8"),
        "adm-peft": (variant("adm-peft", {"peft_type": "IA3"}), "only LORA adapters"),
        "adm-base": (variant("adm-base", {"base_model_name_or_path": "Qwen/Qwen2-7B"}), "trained for base model"),
        "adm-pickle": (variant("adm-pickle", {}, "adapter_model.bin"), "pickle-based format"),
    }
    assert real_vllm.proc is not None
    asked = real_vllm.proc.output(10**8).count("POST /v1/load_lora_adapter")
    for name, (folder, says) in cases.items():
        response = load(runtime, lora_name=name, lora_path=str(folder))
        assert error_of(response) == (422, "RankTooHigh" if name == "adm-rank" else "AdapterRejected"), response.text
        assert says in response.json()["error"]["message"]
    pinned = load(runtime, lora_name="adm-digest", lora_path=str(good), artifact_digest="sha256:" + "1" * 64)
    assert error_of(pinned) == (422, "DigestMismatch"), pinned.text
    assert real_vllm.proc.output(10**8).count("POST /v1/load_lora_adapter") == asked
    assert not ({"adm-digest"} | set(cases)) & real_vllm.adapters()
    assert load(runtime, lora_name="adm-ok", lora_path=str(good)).status_code == 200  # the log does show loads
    assert real_vllm.proc.output(10**8).count("POST /v1/load_lora_adapter") == asked + 1
    assert unload(runtime, "adm-ok").status_code == 200


def test_an_adapter_is_replaced_in_place_under_traffic_with_no_failed_request(
    real_vllm: RealVLLM, runtime: Proc
) -> None:
    """vLLM's load_inplace swaps the weights while completions keep naming the adapter: none fails, and afterwards
    the adapter answers as the new version does (greedy completions of the two versions differ)."""
    import threading

    prompt, models = "The weather today is", tiny_models()

    def greedy(name: str) -> tuple[str, list[float]]:
        """The greedy completion and its tokens' log-probabilities (the tiny model's text may decode to nothing,
        but the weights show in every log-probability)."""
        body = {"model": name, "prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 1}
        answer = httpx.post(real_vllm.url + "/v1/completions", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        choice = answer.json()["choices"][0]
        return choice["text"], [round(v, 4) for v in choice["logprobs"]["token_logprobs"]]

    assert load(runtime, lora_name="swap", lora_path=str(models / "lora-r8")).status_code == 200
    before = greedy("swap")
    outcomes: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set() and len(outcomes) < 10_000:
            outcomes.append(real_vllm.complete("swap", prompt=prompt, max_tokens=2).status_code)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while len(outcomes) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    replaced = load(runtime, lora_name="swap", lora_path=str(models / "lora-r8-b"), replace=True)
    count = len(outcomes)
    while len(outcomes) < count + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(timeout=30)
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["replaced"], replaced.json()["gap"]) == (True, False)
    assert len(outcomes) >= 10 and set(outcomes) == {200}, outcomes  # no request failed during the swap
    after = greedy("swap")
    assert load(runtime, lora_name="ref-b", lora_path=str(models / "lora-r8-b")).status_code == 200
    assert after == greedy("ref-b") and after != before, (before, after)
    assert unload(runtime, "ref-b").status_code == 200 and unload(runtime, "swap").status_code == 200
