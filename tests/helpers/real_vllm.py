"""Real vLLM (its CPU build) as a child process, serving the tiny model scripts/make_tiny_model.py makes.

scripts/test.sh installs vLLM into an environment of its own and makes the model, then exports
AIBRIX_VLLM_PYTHON and AIBRIX_TINY_MODELS; without them these tests skip (and fail in CI).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.procs import HOST, Proc, free_port
from tests.helpers.services import require

SERVED_NAME = "tiny"
MAX_LORA_RANK = 8
MAX_LORAS = 2
MAX_MODEL_LEN = 256
START_TIMEOUT = 300.0


def tiny_models() -> Path:
    """The folder holding ``model``, ``lora-r8``, ``lora-r8-b`` and ``lora-r64``."""
    path = os.environ.get("AIBRIX_TINY_MODELS", "")
    require(bool(path) and (Path(path) / "model" / "config.json").exists(), "the tiny model (AIBRIX_TINY_MODELS)")
    return Path(path)


def vllm_python() -> str:
    python = os.environ.get("AIBRIX_VLLM_PYTHON", "")
    require(bool(python) and Path(python).exists(), "vLLM's CPU build (AIBRIX_VLLM_PYTHON)")
    return python


def serving_args(models: Path) -> list[str]:
    """The flags both the real engine and the simulator are started with."""
    return ["--max-model-len", str(MAX_MODEL_LEN), "--max-lora-rank", str(MAX_LORA_RANK), "--max-loras", str(MAX_LORAS)]


class RealVLLM:
    """``python -m vllm.entrypoints.openai.api_server`` (the wheel's ``vllm serve`` cannot find its distribution)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.extra_env = env or {}
        self.args = [*serving_args(tiny_models()), *(args or [])]  # later flags win, as argparse reads them
        self.models = tiny_models()
        self.python = vllm_python()
        self.api_key = api_key
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc: Proc | None = None
        self.started_seconds = 0.0

    def start(self) -> RealVLLM:
        argv = [
            self.python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.models / "model"),
            "--served-model-name",
            SERVED_NAME,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--enable-lora",
            "--max-num-seqs",
            "4",
            *self.args,
        ]
        if self.api_key:
            argv += ["--api-key", self.api_key]
        env = {
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_HOST_IP": HOST,
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            # the worker inside the engine-core process, as vLLM runs on one GPU: one interpreter fewer to import
            # torch into (27 s to ready becomes 18 s here); only the text of a failed load's 500 differs
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            **self.extra_env,
        }
        started = time.monotonic()
        self.proc = Proc(argv, self.port, env)
        self.wait_healthy(START_TIMEOUT)
        self.started_seconds = time.monotonic() - started
        return self

    def wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.popen.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.popen.returncode}: {self.proc.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        output = self.proc.output()
        self.stop()
        raise TimeoutError(f"vLLM was not healthy within {timeout}s: {output}")

    def kill(self) -> None:
        """SIGKILL, as a crashed engine container: no clean shutdown."""
        assert self.proc is not None
        os.killpg(self.proc.popen.pid, signal.SIGKILL)
        self.proc.popen.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port must be free before a restart binds it again
            try:
                httpx.get(self.url + "/health", timeout=0.5)
            except httpx.TransportError:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def adapters(self) -> set[str]:
        cards = httpx.get(self.url + "/v1/models", headers=self.headers(), timeout=10).json()["data"]
        return {card["id"] for card in cards if card.get("parent")}

    def complete(self, model: str, prompt: str = "Hello", max_tokens: int = 4) -> httpx.Response:
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        return httpx.post(self.url + "/v1/completions", json=body, headers=self.headers(), timeout=60)


@dataclass
class WideVLLM:
    """The session's second engine (tests/e2e/conftest.py): --max-lora-rank 64, our resolver plugin enabled."""

    engine: RealVLLM
    resolver_port: int  # where the plugin asks for adapters: test_lora_resolver starts a runtime there


PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "vllm-lora-resolver"


def install_resolver_plugin(target: Path, source: Path = PLUGIN) -> Path:
    """Our vLLM plugin (plugins/vllm-lora-resolver) installed with vLLM's own pip into ``target``, as an engine image
    would install it; put ``target`` on the engine's PYTHONPATH to use it. vLLM's cached environment is left as is."""
    with tempfile.TemporaryDirectory() as scratch:  # setuptools builds in the source tree: never in ours
        plugin = shutil.copytree(source, Path(scratch) / "plugin")
        argv = [vllm_python(), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
        subprocess.run([*argv, "--target", str(target), str(plugin)], check=True, capture_output=True, timeout=300)
    return target


def start_twin_sim(*args: str, api_key: str | None = None) -> Proc:
    """The simulator started as the real engine is: same served name, model path and serving flags."""
    from tests.helpers.procs import start_sim

    models = tiny_models()
    argv = ["--model", SERVED_NAME, "--model-path", str(models / "model"), *serving_args(models), *args]
    if api_key:
        argv += ["--api-key", api_key]
    return start_sim("vllm", *argv)
