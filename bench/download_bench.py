"""Model download from S3 (Ceph radosgw on this machine) and the HuggingFace protocol: ours vs upstream, in one run.

    python bench/download_bench.py --upstream-python /tmp/aibrix-upstream/bin/python

S3: a model-shaped prefix (3 x 256 MB safetensors + json files), uploaded twice: in parts (as aws s3 cp does; the
ETags are not MD5s) and as single-part objects (ETags are MD5s, which ours verifies). Timed, each into a fresh
directory, alternating, --rounds times: upstream aibrix==0.8.0's downloader, boto3's default download_file per object
(upstream's venv has boto3), and ours; plus one plain GET stream of one 256 MB object (the single-stream read rate)
and a second run of ours over a complete download. HuggingFace: the same layout (--hf-mb per shard) on our
Hub-protocol server, ours vs huggingface_hub.snapshot_download (from upstream's venv). Prints Markdown.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.helpers.hf_server import HubServer, Repo  # noqa: E402
from tests.helpers.services import RadosGateway  # noqa: E402

JSON_FILES = {"config.json": 2_000, "tokenizer.json": 7_000_000, "generation_config.json": 200,
              "model.safetensors.index.json": 30_000}  # fmt: skip

LAST_STDOUT = [""]

BOTO3_DEFAULT = """
import sys, os, boto3
s3 = boto3.client("s3")
bucket, prefix, dest = sys.argv[1:4]
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for obj in page.get("Contents", []):
        target = os.path.join(dest, obj["Key"][len(prefix):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file(bucket, obj["Key"], target)
"""

SNAPSHOT = """
import sys
from huggingface_hub import snapshot_download
snapshot_download(sys.argv[1], local_dir=sys.argv[2])
"""


def make_model(root: Path, shard_bytes: int) -> dict[str, bytes]:
    files = {f"model-0000{i}-of-00003.safetensors": shard_bytes for i in (1, 2, 3)} | JSON_FILES
    data = {}
    for name, size in files.items():
        data[name] = os.urandom(size)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data[name])
    return data


def timed(cmd: list[str], env: dict[str, str]) -> float:
    os.sync()  # earlier runs' dirty pages must not be written back on this run's time
    began = time.perf_counter()
    result = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    took = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {result.stderr[-2000:]}")
    LAST_STDOUT[0] = result.stdout
    return took


def multipart_upload(client, bucket: str, key: str, body: bytes, part: int = 16 << 20) -> None:
    """Upload as aws s3 cp does for large files: in parts, so the ETag is not an MD5 of the object."""
    if len(body) <= part:
        client.put_object(Bucket=bucket, Key=key, Body=body)
        return
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def one(i: int) -> dict:
        chunk = body[i * part : (i + 1) * part]
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=i + 1, Body=chunk)["ETag"]
        return {"PartNumber": i + 1, "ETag": etag}

    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(one, range(-(-len(body) // part))))
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def single_stream_rate(url: str) -> float:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc)
    began = time.perf_counter()
    conn.request("GET", f"{parts.path}?{parts.query}")
    response = conn.getresponse()
    buffer = bytearray(1 << 20)
    total = 0
    while n := response.readinto(buffer):
        total += n
    return total / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream-python", required=True, help="python of a venv with aibrix==0.8.0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard-mb", type=int, default=256)
    parser.add_argument("--hf-mb", type=int, default=128)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aibrix-bench-"))
    ours = [sys.executable, "-m", "aibrix.downloader", "--quiet"]
    upstream = [args.upstream_python, "-m", "aibrix.downloader"]
    common = {"DOWNLOADER_NUM_THREADS": str(args.threads)}
    gateway = RadosGateway(work / "ceph")
    try:
        source = work / "model-src"
        data = make_model(source, args.shard_mb << 20)
        total_mb = sum(len(v) for v in data.values()) / 1e6
        client = gateway.client()
        client.create_bucket(Bucket="bench")
        for name, body in data.items():
            multipart_upload(client, "bench", f"multipart/bench-model/{name}", body)
            client.put_object(Bucket="bench", Key=f"single/bench-model/{name}", Body=body)
        env = {**gateway.env(), **common}
        inner: dict[str, list[float]] = {}
        for layout, note in (("multipart", "multipart uploads, as aws s3 cp makes them: ETags are not MD5s, "
                              "files are checked by size"), ("single", "single-part uploads: ETags are MD5s, and "
                              "ours checks every byte against them (upstream and boto3 check nothing)")):  # fmt: skip
            uri = f"s3://bench/{layout}/bench-model/"
            key = f"{layout}/bench-model/model-00001-of-00003.safetensors"
            url = client.generate_presigned_url("get_object", Params={"Bucket": "bench", "Key": key})
            times: dict[str, list[float]] = {"upstream 0.8.0": [], "boto3 download_file": [], "ours": []}
            rates = []
            for r in range(args.rounds):
                rates.append(single_stream_rate(url))
                for name in times:
                    dest = work / f"out-{layout}-{name.split()[0]}-{r}"
                    if name == "ours":
                        cmd = [*ours, "--json", "--model-uri", uri, "--local-dir", str(dest)]
                        times[name].append(timed(cmd, env))
                        inner.setdefault(layout, []).append(json.loads(LAST_STDOUT[0])["seconds"])
                    elif name.startswith("upstream"):
                        times[name].append(timed([*upstream, "--model-uri", uri, "--local-dir", str(dest)], env))
                    else:
                        prefix = f"{layout}/bench-model/"
                        script = [args.upstream_python, "-c", BOTO3_DEFAULT, "bench", prefix, str(dest)]
                        times[name].append(timed(script, env))
                    if name != "ours" or r < args.rounds - 1:
                        shutil.rmtree(dest)
            check = work / f"out-{layout}-ours-{args.rounds - 1}" / "bench-model"
            for name, body in data.items():
                assert (check / name).read_bytes() == body, name
            again = subprocess.run([*ours, "--json", "--model-uri", uri, "--local-dir", str(check.parent)],
                                   env={**os.environ, **env}, capture_output=True, text=True)  # fmt: skip
            summary = json.loads(again.stdout)
            shutil.rmtree(check.parent)
            rate = statistics.median(rates)
            print(f"S3 (Ceph radosgw, memstore, loopback), {note}: {total_mb:.0f} MB, {len(data)} files, "
                  f"{args.threads} threads, median of {args.rounds}\n")  # fmt: skip
            print("| downloader | time (s) | MB/s | vs upstream |")
            print("|---|---|---|---|")
            up = statistics.median(times["upstream 0.8.0"])
            for name, values in times.items():
                t = statistics.median(values)
                print(f"| {name} | {t:.2f} | {total_mb / t:.0f} | {t / up:.2f}x |")
            print(f"| one plain GET stream (rate only) | | {rate / 1e6:.0f} | |")
            ours_rate = total_mb * 1e6 / statistics.median(times["ours"])
            inside = total_mb * 1e6 / statistics.median(inner[layout])
            print(
                f"\nours / single-stream rate: {ours_rate / rate:.0%} end to end (process start, botocore import, "
                f"listing included); {inside / rate:.0%} for the transfer itself ({inside / 1e6:.0f} MB/s)"
            )
            print(
                f"second run over the complete download: {summary['seconds']:.3f} s in the downloader, "
                f"{summary['downloaded_bytes']} bytes transferred, {summary['skipped_files']} files skipped\n"
            )
    finally:
        gateway.stop()

    hf_root = work / "hf" / "bench-model"
    hf_data = make_model(hf_root, args.hf_mb << 20)
    hf_mb = sum(len(v) for v in hf_data.values()) / 1e6
    with HubServer({"bench/bench-model": Repo(hf_root)}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ENABLE_HF_TRANSFER": "0", **common}
        hf_times: dict[str, list[float]] = {"huggingface_hub.snapshot_download": [], "ours": []}
        for r in range(args.rounds):
            for name in hf_times:
                dest = work / f"hf-out-{r}-{len(name)}"
                if name == "ours":
                    cmd = [*ours, "--model-uri", "bench/bench-model", "--local-dir", str(dest)]
                else:
                    cmd = [args.upstream_python, "-c", SNAPSHOT, "bench/bench-model", str(dest)]
                hf_env = {**env, "HF_HOME": str(work / f"hf-home-{r}")}
                hf_times[name].append(timed(cmd, hf_env))
                shutil.rmtree(dest)
        print(f"HuggingFace protocol (our Hub server, loopback): {hf_mb:.0f} MB, median of {args.rounds}\n")
        print("| downloader | time (s) | MB/s |")
        print("|---|---|---|")
        for name, values in hf_times.items():
            t = statistics.median(values)
            print(f"| {name} | {t:.2f} | {hf_mb / t:.0f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
