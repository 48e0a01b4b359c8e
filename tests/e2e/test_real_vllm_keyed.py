"""Real vLLM started with --api-key: the runtime's key handling, self-healing after SIGKILL, and the auth cases of
the conformance table."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.conformance import AUTH_CASES, mismatches, run
from tests.helpers.procs import Proc, start_runtime
from tests.helpers.real_vllm import RealVLLM, start_twin_sim, tiny_models

pytestmark = pytest.mark.real_vllm
KEY = "secret-key"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed_vllm() -> Iterator[RealVLLM]:
    engine = RealVLLM(api_key=KEY).start()
    yield engine
    engine.stop()


def runtime_for(engine: RealVLLM, tmp_path: Path, name: str, **env: str) -> Proc:
    return start_runtime("vllm", engine.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / name), **env})


def load(
    runtime: Proc, name: str, path: Path, headers: dict[str, str] | None = None, **extra: object
) -> httpx.Response:  # noqa: E501
    body = {"lora_name": name, "lora_path": str(path), **extra}
    return httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, headers=headers or {}, timeout=60)


def states(runtime: Proc) -> dict[str, tuple[str, str]]:
    listing = httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    return {a["name"]: (a["state"], a["reason"]) for a in listing}


def test_auth_answers_of_the_simulator_match_real_vllm(keyed_vllm: RealVLLM) -> None:
    models = tiny_models()
    sim = start_twin_sim(api_key=KEY)
    try:
        real, simulated = run(keyed_vllm.url, AUTH_CASES, models), run(sim.url, AUTH_CASES, models)
    finally:
        sim.stop()
    assert not mismatches(AUTH_CASES, real, simulated), mismatches(AUTH_CASES, real, simulated)


def test_the_engine_key_from_the_environment_the_header_or_additional_config(
    keyed_vllm: RealVLLM, tmp_path: Path
) -> None:
    adapter = tiny_models() / "lora-r8"
    bare = runtime_for(keyed_vllm, tmp_path, "bare")
    keyed = runtime_for(keyed_vllm, tmp_path, "keyed", INFERENCE_ENGINE_API_KEY=KEY)
    try:
        refused = load(bare, "key-none", adapter)
        assert (refused.status_code, refused.json()["error"]["message"]) == (401, "Unauthorized")
        assert httpx.get(bare.url + "/v1/models", timeout=10).status_code == 401
        assert httpx.get(bare.url + "/v1/models", headers=BEARER, timeout=10).status_code == 200
        assert load(bare, "key-header", adapter, headers=BEARER).status_code == 200
        assert load(bare, "key-config", adapter, additional_config={"api-key": KEY}).status_code == 200
        assert load(keyed, "key-env", adapter).status_code == 200
        assert {"key-header", "key-config", "key-env"} <= keyed_vllm.adapters()
        for runtime, name in ((bare, "key-header"), (bare, "key-config"), (keyed, "key-env")):
            response = httpx.post(
                runtime.url + "/v1/lora_adapter/unload", json={"lora_name": name}, headers=BEARER, timeout=30
            )
            assert response.status_code == 200, response.text
        assert not {"key-header", "key-config", "key-env"} & keyed_vllm.adapters()
    finally:
        bare.stop()
        keyed.stop()


def test_adapters_come_back_after_vllm_is_killed_whatever_carried_the_key(keyed_vllm: RealVLLM, tmp_path: Path) -> None:
    """The controller sends the engine's key with each load, not to the runtime's environment: after a restart
    the runtime must re-load with the key the adapter came with. What cannot come back is reported failed."""
    adapter = tiny_models() / "lora-r8"
    doomed = tmp_path / "doomed-copy"
    shutil.copytree(adapter, doomed)
    from_env = runtime_for(keyed_vllm, tmp_path, "env", INFERENCE_ENGINE_API_KEY=KEY)
    from_request = runtime_for(keyed_vllm, tmp_path, "request")
    runtimes = (from_env, from_request)
    try:
        assert load(from_env, "heal-env", adapter).status_code == 200
        assert load(from_env, "heal-gone", doomed).status_code == 200
        assert load(from_request, "heal-header", adapter, headers=BEARER).status_code == 200
        assert load(from_request, "heal-config", adapter, additional_config={"api-key": KEY}).status_code == 200
        wanted = {"heal-env", "heal-header", "heal-config"}

        keyed_vllm.kill()
        shutil.rmtree(doomed)
        keyed_vllm.start()
        healthy = time.monotonic()
        deadline = healthy + 10
        while not wanted <= keyed_vllm.adapters() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wanted <= keyed_vllm.adapters(), keyed_vllm.adapters()
        assert time.monotonic() - healthy < 5

        deadline = time.monotonic() + 10
        while states(from_env).get("heal-gone", ("",))[0] != "failed" and time.monotonic() < deadline:
            time.sleep(0.1)
        env_states, request_states = states(from_env), states(from_request)
        assert env_states["heal-env"][0] == "loaded"
        assert env_states["heal-gone"][0] == "failed"
        assert "404" in env_states["heal-gone"][1] and "No adapter found" in env_states["heal-gone"][1]
        assert {name: s[0] for name, s in request_states.items()} == {"heal-header": "loaded", "heal-config": "loaded"}
        assert "heal-gone" not in keyed_vllm.adapters()
        reloads = httpx.get(from_request.url + "/metrics", timeout=10).text
        assert "aibrix:runtime_adapter_reloads_total 2.0" in reloads
    finally:
        for runtime in runtimes:
            runtime.stop()
