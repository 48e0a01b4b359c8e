"""Replacing a loaded adapter with a new version (``"replace": true``): downloaded beside the old one, checked,
swapped in (vLLM: load_inplace, no gap; SGLang: unload then load, and the answer says there was a gap), the old
files removed; a failed replacement leaves the old version serving and the record as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.helpers.procs import Proc
from tests.helpers.runtime_api import assert_error, load_body


def served(sim: Proc) -> dict[str, str]:
    cards = httpx.get(sim.url + "/v1/models", timeout=5).json()["data"]
    return {c["id"]: c["root"] for c in cards if c.get("parent")}


def recorded(adapters: Path) -> str:
    return (adapters / ".runtime-adapters.json").read_text()


def test_a_new_version_is_downloaded_beside_the_old_and_swapped_in(hub_stack, adapter_dir: Path) -> None:
    sim, runtime, adapters = hub_stack
    assert load_body(runtime, {"lora_name": "v", "lora_path": str(adapter_dir)}).status_code == 200
    artifact = {"lora_name": "v", "artifact_url": "huggingface://org/sql-lora", "replace": True}
    first = load_body(runtime, artifact)
    assert first.status_code == 200, first.text
    assert (first.json()["replaced"], first.json()["gap"]) == (True, False)  # vLLM loads in place
    assert served(sim) == {"v": str(adapters / "v")}
    second = load_body(runtime, artifact)
    assert second.status_code == 200, second.text
    assert served(sim) == {"v": str(adapters / "v~b")}  # beside the version that was serving
    assert not (adapters / "v").exists() and (adapters / "v~b" / "adapter_config.json").exists()
    assert adapter_dir.exists()  # a folder the runtime did not download is never removed

    before = recorded(adapters)
    refused = load_body(runtime, {**artifact, "artifact_digest": "sha256:" + "0" * 64})
    assert_error(refused, 422, "not the expected")
    assert served(sim) == {"v": str(adapters / "v~b")}  # the old version still serves
    assert recorded(adapters) == before and not (adapters / "v").exists()
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert [(a["name"], a["state"], a["lora_path"]) for a in listing] == [("v", "loaded", str(adapters / "v~b"))]


def test_replacing_what_is_not_loaded_is_a_404_and_a_plain_load_still_conflicts(hub_stack, adapter_dir: Path) -> None:
    sim, runtime, adapters = hub_stack
    assert_error(load_body(runtime, {"lora_name": "w", "lora_path": str(adapter_dir), "replace": True}), 404)
    assert load_body(runtime, {"lora_name": "w", "lora_path": str(adapter_dir)}).status_code == 200
    other = shutil.copytree(adapter_dir, adapters.parent / "other")
    assert_error(load_body(runtime, {"lora_name": "w", "lora_path": str(other)}), 409)


def test_an_engine_without_in_place_loads_says_there_was_a_gap(procs, adapter_dir: Path, tmp_path: Path) -> None:
    sim = procs.sim("sglang")
    runtime = procs.runtime("sglang", sim.url)
    assert load_body(runtime, {"lora_name": "s", "lora_path": str(adapter_dir)}).status_code == 200
    newer = shutil.copytree(adapter_dir, tmp_path / "newer")
    replaced = load_body(runtime, {"lora_name": "s", "lora_path": str(newer), "replace": True})
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["replaced"], replaced.json()["gap"]) == (True, True)
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert [(a["name"], a["lora_path"]) for a in listing] == [("s", str(newer))]
