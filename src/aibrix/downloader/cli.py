"""``python -m aibrix.downloader`` / ``aibrix_download``: fetch a model, print where it is."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from aibrix.downloader.api import fetch_model
from aibrix.downloader.config import ignored_settings, parse_extra_config, settings_env
from aibrix.downloader.progress import Progress
from aibrix.errors import AibrixError
from aibrix.storage.uri import scheme_of


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m aibrix.downloader",
        description="Download a model from HuggingFace, S3, TOS, GCS, an http(s) URL or a local path.",
    )
    parser.add_argument("--model-uri", required=True, help="s3://, tos://, gs://, https://, a path, or org/name")
    parser.add_argument("--local-dir", help="base directory (env DOWNLOADER_LOCAL_DIR, default /tmp/aibrix/models/)")
    parser.add_argument("--model-name", help="sub-directory for the files: name or org/name (default: from the URI)")
    parser.add_argument("--threads", type=int, help="connections in all (env DOWNLOADER_NUM_THREADS, default 16)")
    parser.add_argument(
        "--download-extra-config",
        help="upstream's JSON object: ak, sk, endpoint, region, hf_endpoint, hf_token, hf_revision, num_threads, "
        "part_threshold, part_chunksize, allow_file_suffix, force_download (max_io_queue, io_chunksize: accepted, "
        "said to be ignored)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of the path")
    parser.add_argument("--enable-progress-bar", action="store_true", help="accepted for upstream compatibility")
    args = parser.parse_args(argv)

    show = not args.quiet and not args.json and sys.stderr.isatty()
    quiet_warnings = (os.environ.get("LOG_LEVEL") or "").upper() in ("ERROR", "CRITICAL")
    try:
        extra = parse_extra_config(args.download_extra_config, "--download-extra-config")
        env = settings_env(os.environ, extra, scheme=scheme_of(args.model_uri))  # what the download will read
        for line in [] if quiet_warnings else ignored_settings(env):
            print(f"aibrix_download: {line}", file=sys.stderr)
        result = fetch_model(
            args.model_uri,
            args.local_dir,
            args.model_name,
            env=env,
            threads=args.threads,
            on_progress=progress_bar if show else None,
        )
    except AibrixError as exc:
        _end_bar(show)
        print(f"aibrix_download: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        _end_bar(show)
        print("aibrix_download: interrupted; run the same command again to resume", file=sys.stderr)
        raise SystemExit(130) from None
    _end_bar(show)
    if args.json:
        summary = {
            "path": str(result.path),
            "files": result.files,
            "downloaded_files": result.downloaded_files,
            "skipped_files": result.skipped_files,
            "downloaded_bytes": result.downloaded_bytes,
            "seconds": round(result.seconds, 3),
        }
        print(json.dumps(summary))
    else:
        print(result.path)


def progress_bar(progress: Progress) -> None:
    elapsed = max(1e-6, time.monotonic() - progress.started)
    rate = progress.done / elapsed
    share = progress.done / progress.total if progress.total else 1.0
    eta = (progress.total - progress.done) / rate if rate > 0 else 0
    line = (
        f"\r{progress.done / 1e6:9.1f} MB / {progress.total / 1e6:.1f} MB {share:6.1%}"
        f"  {rate / 1e6:7.1f} MB/s  ETA {int(eta) // 60}:{int(eta) % 60:02d} "
    )
    sys.stderr.write(line)
    sys.stderr.flush()


def _end_bar(shown: bool) -> None:
    if shown:
        sys.stderr.write("\n")


if __name__ == "__main__":
    main()
