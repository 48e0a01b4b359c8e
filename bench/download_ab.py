"""Our downloader against itself: two source trees (say, main before and after a change), alternating, on the same
S3 data (Ceph radosgw on this machine; multipart and single-part uploads). A regression check, not a comparison
with other tools (bench/download_bench.py does that).

    git worktree add /tmp/before <commit>
    python bench/download_ab.py --tree before=/tmp/before/src --tree after=src --rounds 4
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from download_bench import make_model, multipart_upload, timed  # noqa: E402
from tests.helpers.services import RadosGateway  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a src/ directory")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--shard-mb", type=int, default=256)
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree)
    work = Path(tempfile.mkdtemp(prefix="download-ab-"))
    rgw = RadosGateway(work / "ceph")
    try:
        client = rgw.client()
        data = make_model(work / "model", args.shard_mb << 20)
        for bucket in ("multipart", "single"):
            client.create_bucket(Bucket=bucket)
            for name, body in data.items():
                if bucket == "multipart":
                    multipart_upload(client, bucket, f"m/{name}", body)
                else:
                    client.put_object(Bucket=bucket, Key=f"m/{name}", Body=body)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, src in trees.items():
                for bucket in ("multipart", "single"):
                    shutil.rmtree(work / "out", ignore_errors=True)
                    cmd = [sys.executable, "-m", "aibrix.downloader", "--quiet", "--model-uri", f"s3://{bucket}/m/",
                           "--local-dir", str(work / "out")]  # fmt: skip
                    env = {**rgw.env(), "PYTHONPATH": str(Path(src).resolve()), "DOWNLOADER_NUM_THREADS": "16"}
                    times.setdefault((bucket, name), []).append(timed(cmd, env))
        print("| S3 layout | " + " | ".join(f"{name} (median, s)" for name in trees) + " |")
        print("|---|" + "---|" * len(trees))
        for bucket in ("multipart", "single"):
            cells = [f"{statistics.median(times[(bucket, n)]):.2f} ({min(times[(bucket, n)]):.2f}–"
                     f"{max(times[(bucket, n)]):.2f})" for n in trees]  # fmt: skip
            print(f"| {bucket} | " + " | ".join(cells) + " |")
    finally:
        rgw.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
