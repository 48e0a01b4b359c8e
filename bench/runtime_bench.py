"""Runtime start-up, idle memory and adapter-load overhead: ours vs upstream aibrix, in one run.

    python bench/runtime_bench.py --upstream /path/to/venv-with-aibrix-0.8.0/bin/aibrix_runtime

Both runtimes front the same engine simulator (vLLM flavour). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.procs import free_port, start_sim  # noqa: E402

OURS = str(Path(sys.executable).parent / "aibrix_runtime")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start(binary: str, engine_url: str) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start a runtime; return it, its URL and the seconds until /ready first answered 200."""
    port = free_port()
    env = {
        **os.environ,
        "INFERENCE_ENGINE": "vllm",
        "INFERENCE_ENGINE_ENDPOINT": engine_url,
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(),
    }
    began = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = began + 30
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - began
        except httpx.TransportError:
            pass
        time.sleep(0.005)
    proc.kill()
    raise RuntimeError(f"{binary} never became ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def load_latencies(client: httpx.Client, load_url: str, unload_url: str, adapter: str, rounds: int) -> list[float]:
    times = []
    for i in range(rounds):
        name = f"bench-{i}"
        began = time.perf_counter()
        response = client.post(load_url, json={"lora_name": name, "lora_path": adapter})
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text
        assert client.post(unload_url, json={"lora_name": name}).status_code == 200
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", help="aibrix_runtime of aibrix==0.8.0 (its own venv)")
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    runtimes = {"ours": OURS}
    if args.upstream:
        runtimes["upstream 0.8.0"] = args.upstream

    sim = start_sim("vllm", "--ttft-ms", "1")
    adapter = tempfile.mkdtemp()
    Path(adapter, "adapter_config.json").write_text('{"r": 8}')  # vLLM (and the simulator) want one
    results: dict[str, dict[str, float]] = {name: {} for name in runtimes}
    try:
        for name, binary in runtimes.items():
            startups, rss = [], []
            for _ in range(args.starts):
                proc, url, took = start(binary, sim.url)
                startups.append(took)
                with httpx.Client() as client:
                    for _ in range(20):
                        client.get(f"{url}/ready")
                        client.get(f"{url}/v1/models")
                time.sleep(1.0)
                rss.append(rss_kb(proc.pid))
                stop(proc)
            results[name]["startup_s"] = statistics.median(startups)
            results[name]["rss_mb"] = statistics.median(rss) / 1024

        procs = {name: start(binary, sim.url)[:2] for name, binary in runtimes.items()}
        with httpx.Client(timeout=30) as client:
            targets = {"direct": (f"{sim.url}/v1/load_lora_adapter", f"{sim.url}/v1/unload_lora_adapter")}
            targets |= {
                name: (f"{url}/v1/lora_adapter/load", f"{url}/v1/lora_adapter/unload")
                for name, (_, url) in procs.items()
            }
            samples: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(5):  # interleave so drift hits every target alike
                for name, (load_url, unload_url) in targets.items():
                    samples[name] += load_latencies(client, load_url, unload_url, adapter, args.rounds // 5)
        for proc, _ in procs.values():
            stop(proc)
        direct = statistics.median(samples["direct"])
        for name in runtimes:
            results[name]["load_p50_ms"] = statistics.median(samples[name]) * 1000
            results[name]["load_overhead_ms"] = (statistics.median(samples[name]) - direct) * 1000
    finally:
        sim.stop()

    print(f"direct engine load p50: {direct * 1000:.2f} ms ({args.rounds} loads each)\n")
    header = f"| runtime | start-up to /ready 200 (s, median of {args.starts}) | idle RSS (MB) | load p50 (ms) |"
    print(header + " overhead over direct (ms) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        cells = [
            f"{r['startup_s']:.3f}",
            f"{r['rss_mb']:.1f}",
            f"{r['load_p50_ms']:.2f}",
            f"{r['load_overhead_ms']:.2f}",
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if len(results) == 2:
        ours, up = results["ours"], results["upstream 0.8.0"]
        print(
            f"\nratios upstream/ours: start-up {up['startup_s'] / ours['startup_s']:.2f}x, "
            f"RSS {up['rss_mb'] / ours['rss_mb']:.2f}x, "
            f"load overhead {up['load_overhead_ms'] / max(ours['load_overhead_ms'], 1e-3):.2f}x"
        )


if __name__ == "__main__":
    main()
