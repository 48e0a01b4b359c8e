"""A 100 MB adapter from S3 (Ceph radosgw here): download + load through the runtime vs the downloader alone.

    python bench/adapter_bench.py [--rounds 5] [--mb 100]

Runtime: POST /v1/lora_adapter/load with artifact_url + credentials, timed from request to reply (download into the
adapter directory, then the engine simulator's load), then unload (which removes the files). Downloader alone: the
same artifact with aibrix.downloader.api.fetch_model in this process (no interpreter start-up), and the CLI as a
user runs it. Each round writes into fresh directories after `sync`. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.helpers.procs import start_runtime, start_sim  # noqa: E402
from tests.helpers.services import RadosGateway  # noqa: E402

from aibrix.downloader.api import fetch_model  # noqa: E402


def restart_recovery(sim, runtime, work: Path) -> float:
    """Load 10 adapters, restart the engine on the same port, time until the runtime has re-loaded all of them."""
    folder = work / "small-lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8}')
    names = [f"lora-{i}" for i in range(10)]
    for name in names:
        body = {"lora_name": name, "lora_path": str(folder)}
        assert httpx.post(f"{runtime.url}/v1/lora_adapter/load", json=body).status_code == 200
    sim.stop()
    restarted = start_sim("vllm", port=sim.port)  # returns once the engine answers /health
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < 30:
            cards = httpx.get(f"{restarted.url}/v1/models").json()["data"]
            if set(names) <= {card["id"] for card in cards}:
                return time.perf_counter() - began
            time.sleep(0.05)
        raise RuntimeError("adapters did not come back within 30 s")
    finally:
        restarted.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aibrix-adapter-bench-"))
    gateway = RadosGateway(work / "ceph")
    sim = runtime = None
    try:
        client = gateway.client()
        client.create_bucket(Bucket="loras")
        files = {"adapter_model.safetensors": os.urandom(args.mb << 20), "adapter_config.json": b'{"r": 16}'}
        for name, body in files.items():
            client.put_object(Bucket="loras", Key=f"adapters/big-lora/{name}", Body=body)
        uri = "s3://loras/adapters/big-lora/"
        env = {**os.environ, **gateway.env()}
        sim = start_sim("vllm")
        runtime = start_runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(work / "adapters"),
                                                      "AWS_ENDPOINT_URL": gateway.url})  # fmt: skip
        credentials = {"aws_access_key_id": gateway.ACCESS_KEY, "aws_secret_access_key": gateway.SECRET_KEY,
                       "aws_region": "us-east-1"}  # fmt: skip
        through, alone, cli = [], [], []
        for r in range(args.rounds):
            os.sync()
            began = time.perf_counter()
            result = fetch_model(uri, work / f"alone-{r}", "big-lora", env=env)
            alone.append(time.perf_counter() - began)
            assert result.downloaded_bytes >= args.mb << 20
            os.sync()
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "aibrix.downloader", "--quiet", "--model-uri", uri, "--local-dir",
                            str(work / f"cli-{r}")], env=env, check=True, capture_output=True)  # fmt: skip
            cli.append(time.perf_counter() - began)
            os.sync()
            body = {"lora_name": "big-lora", "artifact_url": uri, "credentials": credentials}
            began = time.perf_counter()
            response = httpx.post(f"{runtime.url}/v1/lora_adapter/load", json=body, timeout=120)
            through.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
            httpx.post(f"{runtime.url}/v1/lora_adapter/unload", json={"lora_name": "big-lora"}, timeout=60)
            for folder in (work / f"alone-{r}", work / f"cli-{r}"):
                shutil.rmtree(folder)
        mb = sum(len(b) for b in files.values()) / 1e6
        t_through, t_alone, t_cli = (statistics.median(x) for x in (through, alone, cli))
        print(f"{mb:.0f} MB adapter from radosgw, median of {args.rounds}\n")
        print("| path | time (s) | vs downloader alone |")
        print("|---|---|---|")
        print(f"| downloader alone (in process) | {t_alone:.3f} | 1.00x |")
        print(f"| downloader CLI (process start included) | {t_cli:.3f} | {t_cli / t_alone:.2f}x |")
        print(f"| runtime: download + engine load, request to reply | {t_through:.3f} | {t_through / t_alone:.2f}x |")
        print(
            f"\nself-healing: {restart_recovery(sim, runtime, work):.2f} s from the engine answering again to all 10 "
            "adapters loaded in it again (reconcile interval 1 s)"
        )
    finally:
        for proc in (runtime, sim):
            if proc is not None:
                proc.stop()
        gateway.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
