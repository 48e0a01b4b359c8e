"""Whoever reaches a pod can drive its runtime (it has no key by default): the runtime's own credentials, its
threads, its record and the engine connection must hold up against such a caller (issue 20)."""

from __future__ import annotations

from pathlib import Path

import httpx

from payload_server import PayloadServer


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
