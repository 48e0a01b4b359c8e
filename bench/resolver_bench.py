"""What an adapter's first request costs when vLLM resolves it through the runtime (issue 25): real vLLM (CPU build,
tiny model) with our resolver plugin, the runtime fetching from Ceph's S3, against the same completion through an
adapter loaded beforehand.

    AIBRIX_VLLM_PYTHON=$(scripts/install_vllm.sh | tail -1) \\
    AIBRIX_TINY_MODELS=$(scripts/make_tiny_model.sh "$AIBRIX_VLLM_PYTHON" | tail -1) \\
    scripts/in_netns.sh .venv/bin/python bench/resolver_bench.py [--adapters 10]

For each of N new names (one after another): the first completion's latency, split into the runtime's resolve
(of it, the S3 download) and the rest (vLLM loading the folder, then the completion itself); then the same
completion once the adapter is in, and through an adapter loaded beforehand with the runtime's load API.
Prints a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.procs import free_port, start_runtime  # noqa: E402
from tests.helpers.real_vllm import RealVLLM, install_resolver_plugin, tiny_models  # noqa: E402
from tests.helpers.services import RadosGateway  # noqa: E402

BUCKET = "bench-loras"


def metric_sum(runtime_url: str, name: str) -> float:
    for line in httpx.get(runtime_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def timed_completion(engine: RealVLLM, model: str) -> float:
    began = time.perf_counter()
    response = engine.complete(model, max_tokens=1)
    elapsed = time.perf_counter() - began
    assert response.status_code == 200, response.text
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapters", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="resolver-bench-"))
    rgw = RadosGateway(work / "ceph")
    client = rgw.client()
    client.create_bucket(Bucket=BUCKET)
    folder = tiny_models() / "lora-r8"
    size = sum(p.stat().st_size for p in folder.iterdir())
    for i in range(args.adapters):
        for path in folder.iterdir():
            client.put_object(Bucket=BUCKET, Key=f"adapters/cold-{i}/{path.name}", Body=path.read_bytes())
    port = free_port()
    plugin = install_resolver_plugin(work / "plugin")
    engine_env = {
        "PYTHONPATH": str(plugin),
        "AIBRIX_LORA_RESOLVER": "1",
        "AIBRIX_LORA_RESOLVER_URL": f"http://127.0.0.1:{port}",
    }
    engine = RealVLLM(env=engine_env).start()
    env = {
        **rgw.env(),
        "AIBRIX_ADAPTER_DIR": str(work / "adapters"),
        "AIBRIX_LORA_SOURCE": f"s3://{BUCKET}/adapters/{{name}}/",
    }
    runtime = start_runtime("vllm", engine.url, env=env, port=port, host="127.0.0.1")
    rows: dict[str, list[float]] = {k: [] for k in ("first", "resolve", "download", "rest", "warm", "preloaded")}
    try:
        load = {"lora_name": "preloaded", "lora_path": str(folder)}
        assert httpx.post(runtime.url + "/v1/lora_adapter/load", json=load, timeout=60).status_code == 200
        timed_completion(engine, "preloaded")
        for i in range(args.adapters):
            name = f"cold-{i}"
            resolve0 = metric_sum(runtime.url, "aibrix:lora_adapter_resolve_seconds_sum")
            download0 = metric_sum(runtime.url, "aibrix:runtime_download_duration_seconds_sum")
            first = timed_completion(engine, name)
            resolve = metric_sum(runtime.url, "aibrix:lora_adapter_resolve_seconds_sum") - resolve0
            rows["first"].append(first)
            rows["resolve"].append(resolve)
            rows["download"].append(metric_sum(runtime.url, "aibrix:runtime_download_duration_seconds_sum") - download0)
            warm = timed_completion(engine, name)
            rows["warm"].append(warm)
            rows["rest"].append(first - resolve - warm)
            rows["preloaded"].append(timed_completion(engine, "preloaded"))
            # vLLM keeps --max-loras adapters active: unload, so every round starts from the same state
            assert (
                httpx.post(runtime.url + "/v1/lora_adapter/unload", json={"lora_name": name}, timeout=60).status_code
                == 200
            )
    finally:
        runtime.stop()
        engine.stop()
        rgw.stop()
    ms = {k: statistics.median(v) * 1000 for k, v in rows.items()}
    files = len(list(folder.iterdir()))
    print(f"{args.adapters} new adapters of {size / 1e6:.2f} MB (rank 8, {files} files), one at a time\n")
    print("| measure (median) | ms |\n|---|---|")
    print(f"| first request through an adapter nobody loaded | {ms['first']:.1f} |")
    print(f"| of it, the runtime's resolve (answering the plugin) | {ms['resolve']:.1f} |")
    print(f"| of that, the S3 download | {ms['download']:.1f} |")
    print(f"| of it, vLLM loading the folder (first − resolve − warm) | {ms['rest']:.1f} |")
    print(f"| the same request once the adapter is in | {ms['warm']:.1f} |")
    print(f"| the same request through an adapter loaded beforehand | {ms['preloaded']:.1f} |")
    print(f"| cold-start cost (first − preloaded) | {ms['first'] - ms['preloaded']:.1f} |")


if __name__ == "__main__":
    main()
