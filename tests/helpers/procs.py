"""Start the runtime and the engine simulator as real processes on free loopback ports."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import httpx

HOST = "127.0.0.1"


# Ports handed to child processes come from below the kernel's ephemeral range (32768-60999 on Linux), one block
# per pytest-xdist worker. Between free_port() and the child's bind the port is unheld: a server another worker binds
# to port 0 (the ephemeral range) or a free_port() of another worker could take it, and the child's failed start
# would go unseen while the other server answered its health check.
_FIRST_PORT, _EPHEMERAL_FIRST, _BLOCK = 20000, 32768, 700
_BLOCKS = (_EPHEMERAL_FIRST - _FIRST_PORT) // _BLOCK  # 18: the last one for a process not under xdist
_next_offset = random.randrange(_BLOCK)


def _block_start() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) % (_BLOCKS - 1) if worker.startswith("gw") and worker[2:].isdigit() else _BLOCKS - 1
    return _FIRST_PORT + index * _BLOCK


def free_port(host: str = HOST) -> int:
    """A port nothing listens on at ``host``, from this worker's own block: checked on the address the server will
    bind (a port free on 127.0.0.1 may be taken on a pod address, and a new server there would fail while the old
    one answered)."""
    global _next_offset
    start = _block_start()
    for _ in range(_BLOCK):
        port = start + _next_offset
        _next_offset = (_next_offset + 1) % _BLOCK
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + _BLOCK - 1} on {host}")


class Proc:
    """A child process serving HTTP on ``port``; ``stop()`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: Sequence[str], port: int, env: dict[str, str] | None = None, host: str = HOST) -> None:
        self.argv, self.port = list(argv), port
        self.url = f"http://{host}:{port}"
        full_env = {**os.environ, **(env or {})}
        # A file, not a pipe: a chatty child must never block on a full pipe nobody reads.
        self.log = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(
            self.argv, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_http(self, path: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.argv} exited with {self.popen.returncode}: {self.output()}")
            try:
                httpx.get(self.url + path, timeout=0.5)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if self.popen.poll() is None:
                return  # alive: the answer is its own unless another process holds the port (see free_port)
        self.stop()
        raise TimeoutError(f"{self.argv} did not serve {path} within {timeout}s: {self.output()}")

    def output(self, limit: int = 4000) -> str:
        """The last ``limit`` characters the process wrote to stdout and stderr."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-limit:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)


def start_sim(
    engine: str = "vllm", *args: str, port: int | None = None, env: dict[str, str] | None = None, host: str = HOST
) -> Proc:
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true", **(env or {})}
    port = port or free_port(host)
    proc = Proc(
        [
            sys.executable,
            "-m",
            "aibrix.sim.cli",
            "--engine",
            engine,
            "--host",
            host,
            "--port",
            str(port),
            "--model",
            "base-model",
            "--ttft-ms",
            "1",
            "--itl-ms",
            "1",
            *(SGLANG_SERVING if engine == "sglang" and "--max-lora-rank" not in args else ()),
            *args,
        ],
        port,
        env,
        host,
    )
    proc.wait_http("/v1/models" if engine == "sglang" else "/health")  # SGLang's /health takes a second
    return proc


# How the suite starts SGLang (unless a test gives its own serving flags, --max-lora-rank among them): as a
# deployment that serves adapters and metrics must be started.
SGLANG_SERVING = ("--enable-lora", "--max-lora-rank", "64", "--lora-target-modules", "all", "--enable-metrics")


def start_runtime(
    engine: str,
    engine_url: str,
    *args: str,
    env: dict[str, str] | None = None,
    host: str = HOST,
    port: int | None = None,
) -> Proc:
    """A runtime process; each gets its own adapter directory unless ``env`` names one (AIBRIX_ADAPTER_DIR)."""
    port = port or free_port(host)
    base = {
        "INFERENCE_ENGINE": engine,
        "INFERENCE_ENGINE_ENDPOINT": engine_url,
        "AIBRIX_ADAPTER_DIR": tempfile.mkdtemp(prefix="aibrix-adapters-"),
    }
    proc = Proc(
        [sys.executable, "-m", "aibrix.runtime.cli", "--host", host, "--port", str(port), *args],
        port,
        {**base, **(env or {})},
        host,
    )
    proc.wait_http("/healthz")
    return proc


class ProcGroup:
    """Simulators and runtimes started on demand for one test and stopped at its end (the ``procs`` fixture), on
    ``host`` (a pod address a real API server accepts, when a scenario runs against one)."""

    def __init__(self, host: str = HOST) -> None:
        self.started: list[Proc] = []
        self.host = host

    def sim(self, engine: str = "vllm", *args: str, port: int | None = None, env: dict[str, str] | None = None) -> Proc:
        return self.add(start_sim(engine, *args, port=port, env=env, host=self.host))

    def runtime(
        self, engine: str, engine_url: str, *args: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> Proc:
        return self.add(start_runtime(engine, engine_url, *args, env=env, host=self.host, port=port))

    def add(self, proc: Proc) -> Proc:
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def run_downloader(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m aibrix.downloader ARGS`` as a user runs it; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "aibrix.downloader", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
