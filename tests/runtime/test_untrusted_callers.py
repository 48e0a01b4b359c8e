"""Whoever reaches a pod can drive its runtime (it has no key by default): the runtime's own credentials, its
threads, its record and the engine connection must hold up against such a caller (issue 20)."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from tests.helpers.payload_server import LoopbackServer, PayloadServer


def test_a_line_break_in_the_engine_key_is_refused_before_any_download_or_engine_call(procs, tmp_path: Path) -> None:
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path)})
    smuggled = "k\r\nContent-Length: 0\r\n\r\nPOST /v1/unload_lora_adapter HTTP/1.1"
    with PayloadServer({"/lora/adapter_config.json": b'{"r": 8}'}) as artifacts:
        for source in ({"lora_path": "/models/a"}, {"artifact_url": f"{artifacts.url}/lora/adapter_config.json"}):
            body = {"lora_name": "a", **source, "additional_config": {"api-key": smuggled}}
            response = httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=10)
            assert response.status_code == 400, response.text
            assert "additional_config.api-key" in response.text and "Content-Length" not in response.text
        assert artifacts.hits == {}
    assert "a" not in {card["id"] for card in httpx.get(sim.url + "/v1/models").json()["data"]}
    assert not (tmp_path / "a").exists()


class Recorder(LoopbackServer):
    """Records every request it gets, whole (request line and headers), and refuses it with 403."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                recorder.seen.append(f"{self.requestline}\n{self.headers}")
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)


HELD = {
    "HF_TOKEN": "hf_secret",  # the token the hub fixture wants for its private repository
    "AWS_ACCESS_KEY_ID": "AKIAHELDKEY0000001",
    "AWS_SECRET_ACCESS_KEY": "held-secret-key",
    "AWS_SESSION_TOKEN": "held-session-token-9a8b",
    "AIBRIX_HTTP_HEADERS": '{"X-Held": "held-http-header-77"}',
}


def _leaked(text: str) -> list[str]:
    return [
        value
        for value in ("hf_secret", "AKIAHELDKEY0000001", "held-session-token-9a8b", "held-http-header-77")
        if value in text
    ]


def _settle(runtime_url: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = httpx.get(runtime_url + "/v1/model/list", timeout=10).json()["data"]
        if all(e["model_status"] != "downloading" for e in entries):
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} still downloading")


def test_the_runtimes_own_credentials_never_go_to_an_endpoint_a_caller_names(procs, hub, tmp_path: Path) -> None:
    sim = procs.sim("vllm")
    env = {
        **HELD,
        "HF_ENDPOINT": hub.url,
        "AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters"),
        "DOWNLOADER_LOCAL_DIR": str(tmp_path / "models"),
    }
    runtime = procs.runtime("vllm", sim.url, env=env)
    with Recorder() as elsewhere:
        # the runtime does hold a token and uses it at its own hub: the private repository downloads
        own = {"model_uri": "org/private-lora", "model_name": "own"}
        assert httpx.post(runtime.url + "/v1/model/download", json=own, timeout=10).status_code == 200
        _settle(runtime.url, "own")
        # a caller's hf_endpoint, a caller's S3 endpoint, a caller's http URL: none gets what the runtime holds
        moved = {
            "model_uri": "org/private-lora",
            "model_name": "moved",
            "download_extra_config": {"hf_endpoint": elsewhere.url},
        }
        assert httpx.post(runtime.url + "/v1/model/download", json=moved, timeout=10).status_code == 200
        _settle(runtime.url, "moved")
        for name, load in (
            ("s3", {"artifact_url": "s3://bucket/lora/", "credentials": {"endpoint": elsewhere.url}}),
            ("s3-key", {"artifact_url": "s3://bucket/lora/", "credentials": {"aws_endpoint_url": elsewhere.url}}),
            ("web", {"artifact_url": f"{elsewhere.url}/lora/adapter_config.json"}),
        ):
            response = httpx.post(runtime.url + "/v1/lora_adapter/load", json={"lora_name": name, **load}, timeout=30)
            assert response.status_code == 403, response.text  # the recorder's refusal: the request did go there
        # a caller that brings its own token has it sent, and only it
        given = {
            **moved,
            "model_name": "given",
            "download_extra_config": {"hf_endpoint": elsewhere.url, "hf_token": "caller-token"},
        }
        assert httpx.post(runtime.url + "/v1/model/download", json=given, timeout=10).status_code == 200
        _settle(runtime.url, "given")
    statuses = {e["model_name"]: e["model_status"] for e in httpx.get(runtime.url + "/v1/model/list").json()["data"]}
    assert statuses["own"] == "downloaded" and statuses["moved"] == "failed", statuses
    seen = "\n".join(elsewhere.seen)
    assert len(elsewhere.seen) >= 4 and "caller-token" in seen
    assert _leaked(seen) == [], _leaked(seen)
    assert "Authorization" not in "\n".join(s for s in elsewhere.seen if "caller-token" not in s)


def test_slow_adapter_downloads_leave_the_default_executor_free(tmp_path: Path) -> None:
    """Adapter downloads held default-executor threads for their whole run, and that executor is where the event
    loop resolves names (each new engine connection to "localhost"): slow loads stalled /ready and /metrics.
    Forty downloads that never finish now leave it free, and wait their turn for a download thread."""
    import asyncio
    import socket
    import threading

    from aibrix.runtime.adapters import MAX_DOWNLOADS, AdapterService
    from tests.helpers.engines import SlowListing

    release, started = threading.Event(), []

    def fetch(stop: threading.Event) -> None:
        started.append(1)
        release.wait(20)

    async def go() -> None:
        service = AdapterService(SlowListing(), tmp_path)
        loads = [
            asyncio.create_task(service.load_artifact(f"l{i}", "http://x/a", lambda folder: fetch)) for i in range(40)
        ]
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo("localhost", 80, type=socket.SOCK_STREAM), 5)
        resolved = time.monotonic() - t0
        assert len(started) == MAX_DOWNLOADS  # the others wait for a download thread, not for the loop's
        release.set()
        await asyncio.gather(*loads)
        service.close()
        assert resolved < 0.5, resolved

    try:
        asyncio.run(go())
    finally:
        release.set()


def test_a_record_entry_is_checked_as_strictly_as_a_request_before_anything_is_deleted(tmp_path: Path) -> None:
    """An edited record naming the adapter directory's parent (or a sibling) as a downloaded adapter's folder used
    to pass the parent check; unloading it then deleted outside the adapter directory."""
    import asyncio
    import json

    from aibrix.runtime.adapters import AdapterService
    from aibrix.runtime.record import STATE_FILE
    from tests.helpers.engines import SlowListing

    adapters, victim = tmp_path / "adapters", tmp_path / "victim"
    (adapters / "good").mkdir(parents=True)
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    entry = {"source": "s3://b/k/", "delegated": True, "state": "loaded"}
    entries = [
        {**entry, "name": "up", "lora_path": f"{adapters}/.."},
        {**entry, "name": "side", "lora_path": f"{adapters}/side/../../victim"},
        {**entry, "name": "../victim", "lora_path": f"{adapters}/../victim"},
        {**entry, "name": "good", "lora_path": str(adapters / "good")},
    ]
    (adapters / STATE_FILE).write_text(json.dumps({"adapters": entries}))

    async def go() -> None:
        engine = SlowListing()
        engine.adapters = {e["name"]: e["lora_path"] for e in entries}
        service = AdapterService(engine, adapters)
        assert sorted(service.managed) == ["good"]
        for name in ("up", "side", "good"):
            await service.unload(name)
        service.close()

    asyncio.run(go())
    assert (victim / "keep.txt").read_text() == "precious" and adapters.is_dir()
    assert not (adapters / "good").exists()  # the runtime's own download is still cleaned up


def test_model_downloads_a_caller_can_pile_up_are_bounded(tmp_path: Path) -> None:
    import asyncio

    from aibrix.errors import AibrixError
    from aibrix.runtime.downloads import MAX_PENDING, MAX_STATUSES, ModelDownloads
    from aibrix.storage.policy import OutboundPolicy

    with PayloadServer({}) as gone, PayloadServer({"/w.bin": b"w"}, delay=30.0) as hanging:

        async def go() -> None:
            downloads = ModelDownloads(tmp_path, {}, policy=OutboundPolicy(allow_local_files=False))
            for index in range(MAX_STATUSES + 20):  # fail at once (404), each leaving a status
                downloads.start(f"{gone.url}/w{index}.bin", None, f"gone-{index}")
                await asyncio.gather(*downloads._tasks.values())
            for index in range(MAX_PENDING):
                downloads.start(f"{hanging.url}/w.bin", None, f"slow-{index}")
            try:
                downloads.start(f"{hanging.url}/w.bin", None, "one-too-many")
            except AibrixError as exc:
                assert exc.status == 429 and "try later" in exc.message
            else:
                raise AssertionError("a download past the bound was accepted")
            with pytest.raises(AibrixError, match="at most 64"):
                downloads.start(f"{hanging.url}/w.bin", None, "threads", {"num_threads": 100000})
            assert len(downloads.statuses) <= MAX_STATUSES + MAX_PENDING
            for task in downloads._tasks.values():
                task.cancel()
            downloads._executor.shutdown(wait=False, cancel_futures=True)

        asyncio.run(go())
