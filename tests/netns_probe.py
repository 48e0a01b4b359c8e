"""Run inside a network namespace that has only loopback (tests/netns.py starts it with ``unshare -n``): start an
engine simulator, a runtime and a redirecting server there, ask the runtime to load each artifact URL given as JSON
on the command line, directly and through a redirect, and print one JSON line per answer. A guard that lets an
address through then meets "network unreachable", never a real host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from payload_server import PayloadServer  # noqa: E402
from procs import start_runtime, start_sim  # noqa: E402


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
                    print(json.dumps({"url": url, "via": via, "status": response.status_code,
                                      "error": response.json().get("error", {})}), flush=True)  # fmt: skip
    finally:
        runtime.stop()
        sim.stop()


if __name__ == "__main__":
    main()
