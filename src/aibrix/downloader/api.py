"""The library entry point shared by the CLI and the runtime: one download engine, no second implementation."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aibrix.downloader.config import is_true, settings_env
from aibrix.downloader.progress import Progress, Result
from aibrix.names import model_name_problem
from aibrix.storage.base import BadSetting, BadURI, TooLarge, parse_suffixes
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy
from aibrix.storage.uri import check_uri, open_source, scheme_of

DEFAULT_LOCAL_DIR = "/tmp/aibrix/models/"
DEFAULT_THREADS = 16  # upstream's 32 buys nothing on 2-8 cores (docs/benchmarks.md); set DOWNLOADER_NUM_THREADS
MAX_THREADS = 64  # one thread and connection per part: a caller's num_threads must not become thousands


def fetch_model(
    model_uri: str,
    local_dir: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    extra_config: Mapping[str, Any] | None = None,
    threads: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    policy: OutboundPolicy = DEFAULT_POLICY,
) -> Result:
    """Download ``model_uri`` into ``<local_dir>/<model_name>/``; re-running skips what is already complete.
    ``policy`` says what may be reached (and how much fetched); every listing, redirect and part passes it.
    ``extra_config`` takes upstream's download_extra_config keys (ak, sk, endpoint, region, hf_token, ...)."""
    policy.check_uri(model_uri)
    env = settings_env(os.environ if env is None else env, extra_config, scheme=scheme_of(model_uri))
    threads = thread_count(env, threads)  # before anything is listed
    source = open_source(model_uri, env, policy=policy)
    name = model_name or check_uri(model_uri)
    problem = model_name_problem(name)
    if problem:
        raise BadURI(problem)
    suffixes = parse_suffixes(env.get("DOWNLOADER_ALLOW_FILE_SUFFIX"))
    files = source.list_files(suffixes)
    size = sum(f.size or 0 for f in files)
    if policy.max_bytes is not None and size > policy.max_bytes:
        raise TooLarge(f"{source.describe()}: {size} bytes is over the limit of {policy.max_bytes}")
    if not files:
        raise BadURI(f"{source.describe()}: no files to download" + (" after the suffix filter" if suffixes else ""))
    from aibrix.downloader.transfer import Downloader  # the runtime imports this module at start; fetches are rare

    downloader = Downloader(
        threads=threads,
        part_size=_int(env, "DOWNLOADER_PART_CHUNKSIZE", 64 << 20),
        timeout=float(env.get("DOWNLOADER_TIMEOUT") or 60),
        fsync=is_true(env.get("DOWNLOADER_FSYNC")),
        policy=policy,
        force=is_true(env.get("DOWNLOADER_FORCE_DOWNLOAD")) or not is_true(env.get("DOWNLOADER_CHECK_FILE_EXIST", "1")),
        part_threshold=_int(env, "DOWNLOADER_PART_THRESHOLD", 0) or None,
    )
    root = Path(local_dir or env.get("DOWNLOADER_LOCAL_DIR") or DEFAULT_LOCAL_DIR)
    return downloader.download(files, root / name, on_progress=on_progress)


def thread_count(env: Mapping[str, str], threads: int | None = None) -> int:
    """``threads``, else DOWNLOADER_NUM_THREADS, else the default; refused (400) above MAX_THREADS."""
    count = threads or _int(env, "DOWNLOADER_NUM_THREADS", DEFAULT_THREADS)
    if count > MAX_THREADS:
        raise BadSetting(f"num_threads (DOWNLOADER_NUM_THREADS) is {count}; at most {MAX_THREADS}")
    return count


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadSetting(f"{name}={value!r} is not a whole number") from None
    if number < 1:
        raise BadSetting(f"{name}={value!r} must be at least 1")
    return number
