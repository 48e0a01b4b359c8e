"""The sidecar's headline work, live: an engine (the simulator as vLLM, or real vLLM with --real) under traffic, the
runtime in front of it, an adapter loaded and listed, and the engine's metrics beside the standard aibrix: ones.
Then both keep running until Ctrl-C, with the commands to try next (--once stops at the end instead)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENGINE_PORT = int(os.environ.get("ENGINE_PORT", "8000"))
RUNTIME_PORT = int(os.environ.get("RUNTIME_PORT", "8080"))
SIM_MODEL = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
# engine family -> the aibrix: family the runtime serves for it (vLLM's names; docs/metrics.md has every engine)
PAIRS = [("vllm:num_requests_running", "aibrix:num_requests_running"),
         ("vllm:num_requests_waiting", "aibrix:num_requests_waiting"),
         ("vllm:kv_cache_usage_perc", "aibrix:kv_cache_usage_perc"),
         ("vllm:prompt_tokens_total", "aibrix:prompt_tokens_total"),
         ("vllm:generation_tokens_total", "aibrix:generation_tokens_total"),
         ("vllm:time_to_first_token_seconds_count", "aibrix:time_to_first_token_seconds_count")]  # fmt: skip


def call(method: str, url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def show(method: str, url: str, body: dict | None = None) -> str:
    print(f"\n$ curl -X {method} {url}" + (f" -d '{json.dumps(body)}'" if body else ""))
    status, text = call(method, url, body)
    print(f"HTTP {status}  {text[:400]}")
    return text


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: {proc.args[0]} exited with {proc.returncode}; is its port taken?")  # type: ignore[index]
        try:
            urllib.request.urlopen(url, timeout=0.5).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"demo: {url} did not answer within {timeout:g}s")


def start(argv: list[str], env: dict[str, str], logs: object) -> subprocess.Popen[bytes]:
    """In its own process group, so ``stop_group`` also reaches the engine's workers (vLLM's EngineCore)."""
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=logs, stderr=logs, start_new_session=True)  # type: ignore[arg-type]


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL for whatever of the group is left after ``grace`` seconds (a busy vLLM can take longer)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader may be gone while a worker lingers
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def engine_command(real: bool, work: Path) -> tuple[list[str], dict[str, str], str, Path]:
    """The engine's command line, environment, served model name and an adapter folder it can load."""
    if not real:
        adapter = work / "my-lora"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text('{"r": 16, "lora_alpha": 32}')
        argv = [str(BIN / "aibrix_engine_sim"), "--engine", "vllm", "--host", "127.0.0.1", "--port", str(ENGINE_PORT),
                "--model", SIM_MODEL, "--ttft-ms", "30", "--itl-ms", "5"]  # fmt: skip
        return argv, {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true"}, SIM_MODEL, adapter
    python = os.environ.get("AIBRIX_VLLM_PYTHON") or _last_line([str(ROOT / "scripts" / "install_vllm.sh")])
    models = Path(
        os.environ.get("AIBRIX_TINY_MODELS") or _last_line([str(ROOT / "scripts" / "make_tiny_model.sh"), python])
    )
    argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(ENGINE_PORT),
            "--model", str(models / "model"), "--served-model-name", "tiny", "--enable-lora", "--max-lora-rank", "8",
            "--max-loras", "2", "--max-model-len", "256", "--max-num-seqs", "4"]  # fmt: skip
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": "127.0.0.1",
           "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # fmt: skip  # the worker in the engine process: ready sooner
    return argv, env, "tiny", models / "lora-r8"


def _last_line(argv: list[str]) -> str:
    print(f"demo: {' '.join(argv)} (cached after the first time)")
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


def traffic(engine: str, model: str, stop: threading.Event) -> None:
    """Completions against the engine (not through the runtime: no inference traffic goes through it)."""
    while not stop.is_set():
        try:
            call("POST", f"{engine}/v1/completions", {"model": model, "prompt": "The sidecar", "max_tokens": 32}, 60)
        except OSError:
            pass  # the engine is going away at the end of the demo
        stop.wait(0.2)


def side_by_side(runtime: str) -> None:
    """The engine's families and the aibrix: families the runtime derived from them, from one scrape."""
    _, text = call("GET", f"{runtime}/metrics")
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)", line)
        if match and not line.startswith("#"):
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(3))
    print(f"\n$ curl {runtime}/metrics   # one scrape: the engine's families are kept, the standard ones added")
    print(f"{'engine family':42} {'value':>10}   {'aibrix: family':44} {'value':>10}")
    for engine_name, ours in PAIRS:
        left = f"{values[engine_name]:10.4g}" if engine_name in values else "         -"
        right = f"{values[ours]:10.4g}" if ours in values else "         -"
        print(f"{engine_name:42} {left}   {ours:44} {right}")
    print(f"{'':55}   {'aibrix:engine_up':44} {values.get('aibrix:engine_up', 0):10.4g}")


def walk_through(runtime: str, adapter: Path, loaded: Callable[[], None]) -> None:
    show("GET", f"{runtime}/ready")
    show("POST", f"{runtime}/v1/lora_adapter/load", {"lora_name": "demo-lora", "lora_path": str(adapter)})
    loaded()
    show("GET", f"{runtime}/v1/lora_adapter")
    show("GET", f"{runtime}/v1/models")
    side_by_side(runtime)


def next_steps(runtime: str, engine: str, model: str) -> None:
    print(f"""
Both keep running; Ctrl-C stops them. Try:
  curl {runtime}/metrics | grep -E '^(aibrix|vllm):' | head -40
  curl {runtime}/v1/lora_adapter
  curl -X POST {runtime}/v1/lora_adapter/unload -d '{{"lora_name": "demo-lora"}}'
  curl -X POST {engine}/v1/completions -H 'Content-Type: application/json' \\
       -d '{{"model": "demo-lora", "prompt": "Hello", "max_tokens": 8}}'
  curl {runtime}/ready""")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/demo.sh", description=__doc__)
    parser.add_argument("--once", action="store_true", help="walk through once and stop (what the tests run)")
    parser.add_argument("--real", action="store_true", help="real vLLM (CPU build) instead of the simulator")
    args = parser.parse_args()
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (a background job)
        signal.signal(sig, _interrupt)
    engine_url, runtime_url = f"http://127.0.0.1:{ENGINE_PORT}", f"http://127.0.0.1:{RUNTIME_PORT}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        argv, env, model, adapter = engine_command(args.real, work)
        logs = open(work / "logs.txt", "wb")  # noqa: SIM115 - closed with the folder
        procs = [start(argv, env, logs)]
        stop = threading.Event()
        try:
            wait_for(f"{engine_url}/health", procs[0], 240 if args.real else 20)
            print(f"engine: {'vLLM (CPU)' if args.real else 'simulator as vLLM'} on {engine_url}")

            def send_traffic() -> None:
                """Once the adapter is loaded, one completion through it first: vLLM 0.32's CPU build with
                --enable-lora loses its engine core to a base-model request served before any adapter request
                (seen on an AVX-512 Xeon, docs/simulator.md)."""
                call("POST", f"{engine_url}/v1/completions", {"model": "demo-lora", "prompt": "Hi", "max_tokens": 2})
                for _ in range(4):  # a few at once, so some are running whenever the runtime scrapes
                    threading.Thread(target=traffic, args=(engine_url, model, stop), daemon=True).start()
                time.sleep(2)  # a few requests, so the counters and histograms have moved

            runtime_env = {"INFERENCE_ENGINE": "vllm", "INFERENCE_ENGINE_ENDPOINT": engine_url,
                           "AIBRIX_ADAPTER_DIR": str(work / "adapters")}  # fmt: skip
            runtime_argv = [str(BIN / "aibrix_runtime"), "--host", "127.0.0.1", "--port", str(RUNTIME_PORT)]
            procs.append(start(runtime_argv, runtime_env, logs))
            wait_for(f"{runtime_url}/healthz", procs[1], 20)
            print(f"aibrix_runtime on {runtime_url}; traffic to the engine starts once the adapter is loaded")
            walk_through(runtime_url, adapter, send_traffic)
            if args.once:
                show("POST", f"{runtime_url}/v1/lora_adapter/unload", {"lora_name": "demo-lora"})
            else:
                next_steps(runtime_url, engine_url, model)
                while True:
                    time.sleep(3600)  # until Ctrl-C (or SIGTERM): both raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
                signal.signal(sig, signal.SIG_IGN)
            stop.set()
            gone = procs[0].poll()
            for proc in reversed(procs):
                stop_group(proc)
            if gone is not None:  # it died under the demo: say why, from its own words
                print(f"\ndemo: the engine exited with code {gone}; the end of the log:\n{tail(work / 'logs.txt')}")
            print("\ndemo: runtime and engine stopped")


if __name__ == "__main__":
    main()
