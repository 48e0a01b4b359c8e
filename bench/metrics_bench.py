"""GET /metrics through the runtime vs straight from the engine, ours vs upstream aibrix, in one run.

    python bench/metrics_bench.py --upstream "$(bench/upstream_venv.sh)"

Payloads: a live vLLM V1 capture from the simulator after some traffic (~42 KB), and the same made data-parallel
over 8 engines (every engine-labelled series repeated for engine="0".."7", ~300 KB). The simulator replays each
payload at /metrics (--metrics-payload), so every target scrapes identical bytes. Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runtime_bench import OURS, start, stop  # noqa: E402
from tests.helpers.procs import start_sim  # noqa: E402

from aibrix.metrics import Standardizer  # noqa: E402


def capture_payload() -> str:
    sim = start_sim("vllm")
    try:
        with httpx.Client() as client:
            for _ in range(5):
                client.post(f"{sim.url}/v1/completions", json={"prompt": "x" * 300, "max_tokens": 20})
                chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
                client.post(f"{sim.url}/v1/chat/completions", json=chat)
                client.get(f"{sim.url}/v1/models")
                client.get(f"{sim.url}/metrics")
            return client.get(f"{sim.url}/metrics").text
    finally:
        sim.stop()


def data_parallel(payload: str, engines: int) -> str:
    """Repeat every engine="0" sample line for engine="0".."engines-1", as vLLM's DP deployments expose."""
    out = []
    for line in payload.split("\n"):
        if 'engine="0"' in line and not line.startswith("#"):
            out.extend(re.sub(r'engine="0"', f'engine="{i}"', line) for i in range(engines))
        else:
            out.append(line)
    return "\n".join(out)


def latencies(client: httpx.Client, url: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, response.status_code
    return times


def transform_mb_per_s(payload: str, seconds: float = 2.0) -> float:
    standardizer = Standardizer("vllm")
    rounds, began, now = 0, time.perf_counter(), 0.0
    while time.perf_counter() - began < seconds:
        now += 15.0
        standardizer.render(payload, now=now)
        rounds += 1
    return rounds * len(payload.encode()) / (time.perf_counter() - began) / 1e6


def _scrapers(url: str, concurrency: int, seconds: float) -> None:
    async def one(client: httpx.AsyncClient, deadline: float) -> None:
        while time.monotonic() < deadline:
            await client.get(url)

    async def run() -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(one(client, deadline) for _ in range(concurrency)))

    asyncio.run(run())


def adapter_latency_under_scrapes(runtime_url: str, metrics_url: str, adapter: str, rounds: int) -> float:
    scrapers = multiprocessing.Process(target=_scrapers, args=(metrics_url, 20, 60.0), daemon=True)
    scrapers.start()
    time.sleep(1.0)
    times = []
    try:
        with httpx.Client(timeout=30) as client:
            for i in range(rounds):
                began = time.perf_counter()
                response = client.post(
                    f"{runtime_url}/v1/lora_adapter/load", json={"lora_name": f"c-{i}", "lora_path": adapter}
                )
                times.append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
                client.post(f"{runtime_url}/v1/lora_adapter/unload", json={"lora_name": f"c-{i}"})
    finally:
        scrapers.terminate()
        scrapers.join()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", help="aibrix_runtime of aibrix==0.8.0 (its own venv)")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    single = capture_payload()
    payloads = {"vLLM V1, 1 engine": single, "vLLM V1, 8 DP engines": data_parallel(single, 8)}
    adapter = tempfile.mkdtemp()
    Path(adapter, "adapter_config.json").write_text('{"r": 8}')  # vLLM (and the simulator) want one
    runtimes = {"ours": (OURS, "/metrics")}
    if args.upstream:
        runtimes["upstream 0.8.0"] = (args.upstream, "/metrics/")  # upstream redirects /metrics to /metrics/

    print("| payload | size | direct engine p50 (ms) | " + " | ".join(f"{n} p50 (ms)" for n in runtimes) + " | "
          + " | ".join(f"{n} overhead (ms)" for n in runtimes) + " |")  # fmt: skip
    print("|---" * (3 + 2 * len(runtimes)) + "|")
    for label, payload in payloads.items():
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(payload)
        sim = start_sim("vllm", "--metrics-payload", f.name)
        procs = {name: start(binary, sim.url)[:2] for name, (binary, _) in runtimes.items()}
        try:
            with httpx.Client(timeout=30) as client:
                targets = {"direct": f"{sim.url}/metrics"}
                targets |= {name: url + runtimes[name][1] for name, (_, url) in procs.items()}
                for url in targets.values():
                    latencies(client, url, 20)  # warm-up (connections, rate history)
                samples: dict[str, list[float]] = {name: [] for name in targets}
                for _ in range(5):
                    for name, url in targets.items():
                        samples[name] += latencies(client, url, args.rounds // 5)
            p50 = {name: statistics.median(times) * 1000 for name, times in samples.items()}
            cells = [f"{p50[name]:.2f}" for name in runtimes] + [
                f"{p50[name] - p50['direct']:.2f}" for name in runtimes
            ]
            print(f"| {label} | {len(payload.encode()) // 1024} KB | {p50['direct']:.2f} | " + " | ".join(cells) + " |")
        finally:
            for proc, _ in procs.values():
                stop(proc)
            sim.stop()
            os.unlink(f.name)

    print()
    for label, payload in payloads.items():
        print(f"transformation alone, {label} payload, one core: {transform_mb_per_s(payload):.0f} MB/s")
    print()

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(payloads["vLLM V1, 8 DP engines"])
    sim = start_sim("vllm", "--metrics-payload", f.name)
    try:
        print("| runtime | adapter load p50, idle (ms) | adapter load p50, 20 concurrent scrapers of 8 engines (ms) |")
        print("|---|---|---|")
        for name, (binary, path) in runtimes.items():
            proc, url, _ = start(binary, sim.url)
            try:
                with httpx.Client() as client:
                    idle = []
                    for i in range(50):
                        began = time.perf_counter()
                        client.post(f"{url}/v1/lora_adapter/load", json={"lora_name": f"i-{i}", "lora_path": adapter})
                        idle.append(time.perf_counter() - began)
                        client.post(f"{url}/v1/lora_adapter/unload", json={"lora_name": f"i-{i}"})
                busy = adapter_latency_under_scrapes(url, url + path, adapter, 100)
                print(f"| {name} | {statistics.median(idle) * 1000:.2f} | {busy:.2f} |")
            finally:
                stop(proc)
    finally:
        sim.stop()
        os.unlink(f.name)


if __name__ == "__main__":
    main()
