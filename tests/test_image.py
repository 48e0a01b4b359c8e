"""The image scripts/build_image.sh builds (debootstrap base + buildah, no registry): its own aibrix_runtime, run from
the image's unpacked root as the non-root user the Dockerfile declares, serves an engine simulator: /ready 200 and
an adapter loaded and listed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from procs import free_port

BUILDAH_ENV = {**os.environ, "STORAGE_DRIVER": "vfs"}
CHROOT = shutil.which("chroot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "chroot"


def buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *args], env=BUILDAH_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def image_root() -> Iterator[tuple[str, Path]]:
    """The image (AIBRIX_IMAGE, exported by scripts/test.sh) and a mounted working container of it."""
    image = os.environ.get("AIBRIX_IMAGE", "")
    if not image:
        if os.environ.get("CI") == "true":
            pytest.fail("AIBRIX_IMAGE is not set: scripts/test.sh builds the image with scripts/build_image.sh")
        pytest.skip("AIBRIX_IMAGE is not set (scripts/build_image.sh builds it; scripts/test.sh exports it)")
    container = buildah("from", image)
    try:
        yield image, Path(buildah("mount", container))
    finally:
        buildah("umount", container)
        buildah("rm", container)


def test_the_images_own_runtime_serves_an_engine_as_its_non_root_user(procs, image_root, tmp_path: Path) -> None:
    image, root = image_root
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    assert config["User"] == "65532" and config["Cmd"] == ["aibrix_runtime", "--port", "8080"]
    adapter = tmp_path / "demo-lora"  # the same path on the host (the simulator) and in the image's root (the runtime)
    for folder in (adapter, root / adapter.relative_to("/")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_config.json").write_text('{"r": 8}')
    sim = procs.sim("vllm")
    port = free_port()
    runtime = subprocess.Popen(
        [CHROOT, "--userspec=65532:65532", str(root), "/opt/aibrix/bin/aibrix_runtime", "--host", "127.0.0.1",
         "--port", str(port)],
        env={"INFERENCE_ENGINE": "vllm", "INFERENCE_ENGINE_ENDPOINT": sim.url, "PATH": "/opt/aibrix/bin:/usr/bin:/bin",
             "HOME": "/tmp"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.monotonic() + 30, None
        while time.monotonic() < deadline and runtime.poll() is None:
            try:
                ready = httpx.get(url + "/ready", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, runtime.stdout.read() if runtime.stdout else ""
        load = httpx.post(url + "/v1/lora_adapter/load", json={"lora_name": "demo", "lora_path": str(adapter)})
        assert load.status_code == 200, load.text
        assert [a["name"] for a in httpx.get(url + "/v1/lora_adapter").json()["data"]] == ["demo"]
    finally:
        runtime.terminate()
        runtime.wait(timeout=10)
