"""The downloader against real object stores: Ceph's S3 gateway (as s3:// and tos://) and the GCS emulator."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.helpers.procs import run_downloader
from tests.helpers.services import GCSEmulator

MODEL = {
    "model.safetensors": 9 << 20,
    "config.json": 400,
    "tokenizer/tokenizer.json": 3000,
    "tokenizer/vocab/merges.txt": 2000,
    "extra/a/b/c.bin": 100,
}


def blobs() -> dict[str, bytes]:
    return {name: os.urandom(size) for name, size in MODEL.items()}


@pytest.fixture(scope="module")
def s3_model(rgw):
    client = rgw.client()
    client.create_bucket(Bucket="artifacts")
    client.create_bucket(Bucket="empty")
    data = blobs()
    for name, body in data.items():
        client.put_object(Bucket="artifacts", Key=f"models/tiny-qwen/{name}", Body=body)
    client.put_object(Bucket="artifacts", Key="models/tiny-qwen-other/config.json", Body=b"{}")  # a sibling prefix
    return data


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".aibrix" not in p.relative_to(root).parts
    }


def test_s3_prefix_recursive_across_listing_pages(rgw, s3_model, tmp_path):
    env = {**rgw.env(), "DOWNLOADER_LIST_PAGE_SIZE": "2"}
    result = run_downloader(["--model-uri", "s3://artifacts/models/tiny-qwen/", "--local-dir", str(tmp_path)], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "tiny-qwen")
    assert tree(tmp_path / "tiny-qwen") == s3_model  # the sibling prefix tiny-qwen-other stayed out


def test_s3_suffix_filter_and_rerun(rgw, s3_model, tmp_path):
    env = {**rgw.env(), "DOWNLOADER_ALLOW_FILE_SUFFIX": "json,safetensors"}
    args = ["--model-uri", "s3://artifacts/models/tiny-qwen", "--local-dir", str(tmp_path), "--json"]
    first = json.loads(run_downloader(args, env).stdout)
    assert set(tree(tmp_path / "tiny-qwen")) == {"model.safetensors", "config.json", "tokenizer/tokenizer.json"}
    assert first["downloaded_files"] == 3
    second = json.loads(run_downloader(args, env).stdout)
    assert (second["downloaded_bytes"], second["skipped_files"]) == (0, 3)


def test_s3_single_object(rgw, s3_model, tmp_path):
    result = run_downloader(
        [
            "--model-uri",
            "s3://artifacts/models/tiny-qwen/config.json",
            "--local-dir",
            str(tmp_path),
            "--model-name",
            "cfg",
        ],
        rgw.env(),
    )
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "cfg") == {"config.json": s3_model["config.json"]}


def test_s3_md5_etag_catches_a_corrupt_local_file(rgw, s3_model, tmp_path):
    args = ["--model-uri", "s3://artifacts/models/tiny-qwen/", "--local-dir", str(tmp_path), "--json"]
    run_downloader(args, rgw.env())
    victim = tmp_path / "tiny-qwen" / "model.safetensors"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    summary = json.loads(run_downloader(args, rgw.env()).stdout)
    assert summary["downloaded_files"] == 1
    assert hashlib.md5(victim.read_bytes()).digest() == hashlib.md5(s3_model["model.safetensors"]).digest()


def test_tos_scheme_speaks_s3_with_tos_variables(rgw, s3_model, tmp_path):
    env = {
        "TOS_ACCESS_KEY": rgw.ACCESS_KEY,
        "TOS_SECRET_KEY": rgw.SECRET_KEY,
        "TOS_ENDPOINT": rgw.url,
        "TOS_REGION": "cn-beijing",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
    }
    result = run_downloader(["--model-uri", "tos://artifacts/models/tiny-qwen/", "--local-dir", str(tmp_path)], env)
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "tiny-qwen") == s3_model


@pytest.mark.parametrize(
    "uri, env_change, message",
    [
        ("s3://missing-bucket/models/x/", {}, "bucket does not exist"),
        ("s3://empty/models/x/", {}, "no objects under this prefix"),
        ("s3://artifacts/models/nothing-here/", {}, "no objects under this prefix"),
        ("s3://artifacts/models/tiny-qwen/", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "access denied"),
    ],
)
def test_s3_failures_are_clear(rgw, s3_model, tmp_path, uri, env_change, message):
    result = run_downloader(["--model-uri", uri, "--local-dir", str(tmp_path)], {**rgw.env(), **env_change})
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert "wrong" not in result.stderr  # never echo a secret


@pytest.fixture(scope="module")
def gcs():
    emulator = GCSEmulator()
    emulator.bucket("gcs-artifacts")
    data = blobs()
    for name, body in data.items():
        emulator.upload("gcs-artifacts", f"models/tiny-gemma/{name}", body)
    yield emulator, data
    emulator.stop()


@pytest.mark.parametrize("scheme", ["gs", "gcs"])
def test_gcs_prefix(gcs, tmp_path, scheme):
    emulator, data = gcs
    env = {"STORAGE_EMULATOR_HOST": emulator.url}
    result = run_downloader(
        ["--model-uri", f"{scheme}://gcs-artifacts/models/tiny-gemma", "--local-dir", str(tmp_path)], env
    )
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "tiny-gemma") == data


def test_gcs_missing_bucket(gcs, tmp_path):
    emulator, _ = gcs
    result = run_downloader(
        ["--model-uri", "gs://nope/models/x", "--local-dir", str(tmp_path)], {"STORAGE_EMULATOR_HOST": emulator.url}
    )
    assert result.returncode == 1 and "not found" in result.stderr
