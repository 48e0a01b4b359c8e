"""Artifacts in S3-compatible storage (Ceph radosgw) and the GCS emulator: the runtime's delegated loads and the
downloader's renewals against real object stores."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from aibrix.downloader.transfer import Downloader
from tests.helpers.artifacts import ADAPTER, QUICK, tree
from tests.helpers.procs import start_runtime, start_sim
from tests.helpers.runtime_api import assert_error, load_body


def test_an_expired_presigned_s3_url_is_signed_again(rgw, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aibrix.storage.s3 as s3
    from aibrix.storage.uri import open_source

    client = rgw.client()
    client.create_bucket(Bucket="expiring")
    body = os.urandom(1 << 20)
    client.put_object(Bucket="expiring", Key="adapter/weights.bin", Body=body)
    monkeypatch.setattr(s3, "URL_LIFETIME", 1)
    files = open_source("s3://expiring/adapter/", rgw.env()).list_files()
    time.sleep(2.5)  # every presigned URL has expired: Ceph answers 403 "Request has expired"
    Downloader(threads=1, retries=QUICK).download(files, tmp_path)
    assert (tmp_path / "weights.bin").read_bytes() == body


def test_s3_artifact_with_credentials_and_secret(procs, tmp_path, rgw, adapter_repo):
    client = rgw.client()
    client.create_bucket(Bucket="loras")
    for name, data in ADAPTER.items():
        client.put_object(Bucket="loras", Key=f"adapters/qwen-sql/{name}", Body=data)
    secrets = tmp_path / "secrets"
    (secrets / "s3-creds").mkdir(parents=True)
    (secrets / "s3-creds" / "aws_access_key_id").write_text(rgw.ACCESS_KEY)
    (secrets / "s3-creds" / "aws_secret_access_key").write_text(rgw.SECRET_KEY + "\n")
    sim = procs.sim("vllm")
    adapters = tmp_path / "adapters"
    runtime = procs.runtime(
        "vllm",
        sim.url,
        env={
            "AIBRIX_ADAPTER_DIR": str(adapters),
            "AIBRIX_CREDENTIALS_ROOT": str(secrets),
            "AWS_ENDPOINT_URL": rgw.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
        },
    )
    body = {
        "lora_name": "qwen-sql",
        "artifact_url": "s3://loras/adapters/qwen-sql/",
        "credentials": {"aws_access_key_id": rgw.ACCESS_KEY, "aws_secret_access_key": rgw.SECRET_KEY},
    }
    assert load_body(runtime, body).status_code == 200
    assert (adapters / "qwen-sql" / "adapter_model.safetensors").read_bytes() == ADAPTER["adapter_model.safetensors"]
    wrong = {**body, "lora_name": "wrong-keys", "credentials": {**body["credentials"], "aws_secret_access_key": "nope"}}
    assert_error(load_body(runtime, wrong), 403, "access denied")
    assert not (adapters / "wrong-keys").exists()
    from_secret = {
        "lora_name": "from-secret",
        "artifact_url": "s3://loras/adapters/qwen-sql/",
        "credentials_secret": "s3-creds",
    }
    assert load_body(runtime, from_secret).status_code == 200
    assert_error(load_body(runtime, {**from_secret, "lora_name": "bad-secret", "credentials_secret": "../etc"}), 400)


@pytest.mark.parametrize("scheme", ["gs", "tos"])
def test_gcs_and_tos_artifacts_through_the_runtime(tmp_path, rgw, scheme):
    from tests.helpers.services import GCSEmulator

    sim = start_sim("vllm")
    adapters = tmp_path / "adapters"
    env = {"AIBRIX_ADAPTER_DIR": str(adapters)}
    emulator = None
    if scheme == "gs":
        emulator = GCSEmulator()
        emulator.bucket("gcs-loras")
        for name, data in ADAPTER.items():
            emulator.upload("gcs-loras", f"adapters/lora-x/{name}", data)
        env["STORAGE_EMULATOR_HOST"] = emulator.url
        body = {"lora_name": "lora-x", "artifact_url": "gs://gcs-loras/adapters/lora-x/"}
    else:
        client = rgw.client()
        client.create_bucket(Bucket="tos-loras")
        for name, data in ADAPTER.items():
            client.put_object(Bucket="tos-loras", Key=f"adapters/lora-x/{name}", Body=data)
        body = {
            "lora_name": "lora-x",
            "artifact_url": "tos://tos-loras/adapters/lora-x/",
            "credentials": {
                "tos_access_key": rgw.ACCESS_KEY,
                "tos_secret_key": rgw.SECRET_KEY,
                "tos_endpoint": rgw.url,
                "tos_region": "cn-beijing",
            },
        }
    runtime = start_runtime("vllm", sim.url, env=env)
    try:
        response = load_body(runtime, body)
        assert response.status_code == 200, response.text
        for name, data in ADAPTER.items():
            assert (adapters / "lora-x" / name).read_bytes() == data
    finally:
        runtime.stop()
        sim.stop()
        if emulator is not None:
            emulator.stop()


def test_delegated_tos_credentials_in_upstreams_form(procs, rgw, tmp_path: Path) -> None:
    """Upstream reads TOS_ACCESS_KEY / TOS_SECRET_KEY / endpoint from credentials, merged with additional_config."""
    client = rgw.client()
    client.create_bucket(Bucket="tos-adapters")
    for name, data in ADAPTER.items():
        client.put_object(Bucket="tos-adapters", Key=f"sql/{name}", Body=data)
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")})
    keys = {"TOS_ACCESS_KEY": rgw.ACCESS_KEY, "TOS_SECRET_KEY": rgw.SECRET_KEY}
    bodies = [
        {"lora_name": "tos_a", "artifact_url": "tos://tos-adapters/sql/", "credentials": {**keys, "endpoint": rgw.url}},
        {"lora_name": "tos_b", "artifact_url": "tos://tos-adapters/sql/", "credentials": keys,
         "additional_config": {"endpoint": rgw.url, "enable_crc": "true"}},
    ]  # fmt: skip
    for body in bodies:
        response = httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert tree(tmp_path / "adapters" / body["lora_name"]) == ADAPTER
    assert "credential key enable_crc is ignored" in runtime.output(limit=100_000)
