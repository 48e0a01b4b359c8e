"""Start the engine simulator as vLLM and the runtime, walk through the documented calls, stop both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ENGINE_PORT = int(os.environ.get("ENGINE_PORT", "8000"))
RUNTIME_PORT = int(os.environ.get("RUNTIME_PORT", "8080"))
BIN = Path(sys.executable).parent


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: {proc.args[0]} exited early with {proc.returncode}; is port {url} taken?")
        try:
            urllib.request.urlopen(url, timeout=0.5).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"demo: {url} did not come up within {timeout:g}s")


def show(method: str, url: str, body: dict | None = None) -> None:
    data = f" -d '{json.dumps(body)}'" if body else ""
    print(f"\n$ curl -X {method} {url}{data}")
    data = json.dumps(body).encode() if body else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    print(f"HTTP {status}  {text}")


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        adapter = Path(work, "my-lora")
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text('{"r": 16, "lora_alpha": 32}')
        logs = open(Path(work, "logs.txt"), "wb")
        engine = subprocess.Popen(
            [
                BIN / "aibrix_engine_sim",
                "--engine",
                "vllm",
                "--host",
                "127.0.0.1",
                "--port",
                str(ENGINE_PORT),
                "--model",
                "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            ],
            env={**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true"},
            stdout=logs,
            stderr=logs,
        )
        runtime = None
        try:
            wait_for(f"http://127.0.0.1:{ENGINE_PORT}/health", engine)
            print(f"engine simulator (vLLM) on :{ENGINE_PORT}")
            runtime = subprocess.Popen(
                [BIN / "aibrix_runtime", "--host", "127.0.0.1", "--port", str(RUNTIME_PORT)],
                env={
                    **os.environ,
                    "INFERENCE_ENGINE": "vllm",
                    "AIBRIX_ADAPTER_DIR": str(Path(work, "adapters")),
                    "INFERENCE_ENGINE_ENDPOINT": f"http://127.0.0.1:{ENGINE_PORT}",
                },
                stdout=logs,
                stderr=logs,
            )
            r = f"http://127.0.0.1:{RUNTIME_PORT}"
            wait_for(f"{r}/healthz", runtime)
            print(f"aibrix_runtime on :{RUNTIME_PORT}")
            show("GET", f"{r}/ready")
            show("POST", f"{r}/v1/lora_adapter/load", {"lora_name": "lora-2", "lora_path": str(adapter)})
            show("POST", f"{r}/v1/lora_adapter/load", {"lora_name": "lora-2", "lora_path": str(adapter)})
            show("GET", f"{r}/v1/models")
            show("POST", f"{r}/v1/lora_adapter/unload", {"lora_name": "lora-2"})
            show("POST", f"{r}/v1/lora_adapter/unload", {"lora_name": "lora-2"})
            show("GET", f"{r}/healthz")
        finally:
            for proc in (runtime, engine):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=10)
            print("\ndemo: done; runtime and engine simulator stopped")


if __name__ == "__main__":
    main()
