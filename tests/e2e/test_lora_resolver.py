"""Adapters on first request against real vLLM: our plugin (plugins/vllm-lora-resolver, installed with vLLM's pip)
asks the runtime, which fetches from Ceph's S3 with credentials vLLM never sees; vLLM then loads the folder itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.counting_proxy import CountingProxy
from tests.helpers.procs import Proc, start_runtime
from tests.helpers.real_vllm import RealVLLM, WideVLLM, tiny_models
from tests.helpers.services import RadosGateway

pytestmark = pytest.mark.real_vllm

BUCKET = "resolver-loras"


@dataclass
class Stack:
    vllm: RealVLLM
    runtime: Proc
    proxy: CountingProxy
    adapters: Path


def upload(rgw: RadosGateway, name: str, folder: Path) -> int:
    """The adapter's files under adapters/<name>/ in the bucket; returns how many."""
    client = rgw.client()
    for path in folder.iterdir():
        client.put_object(Bucket=BUCKET, Key=f"adapters/{name}/{path.name}", Body=path.read_bytes())
    return len(list(folder.iterdir()))


@pytest.fixture(scope="module")
def stack(rgw: RadosGateway, wide_vllm: WideVLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """vLLM with the plugin enabled (tests/e2e/conftest.py), and its runtime reading S3 through a proxy that counts
    what S3 is asked."""
    rgw.client().create_bucket(Bucket=BUCKET)
    vllm = wide_vllm.engine
    adapters = tmp_path_factory.mktemp("adapters")
    with CountingProxy(rgw.url) as proxy:
        env = {
            **rgw.env(),
            "AWS_ENDPOINT_URL": proxy.url,
            "AIBRIX_ADAPTER_DIR": str(adapters),
            "AIBRIX_LORA_SOURCE": f"s3://{BUCKET}/adapters/{{name}}/",
        }
        runtime = start_runtime("vllm", vllm.url, env=env, port=wide_vllm.resolver_port, host="127.0.0.1")
        yield Stack(vllm, runtime, proxy, adapters)
        runtime.stop()


def state(stack: Stack, name: str) -> str | None:
    listing = httpx.get(stack.runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    return {a["name"]: a["state"] for a in listing}.get(name)


def test_a_completion_naming_an_adapter_only_in_s3_succeeds_on_first_request(stack: Stack, rgw: RadosGateway) -> None:
    files = upload(rgw, "sql-lora", tiny_models() / "lora-r8-b")
    assert "sql-lora" not in stack.vllm.adapters()
    completion = stack.vllm.complete("sql-lora")
    assert completion.status_code == 200, completion.text
    assert "sql-lora" in stack.vllm.adapters()
    assert len(stack.proxy.gets(f"/{BUCKET}/adapters/sql-lora/")) == files
    deadline = time.monotonic() + 5  # the keeper may be confirming it with vLLM at this moment ("reloading")
    while state(stack, "sql-lora") != "loaded":
        assert time.monotonic() < deadline, state(stack, "sql-lora")
        time.sleep(0.1)
    unloaded = httpx.post(stack.runtime.url + "/v1/lora_adapter/unload", json={"lora_name": "sql-lora"}, timeout=30)
    assert unloaded.status_code == 200, unloaded.text
    assert "sql-lora" not in stack.vllm.adapters()
    assert not (stack.adapters / "sql-lora").exists()


def test_eight_concurrent_first_requests_cause_one_download_and_eight_completions(
    stack: Stack, rgw: RadosGateway
) -> None:
    files = upload(rgw, "burst-lora", tiny_models() / "lora-r8")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: stack.vllm.complete("burst-lora"), range(8)))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers if a.status_code != 200]
    assert len(stack.proxy.gets(f"/{BUCKET}/adapters/burst-lora/")) == files  # each file fetched once


def test_an_unknown_name_answers_like_vllms_own_404_and_fast_the_second_time(stack: Stack) -> None:
    first = stack.vllm.complete("nowhere-lora")
    assert first.status_code == 404, first.text
    assert "The model `nowhere-lora` does not exist." in first.json()["error"]["message"]
    started = time.monotonic()
    second = stack.vllm.complete("nowhere-lora")
    elapsed = time.monotonic() - started
    assert second.status_code == 404 and second.json() == first.json()
    assert elapsed < 0.1, elapsed
    listing = httpx.get(stack.runtime.url + "/v1/lora_adapter", timeout=10).json()["data"]
    failed = {a["name"]: a for a in listing if a["state"] == "failed"}
    assert "nowhere-lora" in failed and failed["nowhere-lora"]["reason"]


def test_installed_but_not_enabled_the_plugin_changes_nothing(real_vllm: RealVLLM, stack: Stack) -> None:
    """The session's engine has the plugin installed and not enabled (tests/e2e/conftest.py)."""
    answer = real_vllm.complete("nowhere-lora")
    assert answer.status_code == 404
    assert "The model `nowhere-lora` does not exist." in answer.json()["error"]["message"]
    registered = "AIBrix runtime LoRA resolver registered"
    assert real_vllm.proc is not None and stack.vllm.proc is not None
    assert registered not in real_vllm.proc.output(10**8) and registered in stack.vllm.proc.output(10**8)
