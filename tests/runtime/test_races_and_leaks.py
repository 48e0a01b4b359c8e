"""Races and leaks in the runtime: a conflicting load never clobbers a live adapter, self-healing never undoes an
unload that just finished, a cancelled load stops its download, long model downloads never hold up adapter loads,
and signed URL queries never leave the runtime."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import httpx

from aibrix.runtime.adapters import AdapterService
from tests.helpers.engines import SlowListing
from tests.helpers.procs import start_runtime, start_sim


def test_a_name_loaded_from_elsewhere_is_refused_before_any_download(hub_stack, adapter_dir: Path) -> None:
    sim, runtime, adapters = hub_stack
    url = runtime.url + "/v1/lora_adapter/load"
    assert httpx.post(url, json={"lora_name": "dup", "lora_path": str(adapter_dir)}, timeout=30).status_code == 200
    conflict = httpx.post(url, json={"lora_name": "dup", "artifact_url": "huggingface://org/sql-lora"}, timeout=30)
    assert conflict.status_code == 409, conflict.text
    assert str(adapter_dir) in conflict.json()["error"]["message"]
    assert not (adapters / "dup").exists()  # nothing was downloaded
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    assert [(a["name"], a["state"], a["lora_path"]) for a in listing] == [("dup", "loaded", str(adapter_dir))]
    assert (adapters / ".runtime-adapters.json").read_text().count(str(adapter_dir)) >= 1
    cards = httpx.get(sim.url + "/v1/models", timeout=10).json()["data"]
    assert {c["id"]: c["root"] for c in cards if c.get("parent")} == {"dup": str(adapter_dir)}


def test_self_healing_never_loads_again_what_was_just_unloaded(tmp_path: Path) -> None:
    async def go() -> None:
        engine = SlowListing()
        service = AdapterService(engine, tmp_path)
        await service.load("lora", "/models/lora")
        engine.adapters.clear()  # the engine restarted and lost it
        healing = asyncio.create_task(service.reconcile())
        await asyncio.sleep(0.01)  # the pass has read what the runtime wants and is asking the engine
        engine.adapters["lora"] = "/models/lora"  # (loaded back by someone) ...
        await service.unload("lora")  # ... and unloaded by the user while the pass waits
        await healing
        assert "lora" not in engine.adapters
        assert service.listing() == []
        service.close()

    asyncio.run(go())


def test_every_answer_finds_its_adapter_on_disk_while_others_load_and_unload(tmp_path: Path) -> None:
    """Loads check their files and write the record in one worker thread, other writes go through the record's own
    thread: whichever lands last, no load is answered before its entry is on disk, and no older snapshot ends up
    over a newer one (the record matches what is loaded once everything settled)."""
    record = tmp_path / ".runtime-adapters.json"

    class Jittery(SlowListing):
        async def load_adapter(self, lora_name: str, lora_path: str, *, auth: str | None = None) -> str:
            await asyncio.sleep(random.random() / 200)
            return await super().load_adapter(lora_name, lora_path, auth=auth)

    async def load_then_look(service: AdapterService, name: str) -> None:
        await service.load(name, f"/models/{name}")
        assert name in {entry["name"] for entry in json.loads(record.read_text())["adapters"]}
        if int(name.removeprefix("a")) % 3 == 0:
            await service.unload(name)
            assert name not in {entry["name"] for entry in json.loads(record.read_text())["adapters"]}

    async def go() -> None:
        service = AdapterService(Jittery(), tmp_path)
        await asyncio.gather(*(load_then_look(service, f"a{i}") for i in range(40)))
        await service.record.flush()
        on_disk = {entry["name"] for entry in json.loads(record.read_text())["adapters"]}
        assert on_disk == set(service.loaded) == {f"a{i}" for i in range(40) if i % 3}
        service.close()

    random.seed(7)
    asyncio.run(go())


def test_signed_url_queries_and_user_info_never_leave_the_runtime(tmp_path: Path) -> None:
    """Presigned URLs carry their credential in the query: it must not reach error bodies, listings or logs."""
    from tests.helpers.payload_server import PayloadServer

    secret = "SIGNATURE-abc123"
    sim = start_sim("vllm")
    runtime = start_runtime(
        "vllm",
        sim.url,
        env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters"), "DOWNLOADER_LOCAL_DIR": str(tmp_path / "models")},
    )
    try:
        with PayloadServer({}) as server:
            host = server.url.removeprefix("http://")
            urls = [
                f"{server.url}/adapter.bin?X-Amz-Signature={secret}&X-Amz-Credential={secret}",
                f"http://user:{secret}@{host}/adapter.bin",
                f"http://127.0.0.1:9/gone.bin?sig={secret}",
            ]
            seen = []
            for index, url in enumerate(urls):
                body = {"lora_name": f"signed-{index}", "artifact_url": url}
                response = httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=30)
                assert response.status_code >= 400
                seen.append(response.text)
                download = {"model_uri": url, "model_name": f"m{index}"}
                seen.append(httpx.post(runtime.url + "/v1/model/download", json=download, timeout=30).text)
        seen.append(httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).text)
        for _ in range(50):  # the background downloads finish (and fail) quickly
            listing = httpx.get(runtime.url + "/v1/model/list", timeout=10).text
            if "downloading" not in listing:
                break
            time.sleep(0.1)
        seen += [listing, httpx.get(runtime.url + "/metrics", timeout=10).text]
    finally:
        runtime.stop()
        sim.stop()
    seen.append(runtime.output(limit=200_000))
    assert not [text for text in seen if secret in text]


def test_a_cancelled_delegated_load_stops_its_download_before_cleaning_up(tmp_path: Path) -> None:
    """The download thread used to keep writing after the cancelled load removed the folder, leaving files behind."""
    import threading

    async def go() -> None:
        service = AdapterService(SlowListing(), tmp_path)
        folder = tmp_path / "cancelled"
        written: list[int] = []

        def fetch(stop: threading.Event) -> None:
            for index in range(200):  # a slow download: a chunk every 20 ms, until told to stop
                if stop.is_set():
                    raise RuntimeError("stopped")
                folder.mkdir(parents=True, exist_ok=True)  # as the downloader makes its state folders
                (folder / f"part-{index}").write_bytes(b"x")
                written.append(index)
                time.sleep(0.02)

        load = asyncio.create_task(service.load_artifact("cancelled", "s3://b/k", lambda folder: fetch))
        await asyncio.sleep(0.2)
        load.cancel()
        try:
            await load
        except asyncio.CancelledError:
            pass
        count = len(written)
        await asyncio.sleep(0.2)
        assert len(written) == count  # the thread had stopped before the cleanup
        assert not folder.exists()
        assert service.listing()[0]["state"] == "failed"
        service.close()

    asyncio.run(go())


def test_long_model_downloads_never_hold_up_adapter_loads(procs, tmp_path: Path) -> None:
    """Each background model download used to hold a thread of the default executor for its whole length, which
    adapter downloads and DNS look-ups share: eight slow model downloads starved a delegated adapter load."""
    from tests.helpers.payload_server import PayloadServer

    sim = procs.sim("vllm")
    runtime = procs.runtime(
        "vllm",
        sim.url,
        env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters"), "DOWNLOADER_LOCAL_DIR": str(tmp_path / "models")},
    )
    fast = PayloadServer({"/lora/adapter_config.json": b'{"r": 8}'})
    with PayloadServer({f"/w{i}.bin": b"w" * 1000 for i in range(8)}, delay=4.0) as slow, fast:
        for index in range(8):
            body = {"model_uri": f"{slow.url}/w{index}.bin", "model_name": f"slow-{index}"}
            assert httpx.post(runtime.url + "/v1/model/download", json=body, timeout=10).status_code == 200
        time.sleep(0.5)  # they are all under way
        started = time.monotonic()
        load = {"lora_name": "quick", "artifact_url": f"{fast.url}/lora/adapter_config.json"}  # downloaded
        response = httpx.post(runtime.url + "/v1/lora_adapter/load", json=load, timeout=30)
        took = time.monotonic() - started
        assert response.status_code == 200, response.text
        listing = httpx.get(runtime.url + "/v1/model/list", timeout=10)
        assert listing.status_code == 200
    assert took < 2.0, took
