"""The image scripts/build_image.sh builds (debootstrap base + buildah, no registry), run from its unpacked root as the
non-root user the Dockerfile declares: its own aibrix_runtime serves an engine simulator (/ready 200, an adapter
loaded and listed), and its own aibrix_controller serves the sidecar injection webhook over TLS."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.kube import FakeKube
from tests.helpers.procs import free_port
from tests.helpers.tls import issue, make_ca
from tests.helpers.webhooks import admission

BUILDAH_ENV = {**os.environ, "STORAGE_DRIVER": "vfs"}
CHROOT = shutil.which("chroot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "chroot"


def buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *args], env=BUILDAH_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def in_image(root: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``argv`` run from the image's unpacked root as the user its Dockerfile declares."""
    return subprocess.Popen(
        [CHROOT, "--userspec=65532:65532", str(root), *argv],
        env={"PATH": "/opt/aibrix/bin:/usr/bin:/bin", "HOME": "/tmp", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def first_answer(proc: subprocess.Popen[str], send: Callable[[], httpx.Response]) -> httpx.Response | None:
    """``send()``'s response once the server in ``proc`` answers (within 30 s), None if it never did or exited."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return send()
        except httpx.TransportError:
            time.sleep(0.1)
    return None


def output(proc: subprocess.Popen[str]) -> str:
    """What ``proc`` printed, for a failure message; stopped first, as reading a live one's pipe waits for its end."""
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
    return proc.stdout.read() if proc.stdout else ""


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
    runtime = in_image(
        root,
        "/opt/aibrix/bin/aibrix_runtime",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={"INFERENCE_ENGINE": "vllm", "INFERENCE_ENGINE_ENDPOINT": sim.url},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = first_answer(runtime, lambda: httpx.get(url + "/ready", timeout=1))
        assert ready is not None and ready.status_code == 200, output(runtime)
        load = httpx.post(url + "/v1/lora_adapter/load", json={"lora_name": "demo", "lora_path": str(adapter)})
        assert load.status_code == 200, load.text
        assert [a["name"] for a in httpx.get(url + "/v1/lora_adapter").json()["data"]] == ["demo"]
    finally:
        runtime.terminate()
        runtime.wait(timeout=10)


def test_the_images_own_controller_serves_the_injection_webhook(image_root, tmp_path: Path) -> None:
    """The controller's command from the image (lightkube, uvicorn, ssl as installed there) answers a review."""
    _, root = image_root
    inside = Path("/tmp") / tmp_path.name  # a folder in the image's root, readable by its user
    folder = root / inside.relative_to("/")
    ca = make_ca(tmp_path / "ca")
    issue(ca, folder / "certs")
    kube = FakeKube(tmp_path)
    shutil.copy(kube.kubeconfig, folder / "kubeconfig")
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port, probes = free_port(), free_port()
    controller = in_image(
        root,
        "/opt/aibrix/bin/aibrix_controller",
        "--kubeconfig",
        f"{inside}/kubeconfig",
        "--leader-elect=false",
        "--metrics-bind-address",
        "0",
        "--health-probe-bind-address",
        f"127.0.0.1:{probes}",
        "--webhook-bind-address",
        f"127.0.0.1:{port}",
        "--webhook-cert-dir",
        f"{inside}/certs",
    )
    pod = {
        "metadata": {"name": "p", "annotations": {"model.aibrix.ai/sidecar-injection": "true"}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]},
    }
    try:
        verify, webhook = ssl.create_default_context(cafile=str(ca)), f"https://127.0.0.1:{port}/mutate-v1-pod"
        answer = first_answer(controller, lambda: httpx.post(webhook, json=admission(pod), timeout=2, verify=verify))
        assert answer is not None and answer.status_code == 200, output(controller)
        patch = json.loads(base64.b64decode(answer.json()["response"]["patch"]))
        assert any(op["path"] == "/spec/containers/-" and op["value"]["name"] == "aibrix-runtime" for op in patch)
    finally:
        controller.terminate()
        controller.wait(timeout=10)
        kube.stop()
        shutil.rmtree(folder)


def test_the_image_carries_the_vllm_resolver_plugin_for_engine_images(image_root, tmp_path: Path) -> None:
    """An engine image copies the plugin out of ours and installs it with its own pip: no dependencies, and vLLM
    finds its entry point."""
    from tests.helpers.real_vllm import install_resolver_plugin, vllm_python

    _, root = image_root
    plugin = root / "opt" / "aibrix" / "plugins" / "vllm-lora-resolver"
    assert (plugin / "pyproject.toml").is_file()
    site = install_resolver_plugin(tmp_path / "site", source=plugin)
    group = "vllm.general_plugins"
    probe = f"from importlib.metadata import entry_points as e; print([p.value for p in e(group={group!r})])"
    env = {**os.environ, "PYTHONPATH": str(site)}
    found = subprocess.run([vllm_python(), "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert "aibrix_lora_resolver:register" in found.stdout, found.stderr
