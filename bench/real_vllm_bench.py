"""The runtime in front of real vLLM (CPU build, tiny model): adapter-load overhead, /metrics overhead and
self-healing time, ours and upstream aibrix==0.8.0 side by side in one run.

    AIBRIX_VLLM_PYTHON=$(scripts/install_vllm.sh | tail -1) \\
    AIBRIX_TINY_MODELS=$(scripts/make_tiny_model.sh "$AIBRIX_VLLM_PYTHON" | tail -1) \\
    .venv/bin/python bench/real_vllm_bench.py --upstream "$(bench/upstream_venv.sh)" [--rounds 200] [--restarts 3]

Targets (issue 10): load p50 overhead over a direct call <= max(1 ms, 5 %); /metrics overhead over a direct scrape
<= 1 ms; adapters back in vLLM's /v1/models <= 1 s (median) after vLLM answers /health. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime_bench import start, stop  # noqa: E402
from tests.helpers.real_vllm import RealVLLM, tiny_models  # noqa: E402

OURS = str(Path(sys.executable).parent / "aibrix_runtime")


def timed(client: httpx.Client, method: str, url: str, **kwargs: object) -> float:
    began = time.perf_counter()
    response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - began
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
    return elapsed


def load_rounds(client: httpx.Client, targets: dict[str, tuple[str, str]], adapter: str, rounds: int) -> dict:
    """Load and unload through each target in turn, ``rounds`` times; the load latencies per target."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    for i in range(rounds):
        for name, (load_url, unload_url) in targets.items():
            lora = f"bench-{i}"
            times[name].append(timed(client, "POST", load_url, json={"lora_name": lora, "lora_path": adapter}))
            timed(client, "POST", unload_url, json={"lora_name": lora})
    return times


def scrape_rounds(client: httpx.Client, urls: dict[str, str], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(rounds):
        for name, url in urls.items():
            times[name].append(timed(client, "GET", url))
    return times


def self_healing(engine: RealVLLM, runtime_url: str, adapter: str, count: int, restarts: int) -> list[float]:
    """Seconds from vLLM's first healthy /health after a SIGKILL and restart until all adapters are back."""
    names = {f"heal-{i}" for i in range(count)}
    with httpx.Client(timeout=60) as client:
        for name in names:
            timed(client, "POST", runtime_url + "/v1/lora_adapter/load", json={"lora_name": name, "lora_path": adapter})
    results = []
    for _ in range(restarts):
        engine.kill()
        engine.start()
        healthy = time.monotonic()
        while not names <= engine.adapters():
            if time.monotonic() - healthy > 30:
                raise RuntimeError("adapters did not come back within 30 s")
            time.sleep(0.01)
        results.append(time.monotonic() - healthy)
    return results


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", help="aibrix_runtime of aibrix==0.8.0 (its own venv)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    adapter = str(tiny_models() / "lora-r8")
    os.environ["AIBRIX_ADAPTER_DIR"] = tempfile.mkdtemp(prefix="bench-adapters-")
    engine = RealVLLM().start()
    print(f"real vLLM healthy after {engine.started_seconds:.1f} s")
    runtimes = {"ours": OURS, **({"upstream 0.8.0": args.upstream} if args.upstream else {})}
    procs, urls = {}, {}
    try:
        for name, binary in runtimes.items():
            procs[name], urls[name], _ = start(binary, engine.url)
        # Upstream answers /metrics with a 307 to /metrics/; Prometheus follows it, and so does this client.
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            targets = {"direct": (engine.url + "/v1/load_lora_adapter", engine.url + "/v1/unload_lora_adapter")}
            targets |= {n: (u + "/v1/lora_adapter/load", u + "/v1/lora_adapter/unload") for n, u in urls.items()}
            loads = load_rounds(client, targets, adapter, args.rounds)
            scrapes = scrape_rounds(client, {"direct": engine.url + "/metrics"} |
                                    {n: u + "/metrics" for n, u in urls.items()}, args.rounds)  # fmt: skip
        for proc in procs.values():
            stop(proc)
        procs.clear()
        with tempfile.TemporaryDirectory() as adapters:
            os.environ["AIBRIX_ADAPTER_DIR"] = adapters
            proc, url, _ = start(OURS, engine.url)
            procs["ours"] = proc
            healing = self_healing(engine, url, adapter, 10, args.restarts)
    finally:
        for proc in procs.values():
            stop(proc)
        engine.stop()

    direct_load, direct_scrape = p50_ms(loads["direct"]), p50_ms(scrapes["direct"])
    print(f"\n{args.rounds} rounds each, interleaved; real vLLM 0.32.0 CPU, tiny Qwen2 model, rank-8 adapter\n")
    print("| path | load p50 | overhead | /metrics p50 | overhead |")
    print("|---|---|---|---|---|")
    for name in loads:
        load, scrape = p50_ms(loads[name]), p50_ms(scrapes[name])
        extra = "" if name == "direct" else f"+{load - direct_load:.2f} ms ({(load / direct_load - 1) * 100:.1f} %)"
        scrape_extra = "" if name == "direct" else f"+{scrape - direct_scrape:.2f} ms"
        print(f"| {name} | {load:.2f} ms | {extra} | {scrape:.2f} ms | {scrape_extra} |")
    each = ", ".join(f"{s:.2f}" for s in healing)
    print(f"\nself-healing, 10 adapters, {args.restarts} SIGKILL+restarts: back in vLLM's /v1/models {each} s "
          f"after /health (median {statistics.median(healing):.2f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
