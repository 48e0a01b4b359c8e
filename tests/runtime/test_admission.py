"""Admission: a bad adapter gets one precise 422 before any engine is asked (aibrix.peft holds the rules, after
vLLM's lora/peft_helper.py and lora/lora_model.py). Table tests of the rules, then the runtime refusing in front of
an engine simulator that counts the loads it is asked for."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from aibrix.peft import InvalidAdapter, Limits, inspect, rank_limit_in, same_base
from tests.helpers.runtime_api import assert_error

GOOD = {
    "peft_type": "LORA",
    "r": 8,
    "lora_alpha": 16,
    "target_modules": ["q_proj"],
    "base_model_name_or_path": "org/base-model",
}


def adapter(root: Path, config: object = GOOD, files: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config)
        (root / "adapter_config.json").write_text(text)
    for name, data in (files or {"adapter_model.safetensors": b"\0" * 64}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize(
    ("config", "files", "limits", "says"),
    [
        (None, None, Limits(), "no adapter_config.json"),
        ("{not json", None, Limits(), "adapter_config.json is not JSON"),
        ("[1, 2]", None, Limits(), "must hold a JSON object, not list"),
        ({**GOOD, "peft_type": "PREFIX_TUNING"}, None, Limits(), "peft_type 'PREFIX_TUNING': only LORA"),
        ({**GOOD, "r": 0}, None, Limits(), "LoRA rank r must be a positive integer, got 0"),
        ({**GOOD, "rank_pattern": {"q_proj": "8"}}, None, Limits(), "rank_pattern['q_proj'] must be a positive"),
        (
            {**GOOD, "r": 16},
            None,
            Limits(max_rank=8),
            "LoRA rank 16 is greater than max_lora_rank 8 (the engine's limit)",
        ),
        (
            {**GOOD, "rank_pattern": {"v_proj": 64}},
            None,
            Limits(max_rank=16),
            "LoRA rank 64 is greater than max_lora_rank 16",
        ),
        (
            GOOD,
            {"adapter_model.bin": b"x"},
            Limits(),
            "pickle-based format can run code when loaded: adapter_model.bin",
        ),
        (GOOD, {"sub/w.pt": b"x"}, Limits(), "sub/w.pt"),
        (GOOD, {f"w{i}.safetensors": b"x" for i in range(5)}, Limits(max_files=4), "more than 4 files"),
        (GOOD, {"w.safetensors": b"x" * 100}, Limits(max_bytes=50), "over the limit of 50"),
    ],
)
def test_each_rule_refuses_with_what_is_wrong(
    tmp_path: Path, config: object, files: dict | None, limits: Limits, says: str
) -> None:
    with pytest.raises(InvalidAdapter) as refused:
        inspect(adapter(tmp_path / "a", config, files), limits)
    assert says in refused.value.message
    rank = "max_lora_rank" in says  # a fact about the engine, not the adapter: the controller tries another pod
    assert refused.value.status == 422 and refused.value.kind == ("RankTooHigh" if rank else "AdapterRejected")


def test_a_good_adapter_passes_with_its_facts(tmp_path: Path) -> None:
    folder = adapter(tmp_path / "a", {**GOOD, "rank_pattern": {"v_proj": 16}}, {"adapter_model.bin": b"x"})
    (folder / ".aibrix").mkdir()  # the downloader's own metadata is not the adapter's
    (folder / ".aibrix" / "w.pt").write_bytes(b"x")
    facts = inspect(folder, Limits(max_rank=16, allow_pickle=True))
    assert (facts.rank, facts.base_model, facts.files) == (16, "org/base-model", 2)
    assert inspect(adapter(tmp_path / "b", {"r": 8}), Limits(max_rank=8)).rank == 8  # vLLM needs no peft_type


@pytest.mark.parametrize(
    ("base", "served", "same"),
    [
        ("meta-llama/Llama-3-8B", ["llama-3-8b"], True),
        ("/models/Llama-3-8B/", ["tiny", "/mnt/models/llama-3-8b"], True),
        ("Qwen/Qwen2-0.5B", ["tiny", "/models/llama-3-8b"], False),
    ],
)
def test_base_models_compare_as_users_write_them(base: str, served: list[str], same: bool) -> None:
    assert same_base(base, served) is same


def test_the_rank_limit_is_read_from_vllms_refusal() -> None:
    assert rank_limit_in("LoRA rank 64 is greater than max_lora_rank 8.") == 8
    assert rank_limit_in("something else") is None


def test_checking_a_64_file_adapter_costs_under_2_ms(tmp_path: Path) -> None:
    folder = adapter(tmp_path / "a", GOOD, {f"shard-{i:02}.safetensors": b"\0" * 4096 for i in range(63)})
    inspect(folder, Limits(max_rank=64))
    took = min(_timed(lambda: inspect(folder, Limits(max_rank=64))) for _ in range(20))
    assert took < 0.002, took


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


@pytest.fixture
def checked(procs, tmp_path: Path):
    sim = procs.sim("vllm", "--max-lora-rank", "16")
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_BASE_MODEL_CHECK": "refuse"})
    return sim, runtime


def test_the_runtime_refuses_before_the_engine_is_asked(checked, tmp_path: Path) -> None:
    """The simulator would load each of these (it judges ranks and paths only): that it lists none shows it was never
    asked."""
    sim, runtime = checked
    cases = {
        "pickled": ({**GOOD, "base_model_name_or_path": "base-model"}, {"adapter_model.bin": b"x"}, "pickle-based"),
        "other-base": ({**GOOD, "base_model_name_or_path": "Qwen/Qwen2-7B"}, None, "trained for base model"),
        "not-lora": ({**GOOD, "peft_type": "IA3"}, None, "only LORA adapters"),
        "too-big": ({**GOOD, "r": 32}, None, "max_lora_rank 16"),  # learned from the engine's first refusal
    }
    for name, (config, files, says) in cases.items():
        body = {"lora_name": name, "lora_path": str(adapter(tmp_path / name, config, files))}
        if name == "too-big":  # the first refusal comes from the engine and teaches the runtime its limit
            assert httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=10).status_code == 422
            body["lora_name"] = "too-big-again"
        refused = httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=10)
        assert_error(refused, 422, says)
        assert refused.json()["error"]["type"] == ("RankTooHigh" if name == "too-big" else "AdapterRejected")
    models = httpx.get(sim.url + "/v1/models", timeout=5).json()["data"]
    assert [m["id"] for m in models if m.get("parent")] == []


def test_a_base_model_mismatch_is_only_a_warning_by_default(procs, tmp_path: Path) -> None:
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url)
    folder = adapter(tmp_path / "a", {**GOOD, "base_model_name_or_path": "Qwen/Qwen2-7B"})
    loaded = httpx.post(
        runtime.url + "/v1/lora_adapter/load", json={"lora_name": "a", "lora_path": str(folder)}, timeout=10
    )
    assert loaded.status_code == 200, loaded.text
    assert "trained for base model 'Qwen/Qwen2-7B'" in loaded.json()["warnings"][0]


def test_a_folder_digest_is_the_sha256_of_its_sorted_manifest(tmp_path: Path) -> None:
    """The definition docs/runtime.md gives, computed here the long way: ``sha256sum`` lines over sorted paths."""
    import hashlib

    from aibrix.peft import DigestMismatch, folder_digest, verify_digest

    folder = adapter(tmp_path / "a", GOOD, {"b/w.safetensors": b"weights", "a.txt": b"readme"})
    (folder / ".aibrix").mkdir()
    (folder / ".aibrix" / "state").write_bytes(b"the downloader's own")
    files = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".aibrix" not in p.parts
    )
    manifest = "".join(f"{hashlib.sha256((folder / f).read_bytes()).hexdigest()}  {f}\n" for f in files)
    assert folder_digest(folder) == "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    verify_digest(folder, folder_digest(folder))
    single = tmp_path / "single"
    single.mkdir()
    (single / "adapter.tar").write_bytes(b"one file")
    verify_digest(single, "sha256:" + hashlib.sha256(b"one file").hexdigest())  # one file: its own digest counts
    with pytest.raises(DigestMismatch) as wrong:
        verify_digest(folder, "sha256:" + "0" * 64)
    assert wrong.value.status == 422 and "not the expected sha256:000" in wrong.value.message


def test_a_downloaded_artifact_whose_digest_differs_is_refused_and_leaves_nothing(hub_stack) -> None:
    from aibrix.peft import folder_digest
    from tests.helpers.artifacts import ADAPTER
    from tests.helpers.runtime_api import load_body

    sim, runtime, adapters = hub_stack
    body = {
        "lora_name": "pinned",
        "artifact_url": "huggingface://org/sql-lora",
        "artifact_digest": "sha256:" + "a" * 64,
    }
    refused = load_body(runtime, body)
    assert_error(refused, 422, "not the expected sha256:aaaa")
    assert refused.json()["error"]["type"] == "DigestMismatch"
    assert not (adapters / "pinned").exists()
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert [(a["name"], a["state"]) for a in listing] == [("pinned", "failed")]
    expected = adapter(adapters.parent / "expected", None, ADAPTER)
    loaded = load_body(runtime, {**body, "artifact_digest": folder_digest(expected)})
    assert loaded.status_code == 200, loaded.text
    assert "pinned" in httpx.get(sim.url + "/v1/models", timeout=5).text
    malformed = load_body(runtime, {**body, "lora_name": "bad", "artifact_digest": "md5:abc"})
    assert malformed.status_code == 422 and "artifact_digest" in malformed.text
