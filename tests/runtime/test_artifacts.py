"""Adapters the runtime downloads itself (artifact delegation), cleans up, remembers and re-loads."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.helpers.artifacts import ADAPTER
from tests.helpers.procs import free_port, start_runtime, start_sim
from tests.helpers.runtime_api import assert_error, load_body


def engine_adapters(sim) -> dict[str, str]:
    cards = httpx.get(f"{sim.url}/v1/models").json()["data"]
    return {card["id"]: card["root"] for card in cards if card.get("parent")}


def test_huggingface_artifact_is_downloaded_then_loaded_then_cleaned_up(hub_stack):
    sim, runtime, adapters = hub_stack
    response = load_body(runtime, {"lora_name": "sql", "artifact_url": "huggingface://org/sql-lora"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["lora_path"] == str(adapters / "sql")
    assert body["source"] == "huggingface://org/sql-lora"
    assert body["download_seconds"] is not None and body["load_seconds"] >= 0
    for name, data in ADAPTER.items():
        assert (adapters / "sql" / name).read_bytes() == data
    assert engine_adapters(sim)["sql"] == str(adapters / "sql")
    listing = httpx.get(f"{runtime.url}/v1/lora_adapter").json()["data"]
    assert [(a["name"], a["state"], a["delegated"]) for a in listing] == [("sql", "loaded", True)]
    assert listing[0]["size_bytes"] >= sum(len(d) for d in ADAPTER.values())

    assert httpx.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "sql"}).status_code == 200
    assert not (adapters / "sql").exists()
    assert "sql" not in engine_adapters(sim)
    assert httpx.get(f"{runtime.url}/v1/lora_adapter").json()["data"] == []


def test_private_artifact_needs_its_token_and_failure_leaves_nothing(hub_stack, hub):
    sim, runtime, adapters = hub_stack
    denied = load_body(runtime, {"lora_name": "priv", "artifact_url": "huggingface://org/private-lora"})
    assert_error(denied, 403, "access denied")
    assert not (adapters / "priv").exists()
    listing = httpx.get(f"{runtime.url}/v1/lora_adapter").json()["data"]
    assert listing[0]["state"] == "failed" and "access denied" in listing[0]["reason"]
    body = {
        "lora_name": "priv",
        "artifact_url": "huggingface://org/private-lora",
        "credentials": {"huggingface_token": hub.token},
    }
    assert load_body(runtime, body).status_code == 200
    listing = httpx.get(f"{runtime.url}/v1/lora_adapter").text
    metrics = httpx.get(f"{runtime.url}/metrics").text
    logs = runtime_logs(runtime)
    for text in (listing, metrics, logs, (adapters / ".runtime-adapters.json").read_text()):
        assert hub.token not in text


def runtime_logs(runtime) -> str:
    runtime.stop()
    return runtime.output(limit=10**8)


def test_unknown_credential_key_is_refused(hub_stack):
    _, runtime, adapters = hub_stack
    body = {"lora_name": "x", "artifact_url": "s3://b/k/", "credentials": {"aws_secret": "oops"}}
    assert_error(load_body(runtime, body), 400, "unknown credential keys")
    assert not (adapters / "x").exists()


def test_local_absolute_artifact_path_loads_without_download(hub_stack, adapter_repo):
    sim, runtime, adapters = hub_stack
    response = load_body(runtime, {"lora_name": "local", "artifact_url": str(adapter_repo)})
    assert response.status_code == 200, response.text
    assert response.json()["download_seconds"] is None
    assert engine_adapters(sim)["local"] == str(adapter_repo)
    httpx.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "local"})
    assert adapter_repo.exists()  # never delete what the runtime did not download


def test_concurrent_duplicate_loads_download_once(hub_stack, hub):
    _, runtime, _ = hub_stack

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            body = {"lora_name": "twice", "artifact_url": "huggingface://org/sql-lora"}
            return await asyncio.gather(
                *(client.post(f"{runtime.url}/v1/lora_adapter/load", json=body) for _ in range(4))
            )

    responses = asyncio.run(go())
    assert [r.status_code for r in responses] == [200] * 4
    assert sum(not r.json()["already_loaded"] for r in responses) == 1
    assert hub.bytes_served < 2 * sum(len(d) for d in ADAPTER.values())


def reload_count(runtime) -> float:
    for line in httpx.get(f"{runtime.url}/metrics").text.splitlines():
        if line.startswith("aibrix:runtime_adapter_reloads_total "):
            return float(line.split()[1])
    raise AssertionError("aibrix:runtime_adapter_reloads_total missing")


def wait_until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def test_adapters_come_back_after_engine_restart(procs, tmp_path, adapter_repo):
    port = free_port()
    sim = start_sim("vllm", port=port)
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")})
    names = [f"lora-{i}" for i in range(10)]
    for name in names:
        assert load_body(runtime, {"lora_name": name, "lora_path": str(adapter_repo)}).status_code == 200
    sim.stop()
    sim = procs.sim("vllm", port=port)
    wait_until(lambda: set(names) <= set(engine_adapters(sim)), timeout=5)
    wait_until(lambda: reload_count(runtime) >= 10, timeout=2)
    assert reload_count(runtime) == 10


def test_runtime_restart_picks_its_adapters_up_again(procs, tmp_path, adapter_repo):
    port = free_port()
    sim = start_sim("vllm", port=port)
    env = {"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")}
    runtime = start_runtime("vllm", sim.url, env=env)
    for name in ("keep-a", "keep-b"):
        assert load_body(runtime, {"lora_name": name, "lora_path": str(adapter_repo)}).status_code == 200
    runtime.stop()
    sim.stop()  # both restart: the engine has forgotten everything
    sim = procs.sim("vllm", port=port)
    runtime = procs.runtime("vllm", sim.url, env=env)
    wait_until(lambda: {"keep-a", "keep-b"} <= set(engine_adapters(sim)), timeout=5)
    names = [a["name"] for a in httpx.get(f"{runtime.url}/v1/lora_adapter").json()["data"]]
    assert names == ["keep-a", "keep-b"]


def test_runtime_api_key_guards_management_but_not_probes(procs, tmp_path, adapter_repo):
    sim = procs.sim("vllm", "--api-key", "engine-key")
    env = {
        "AIBRIX_RUNTIME_API_KEY": "runtime-key",
        "INFERENCE_ENGINE_API_KEY": "engine-key",
        "AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters"),
    }
    runtime = procs.runtime("vllm", sim.url, env=env)
    body = {"lora_name": "guarded", "lora_path": str(adapter_repo)}
    assert_error(load_body(runtime, body), 401, "runtime API key")
    assert_error(httpx.get(f"{runtime.url}/v1/lora_adapter"), 401)
    assert_error(httpx.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "guarded"}), 401)
    wrong = {"Authorization": "Bearer engine-key"}
    assert_error(httpx.post(f"{runtime.url}/v1/lora_adapter/load", json=body, headers=wrong), 401)
    for path in ("/healthz", "/ready", "/metrics"):
        assert httpx.get(runtime.url + path).status_code == 200, path
    right = {"Authorization": "Bearer runtime-key"}
    # the runtime's key stays with the runtime; the engine gets INFERENCE_ENGINE_API_KEY
    response = httpx.post(f"{runtime.url}/v1/lora_adapter/load", json=body, headers=right)
    assert response.status_code == 200, response.text


def test_oversized_bodies_and_artifacts_are_refused(procs, tmp_path, hub):
    sim = procs.sim("vllm")
    env = {
        "AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters"),
        "HF_ENDPOINT": hub.url,
        "AIBRIX_MAX_BODY_BYTES": "2048",
        "AIBRIX_MAX_ARTIFACT_BYTES": str(1 << 20),
    }
    runtime = procs.runtime("vllm", sim.url, env=env)
    big = {"lora_name": "big", "lora_path": "/x" * 2000}
    assert_error(httpx.post(f"{runtime.url}/v1/lora_adapter/load", json=big), 413, "over the limit")

    def chunks():
        yield b'{"lora_name": "big", "lora_path": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}'

    streamed = httpx.post(f"{runtime.url}/v1/lora_adapter/load", content=chunks())  # no Content-Length
    assert_error(streamed, 413, "over the limit")
    artifact = {"lora_name": "too-big", "artifact_url": "huggingface://org/sql-lora"}
    assert_error(load_body(runtime, artifact), 413, "over the limit")
    assert not (tmp_path / "adapters" / "too-big").exists()


def test_background_model_download_and_listing(procs, tmp_path, hub, adapter_repo):
    sim = procs.sim("vllm")
    models = tmp_path / "models"
    runtime = procs.runtime("vllm", sim.url, env={"DOWNLOADER_LOCAL_DIR": str(models), "HF_ENDPOINT": hub.url})
    try:
        started = httpx.post(f"{runtime.url}/v1/model/download", json={"model_uri": "org/sql-lora"})
        assert started.status_code == 200, started.text
        assert started.json()["model_status"] in ("downloading", "downloaded")
        assert httpx.get(f"{runtime.url}/healthz", timeout=1).status_code == 200  # the loop is not blocked

        def status() -> str:
            cards = httpx.get(f"{runtime.url}/v1/model/list").json()["data"]
            return cards[0]["model_status"] if cards else ""

        wait_until(lambda: status() == "downloaded", timeout=20)
        card = httpx.get(f"{runtime.url}/v1/model/list").json()["data"][0]
        assert card["model_name"] == "org/sql-lora" and card["bytes_done"] == card["bytes_total"] > 0
        for name, data in ADAPTER.items():
            assert (models / "org/sql-lora" / name).read_bytes() == data

        missing = httpx.post(f"{runtime.url}/v1/model/download", json={"model_uri": "org/nope"})
        assert missing.status_code == 200

        def failed() -> bool:
            cards = httpx.get(f"{runtime.url}/v1/model/list").json()["data"]
            return any(c["model_status"] == "failed" and "not found" in c["reason"] for c in cards)

        wait_until(failed, timeout=20)
        outside = {"model_uri": "org/sql-lora", "local_dir": "/etc"}
        assert_error(httpx.post(f"{runtime.url}/v1/model/download", json=outside), 400, "inside")
        escaping = {"model_uri": "org/sql-lora", "model_name": "../x"}
        assert_error(httpx.post(f"{runtime.url}/v1/model/download", json=escaping), 400, "must be one folder name")
    finally:
        runtime.stop()
        sim.stop()
    restarted_sim = procs.sim("vllm")
    restarted = procs.runtime("vllm", restarted_sim.url, env={"DOWNLOADER_LOCAL_DIR": str(models)})
    cards = httpx.get(f"{restarted.url}/v1/model/list").json()["data"]
    assert [(c["model_name"], c["model_status"]) for c in cards] == [("org/sql-lora", "downloaded")]


def test_unicode_and_path_tricks_in_adapter_names_are_refused(hub_stack):
    _, runtime, adapters = hub_stack
    for name in ["ѕql", "sql\u200b", "ｓql", "sql/../x", "..", "x" * 254]:
        response = load_body(runtime, {"lora_name": name, "artifact_url": "huggingface://org/sql-lora"})
        assert_error(response, 422, "letters, digits, '.', '_' and '-'")
        assert not adapters.exists() or not any(adapters.iterdir()), name


def test_http_artifact_and_engine_key_from_additional_config(procs, tmp_path):
    from tests.helpers.payload_server import PayloadServer

    sim = procs.sim("vllm", "--api-key", "per-adapter-key")
    adapters = tmp_path / "adapters"
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(adapters)})
    data = b'{"r": 8, "lora_alpha": 16}'
    with PayloadServer({"/loras/adapter_config.json": data}) as server:
        body = {"lora_name": "web", "artifact_url": f"{server.url}/loras/adapter_config.json"}
        assert_error(load_body(runtime, body), 401)  # the engine wants its key
        keyed = {**body, "additional_config": {"api-key": "per-adapter-key"}}
        response = load_body(runtime, keyed)
    assert response.status_code == 200, response.text
    assert (adapters / "web" / "adapter_config.json").read_bytes() == data


def test_symlink_planted_in_the_adapter_directory_is_refused(hub_stack, tmp_path):
    _, runtime, adapters = hub_stack
    outside = tmp_path / "outside"
    outside.mkdir()
    adapters.mkdir(exist_ok=True)
    (adapters / "planted").symlink_to(outside)
    response = load_body(runtime, {"lora_name": "planted", "artifact_url": "huggingface://org/sql-lora"})
    assert_error(response, 400, "outside")
    assert not any(outside.iterdir())


def test_adapter_whose_files_vanished_is_reported_failed_not_listed(procs, tmp_path, adapter_repo):
    """After an engine restart, an adapter whose path is gone cannot come back: say so, do not pretend."""
    import shutil

    port = free_port()
    copy = tmp_path / "ephemeral-lora"
    shutil.copytree(adapter_repo, copy)
    sim = start_sim("vllm", port=port)
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")})
    assert load_body(runtime, {"lora_name": "ephemeral", "lora_path": str(copy)}).status_code == 200
    shutil.rmtree(copy)
    sim.stop()
    sim = procs.sim("vllm", port=port)

    def state() -> str:
        return httpx.get(f"{runtime.url}/v1/lora_adapter").json()["data"][0]["state"]

    wait_until(lambda: state() == "failed", timeout=5)
    ids = [card["id"] for card in httpx.get(f"{runtime.url}/v1/models").json()["data"]]
    assert "ephemeral" not in ids


def test_artifact_larger_than_the_free_disk_is_507_and_leaves_nothing(procs, small_filesystem, hub):
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(small_filesystem), "HF_ENDPOINT": hub.url})
    response = load_body(runtime, {"lora_name": "huge", "artifact_url": "huggingface://org/sql-lora"})
    assert_error(response, 507, "not enough disk space")
    assert not (small_filesystem / "huge").exists()
