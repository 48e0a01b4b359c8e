"""The downloader as a user runs it (a real process) against a real HuggingFace-protocol server, plain HTTP and
local paths: correct bytes, filters, skips, resume after a kill, concurrent runs, clear failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aibrix.storage.base import BadURI, safe_relative
from tests.helpers.hf_server import HubServer, Repo
from tests.helpers.procs import run_downloader

FILES = {
    "model-00001-of-00002.safetensors": 24 << 20,
    "model-00002-of-00002.safetensors": 3 << 20,
    "config.json": 300,
    "tokenizer.json": 5000,
    "nested/deeper/extra.bin": 700,
    "README.md": 120,
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo") / "tiny-llama"
    for name, size in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return root


@pytest.fixture
def hub(model):
    with HubServer({"org/tiny-llama": Repo(model), "org/secret": Repo(model, private=True)}, static=model) as server:
        yield server


def same_tree(source: Path, copy: Path, names=FILES) -> None:
    for name in names:
        assert (copy / name).read_bytes() == (source / name).read_bytes(), name


def test_huggingface_download_lands_in_local_dir_slash_org_slash_name_as_upstream(hub, model, tmp_path):
    result = run_downloader(["--model-uri", "org/tiny-llama", "--local-dir", str(tmp_path)], {"HF_ENDPOINT": hub.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "org" / "tiny-llama")
    same_tree(model, tmp_path / "org" / "tiny-llama")
    assert any(path.startswith("/lfs/") for _, path in hub.requests)  # LFS files came through the redirect


def test_suffix_filter_with_and_without_dot(hub, model, tmp_path):
    env = {"HF_ENDPOINT": hub.url, "DOWNLOADER_ALLOW_FILE_SUFFIX": "json, .safetensors"}
    assert (
        run_downloader(["--model-uri", "huggingface://org/tiny-llama", "--local-dir", str(tmp_path)], env).returncode
        == 0
    )
    dest = tmp_path / "org" / "tiny-llama"
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and ".aibrix" not in p.parts)
    assert got == sorted(n for n in FILES if n.endswith((".json", ".safetensors")))


def test_second_run_transfers_nothing(hub, model, tmp_path):
    args = ["--model-uri", "org/tiny-llama", "--local-dir", str(tmp_path), "--json"]
    assert run_downloader(args, {"HF_ENDPOINT": hub.url}).returncode == 0
    served = hub.bytes_served
    started = time.monotonic()
    again = run_downloader(args, {"HF_ENDPOINT": hub.url})
    assert time.monotonic() - started < 5
    summary = json.loads(again.stdout)
    assert summary["downloaded_bytes"] == 0 and summary["skipped_files"] == len(FILES)
    assert hub.bytes_served == served


def test_corrupt_local_file_is_fetched_again(hub, model, tmp_path):
    args = ["--model-uri", "org/tiny-llama", "--local-dir", str(tmp_path), "--json"]
    assert run_downloader(args, {"HF_ENDPOINT": hub.url}).returncode == 0
    victim = tmp_path / "org" / "tiny-llama" / "model-00002-of-00002.safetensors"
    data = bytearray(victim.read_bytes())
    data[1000] ^= 0xFF
    victim.write_bytes(bytes(data))  # same size, other bytes
    summary = json.loads(run_downloader(args, {"HF_ENDPOINT": hub.url}).stdout)
    assert summary["downloaded_files"] == 1
    same_tree(model, tmp_path / "org" / "tiny-llama")


def test_private_repo_needs_the_token(hub, model, tmp_path):
    denied = run_downloader(["--model-uri", "org/secret", "--local-dir", str(tmp_path)], {"HF_ENDPOINT": hub.url})
    assert denied.returncode == 1
    assert "access denied" in denied.stderr and denied.stderr.count("\n") == 1
    allowed = run_downloader(
        ["--model-uri", "org/secret", "--local-dir", str(tmp_path)], {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_secret"}
    )
    assert allowed.returncode == 0, allowed.stderr
    same_tree(model, tmp_path / "org" / "secret")


@pytest.mark.parametrize(
    "uri, message",
    [("org/missing", "not found"), ("s3://", "no bucket"), ("ftp://x/y", "unsupported"), ("/no/such/dir", "no such")],
)
def test_failures_are_one_clear_line(hub, tmp_path, uri, message):
    result = run_downloader(["--model-uri", uri, "--local-dir", str(tmp_path)], {"HF_ENDPOINT": hub.url})
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_kill_mid_download_then_resume_without_refetching(hub, model, tmp_path):
    hub.rate = 16 << 20  # 16 MB/s per connection: the 27 MB model takes a couple of seconds
    env = {"HF_ENDPOINT": hub.url, "DOWNLOADER_NUM_THREADS": "4", "DOWNLOADER_PART_CHUNKSIZE": str(8 << 20)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aibrix.downloader", "--model-uri", "org/tiny-llama", "--local-dir", str(tmp_path)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    big = tmp_path / "org" / "tiny-llama" / "model-00001-of-00002.safetensors"
    record = tmp_path / "org" / "tiny-llama" / ".aibrix" / "partial" / "model-00001-of-00002.safetensors.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # kill once at least one 8 MiB part of the big file is on disk
        try:
            if json.loads(record.read_text())["done"]:
                break
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not big.exists(), "a partial file must never sit under its final name"
    first = hub.bytes_served
    hub.rate = None
    result = run_downloader(["--model-uri", "org/tiny-llama", "--local-dir", str(tmp_path), "--json"], env)
    assert result.returncode == 0, result.stderr
    same_tree(model, tmp_path / "org" / "tiny-llama")
    total = sum(FILES.values())
    assert hub.bytes_served - first < total - (8 << 20), "completed parts were fetched again"


def test_two_processes_at_once_do_not_corrupt(hub, model, tmp_path):
    args = [sys.executable, "-m", "aibrix.downloader", "--model-uri", "org/tiny-llama", "--local-dir", str(tmp_path)]
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    same_tree(model, tmp_path / "org" / "tiny-llama")
    assert hub.bytes_served < 2 * sum(FILES.values())  # the second waited, then found the files done


def test_plain_http_url_single_file(hub, model, tmp_path):
    url = f"{hub.url}/static/model-00001-of-00002.safetensors"
    result = run_downloader(["--model-uri", url, "--local-dir", str(tmp_path), "--model-name", "weights"])
    assert result.returncode == 0, result.stderr
    name = "model-00001-of-00002.safetensors"
    assert (tmp_path / "weights" / name).read_bytes() == (model / name).read_bytes()


def test_local_path_source(model, tmp_path):
    result = run_downloader(["--model-uri", str(model), "--local-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    same_tree(model, tmp_path / "tiny-llama")


def test_symlink_planted_in_destination_is_refused(model, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dl" / "tiny-llama"
    dest.mkdir(parents=True)
    (dest / "nested").symlink_to(outside)
    result = run_downloader(["--model-uri", str(model), "--local-dir", str(tmp_path / "dl")])
    assert result.returncode == 1
    assert "outside" in result.stderr
    assert not any(outside.iterdir())


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "a/../../b", "a/./b", "", "a\\b", "x\x00y"])
def test_names_that_would_escape_are_refused(bad):
    with pytest.raises(BadURI):
        safe_relative(bad)


@pytest.mark.parametrize("bad", ["../escape", "a/b/c", "org/..", "/abs", "a\\b"])
def test_model_name_cannot_be_a_path(model, tmp_path, bad):
    result = run_downloader(["--model-uri", str(model), "--local-dir", str(tmp_path), "--model-name", bad])
    assert result.returncode == 1 and "must be one folder name or 'organization/name'" in result.stderr
    assert not any(tmp_path.iterdir())


def test_not_enough_disk_space_fails_before_downloading(hub, small_filesystem):
    result = run_downloader(
        ["--model-uri", "org/tiny-llama", "--local-dir", str(small_filesystem)], {"HF_ENDPOINT": hub.url}
    )
    assert result.returncode == 1
    assert "not enough disk space" in result.stderr and result.stderr.count("\n") == 1
    assert hub.bytes_served == 0


def test_a_download_waiting_for_another_says_whom_and_gives_up_in_time(hub, tmp_path):
    import fcntl

    state = tmp_path / "org" / "tiny-llama" / ".aibrix"
    state.mkdir(parents=True)
    with open(state / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        started = time.monotonic()
        result = run_downloader(
            ["--model-uri", "org/tiny-llama", "--local-dir", str(tmp_path)],
            env={"HF_ENDPOINT": hub.url, "DOWNLOADER_LOCK_TIMEOUT": "1"},
        )
        took = time.monotonic() - started
    assert result.returncode == 1
    assert f"waiting for another download into {tmp_path / 'org' / 'tiny-llama'} (pid 4242) to finish" in result.stderr
    assert "is still running after 1s" in result.stderr
    assert took < 30


def test_more_files_than_the_open_file_limit(tmp_path):
    """Files are opened as workers reach them and closed when done, not all before the first fetch (EMFILE)."""
    source = tmp_path / "many-files"
    source.mkdir()
    for index in range(300):
        (source / f"shard-{index:03d}.bin").write_bytes(os.urandom(100 + index))
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "from aibrix.downloader.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["--model-uri", str(source), "--local-dir", str(tmp_path / "out"), "--threads", "8"]
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    copied = sorted((tmp_path / "out" / "many-files").glob("shard-*.bin"))
    assert len(copied) == 300
    assert all(path.read_bytes() == (source / path.name).read_bytes() for path in copied)
