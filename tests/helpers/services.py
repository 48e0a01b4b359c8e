"""Object stores the downloader tests run against, started and stopped by the tests themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.procs import free_port

ROOT = Path(__file__).resolve().parents[2]


def require(available: bool, what: str) -> None:
    """Skip when a service cannot run here; in CI (CI=true) that is a failure, never a silent skip."""
    if not available:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is not available in CI; scripts/test.sh should have installed it")
        pytest.skip(f"{what} is not installed (scripts/test.sh installs it)")


class GCSEmulator:
    """gcp-storage-emulator (PyPI), in memory, on a free loopback port."""

    def __init__(self) -> None:
        binary = Path(sys.executable).with_name("gcp-storage-emulator")
        require(binary.exists(), "gcp-storage-emulator")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(binary), "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{self.url}/storage/v1/b", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("gcp-storage-emulator did not start") from None
                time.sleep(0.1)

    def bucket(self, name: str) -> None:
        httpx.post(f"{self.url}/storage/v1/b", params={"project": "test"}, json={"name": name}).raise_for_status()

    def upload(self, bucket: str, name: str, data: bytes) -> None:
        url = f"{self.url}/upload/storage/v1/b/{bucket}/o"
        httpx.post(url, params={"uploadType": "media", "name": name}, content=data, timeout=60).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RadosGateway:
    """A single-node Ceph cluster (one monitor, one memstore OSD, no cephx) with radosgw's beast frontend on
    loopback, started by scripts/ceph_rgw.sh."""

    ACCESS_KEY = "aibrix-test-access"
    SECRET_KEY = "aibrix-test-secret-key"

    def __init__(self, workdir: Path) -> None:
        require(shutil.which("radosgw") is not None and shutil.which("ceph-mon") is not None, "Ceph radosgw")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "RGW_PORT": str(self.port),
            "RGW_ACCESS_KEY": self.ACCESS_KEY,
            "RGW_SECRET_KEY": self.SECRET_KEY,
        }
        result = subprocess.run(
            [str(ROOT / "scripts" / "ceph_rgw.sh"), "start", str(workdir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"radosgw did not start:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")

    def client(self):  # botocore client for uploads in tests
        import botocore.session
        from botocore.config import Config

        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": "us-east-1",
        }

    def stop(self) -> None:
        subprocess.run(
            [str(ROOT / "scripts" / "ceph_rgw.sh"), "stop", str(self.workdir)], timeout=60, capture_output=True
        )
