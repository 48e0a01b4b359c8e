"""Run inside a network namespace that has only loopback (tests/helpers/netns.py starts it with ``unshare -n``):
start an engine simulator, a runtime and a redirecting server there, ask the runtime to load each artifact URL given
as JSON on the command line, directly and through a redirect, as an adapter artifact and as a model download (plus
S3/TOS endpoints given in a load's credentials), and print one JSON line per answer. A guard that lets an address
through then meets "network unreachable", never a real host."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx

from tests.helpers.payload_server import PayloadServer
from tests.helpers.procs import start_runtime, start_sim


def report(url: str, via: str, status: int, error: dict) -> None:
    print(json.dumps({"url": url, "via": via, "status": status, "error": error}), flush=True)


def model_download(runtime_url: str, uri: str, name: str) -> tuple[int, dict]:
    """POST /v1/model/download, then the listing until the download ends: (403, error) for a refusal."""
    response = httpx.post(runtime_url + "/v1/model/download", json={"model_uri": uri, "model_name": name}, timeout=30)
    if response.status_code != 200:
        return response.status_code, response.json().get("error", {})
    for _ in range(300):
        entry = next(
            m for m in httpx.get(runtime_url + "/v1/model/list", timeout=30).json()["data"] if m["model_name"] == name
        )
        if entry["model_status"] != "downloading":
            refused = "link-local or cloud metadata address" in entry["reason"]
            return (403 if refused else 502), {"type": "AccessDenied" if refused else "", "message": entry["reason"]}
        time.sleep(0.1)
    return 504, {"message": "the download did not end"}


def endpoint_loads(runtime_url: str, index: int, url: str) -> None:
    """S3 and TOS endpoints that arrive with a load's credentials."""
    for scheme, credentials in (
        ("s3", {"aws_endpoint_url": url, "aws_access_key_id": "a", "aws_secret_access_key": "b"}),
        ("tos", {"tos_endpoint": url, "tos_access_key": "a", "tos_secret_key": "b"}),
    ):
        body = {
            "lora_name": f"ssrf-{index}-{scheme}",
            "artifact_url": f"{scheme}://bucket/adapter/",
            "credentials": credentials,
        }
        response = httpx.post(runtime_url + "/v1/lora_adapter/load", json=body, timeout=30)
        report(url, f"{scheme}-endpoint", response.status_code, response.json().get("error", {}))


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    urls = json.loads(sys.argv[1])
    sim = start_sim("vllm")
    runtime = start_runtime("vllm", sim.url)
    redirects = {f"/hop/{index}": url for index, url in enumerate(urls)}
    try:
        with PayloadServer({}, redirects=redirects) as server:
            for index, url in enumerate(urls):
                for via, target in (("direct", url), ("redirect", f"{server.url}/hop/{index}")):
                    body = {"lora_name": f"ssrf-{index}-{via}", "artifact_url": target}
                    response = httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=30)
                    report(url, via, response.status_code, response.json().get("error", {}))
                    report(url, f"model-{via}", *model_download(runtime.url, target, f"m-{index}-{via}"))
                parts = urlsplit(url)
                endpoint_loads(runtime.url, index, f"{parts.scheme}://{parts.netloc}")
    finally:
        runtime.stop()
        sim.stop()


if __name__ == "__main__":
    main()
