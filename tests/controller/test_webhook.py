"""The sidecar injection webhook as the API server meets it: AdmissionReview v1 over real TLS to the controller
process, the returned JSON patch applied with a JSON-patch library nobody here wrote (jsonpatch), and the resulting
pod checked as a user would (and against Kubernetes' published schema)."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest

from tests.helpers.kube import FakeKube
from tests.helpers.procs import HOST, Proc, free_port
from tests.helpers.tls import issue, make_ca
from tests.helpers.webhooks import admission

RANK, SLOTS = "adapter.model.aibrix.ai/max-lora-rank", "adapter.model.aibrix.ai/max-adapters"
KUBERNETES = "1.36.0"
DEFAULT_IMAGE = "registry.example/aibrix/runtime:flag"


def serve(kube: FakeKube, cert_dir: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = kube.start_controller(
        "--webhook-bind-address",
        f"{HOST}:{port}",
        "--webhook-cert-dir",
        str(cert_dir),
        "--sidecar-runtime-image",
        DEFAULT_IMAGE,
        "--leader-elect=false",
    )
    return proc, f"https://{HOST}:{port}"


def kubelet_mount(cert_dir: Path, source: Path, version: str) -> None:
    """Put ``source``'s tls.crt/tls.key in ``cert_dir`` the way the kubelet updates a Secret volume: files in a
    timestamped folder, ``..data`` swapped to it atomically, the visible names symlinks through ``..data``."""
    target = cert_dir / f"..{version}"
    target.mkdir(parents=True)
    for name in ("tls.crt", "tls.key"):
        (target / name).write_bytes((source / name).read_bytes())
        if not (cert_dir / name).is_symlink():
            (cert_dir / name).symlink_to(f"..data/{name}")
    (cert_dir / "..data_tmp").symlink_to(target.name)
    os.replace(cert_dir / "..data_tmp", cert_dir / "..data")


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    tmp = tmp_path_factory.mktemp("webhook")
    ca = make_ca(tmp / "ca")
    issue(ca, tmp / "serving")
    kubelet_mount(tmp / "mounted", tmp / "serving", "v1")
    kube = FakeKube(tmp)
    proc, url = serve(kube, tmp / "mounted")
    yield url, ssl.create_default_context(cafile=str(ca))
    proc.stop()
    kube.stop()


def send(webhook: tuple[str, ssl.SSLContext], body: bytes | dict[str, Any], path: str = "/mutate-v1-pod") -> dict:
    url, context = webhook
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        url + path, content=content, verify=context, timeout=10, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    if isinstance(body, dict) and isinstance(body.get("request"), dict):
        assert answer["response"]["uid"] == body["request"]["uid"]
    return answer["response"]


def mutate(webhook: tuple[str, ssl.SSLContext], obj: dict[str, Any], **kw: str) -> tuple[dict[str, Any], dict]:
    """The object after the webhook's patch, applied by jsonpatch; and the response."""
    path = "/mutate-apps-v1-deployment" if kw.get("kind") == "Deployment" else "/mutate-v1-pod"
    response = send(webhook, admission(obj, **kw), path)
    assert response["allowed"] is True
    if "patch" not in response:
        return obj, response
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(obj, patch), response


def engine_pod(
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "vllm-llama3",
            "namespace": "default",
            "labels": {"model.aibrix.ai/name": "llama-3", "adapter.model.aibrix.ai/enabled": "true", **(labels or {})},
            "annotations": {"model.aibrix.ai/sidecar-injection": "true", **(annotations or {})},
        },
        "spec": {
            "containers": containers
            or [{"name": "vllm", "image": "vllm/vllm-openai:latest", "ports": [{"containerPort": 8000}]}],
            **spec,
        },
    }


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def test_an_annotated_pod_gets_the_runtime_and_the_shared_adapter_volume(webhook) -> None:
    pod, response = mutate(
        webhook, engine_pod(labels={"model.aibrix.ai/engine": "sglang", "model.aibrix.ai/port": "30000"})
    )
    assert "warnings" not in response
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["vllm", "aibrix-runtime"]  # the engine stays first
    runtime = container(pod, "aibrix-runtime")
    assert runtime["image"] == DEFAULT_IMAGE
    assert runtime["command"] == ["aibrix_runtime", "--port", "8080"]
    assert env(runtime) == {
        "INFERENCE_ENGINE": "sglang",
        "INFERENCE_ENGINE_ENDPOINT": "http://localhost:30000",
        "AIBRIX_RUNTIME_API_KEY": None,
    }
    key = {"secretKeyRef": {"name": "aibrix-runtime-key", "key": "api-key", "optional": True}}
    assert next(e for e in runtime["env"] if e["name"] == "AIBRIX_RUNTIME_API_KEY")["valueFrom"] == key
    assert runtime["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert runtime["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}
    assert runtime["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert runtime["resources"]["limits"]["memory"] == "512Mi"
    assert runtime["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["volumes"] == [{"name": "adapter-storage", "emptyDir": {}}]
    for name in ("vllm", "aibrix-runtime"):
        assert {"name": "adapter-storage", "mountPath": "/tmp/aibrix/adapters"} in container(pod, name)["volumeMounts"]


def test_the_image_annotation_wins_and_the_engine_defaults_as_the_controller_reads_it(webhook) -> None:
    pod, _ = mutate(
        webhook,
        engine_pod(
            annotations={"model.aibrix.ai/sidecar-runtime-image": "mirror/runtime:1"},
            volumes=[{"name": "models", "emptyDir": {}}],
        ),
    )
    runtime = container(pod, "aibrix-runtime")
    assert runtime["image"] == "mirror/runtime:1"
    assert env(runtime) == {
        "INFERENCE_ENGINE": "vllm",
        "INFERENCE_ENGINE_ENDPOINT": "http://localhost:8000",
        "AIBRIX_RUNTIME_API_KEY": None,
        "AIBRIX_ENGINE_MAX_LORA_RANK": "16",  # vLLM's defaults, the engine's arguments naming none
        "AIBRIX_ENGINE_MAX_ADAPTERS": "1",
    }
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["models", "adapter-storage"]
    sglang = [{"name": "server", "image": "lmsysorg/sglang:v0.5", "ports": [{"containerPort": 30000}]}]
    pod, _ = mutate(webhook, engine_pod(containers=sglang))
    assert env(container(pod, "aibrix-runtime"))["INFERENCE_ENGINE"] == "sglang"  # told by its image, as upstream
    assert env(container(pod, "aibrix-runtime"))["INFERENCE_ENGINE_ENDPOINT"] == "http://localhost:30000"


@pytest.mark.parametrize("annotations, extra", [
    ({"model.aibrix.ai/sidecar-injection": "false"}, None),
    ({"model.aibrix.ai/sidecar-injection": ""}, None),
    ({}, {"name": "aibrix-runtime", "image": "aibrix/runtime:mine"}),
])  # fmt: skip
def test_a_pod_that_opts_out_or_already_has_the_sidecar_is_left_alone(webhook, annotations, extra) -> None:
    pod = engine_pod()
    pod["metadata"]["annotations"].update(annotations)
    if extra:
        pod["spec"]["containers"].append(extra)
    response = send(webhook, admission(pod))
    assert response == {"uid": response["uid"], "allowed": True}


def test_a_pod_update_is_never_patched_since_its_containers_cannot_change(webhook) -> None:
    response = send(webhook, admission(engine_pod(), operation="UPDATE"))
    assert response == {"uid": response["uid"], "allowed": True}


def test_engine_ports_existing_volumes_and_guaranteed_pods_are_respected(webhook) -> None:
    resources = {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}}
    containers = [
        {
            "name": "engine",
            "image": "vllm/vllm-openai",
            "ports": [{"containerPort": 8080}],
            "resources": resources,
            "volumeMounts": [{"name": "fast-disk", "mountPath": "/tmp/aibrix/adapters"}],
        },
        {"name": "proxy", "image": "envoy", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
    ]
    pod, _ = mutate(webhook, engine_pod(containers=containers, volumes=[{"name": "fast-disk", "emptyDir": {}}]))
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    runtime = container(pod, "aibrix-runtime")
    assert runtime["command"][-1] == "8081" and runtime["ports"][0]["containerPort"] == 8081  # the engine has 8080
    assert env(runtime)["INFERENCE_ENGINE_ENDPOINT"] == "http://localhost:8080"
    assert runtime["resources"]["requests"] == runtime["resources"]["limits"]  # the pod stays QoS Guaranteed
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["fast-disk"]  # the user's volume is the shared one
    assert runtime["volumeMounts"] == [{"name": "fast-disk", "mountPath": "/tmp/aibrix/adapters"}]
    assert container(pod, "engine")["volumeMounts"] == containers[0]["volumeMounts"]  # not mounted twice
    assert container(pod, "proxy")["volumeMounts"] == [{"name": "fast-disk", "mountPath": "/tmp/aibrix/adapters"}]


@pytest.mark.parametrize("labels, complaint", [
    ({"model.aibrix.ai/engine": "ollama"}, "model.aibrix.ai/engine='ollama' is not one of vllm"),
    ({"model.aibrix.ai/port": "http"}, "model.aibrix.ai/port='http' is not a port number"),
    ({"model.aibrix.ai/port": "70000"}, "model.aibrix.ai/port='70000' is not a port number"),
    ({"model.aibrix.ai/metric-port": "nine"}, "model.aibrix.ai/metric-port='nine' is not a port number"),
])  # fmt: skip
def test_labels_that_cannot_work_get_a_warning_and_no_half_working_sidecar(webhook, labels, complaint) -> None:
    pod, response = mutate(webhook, engine_pod(labels=labels))
    assert "patch" not in response and response["allowed"] is True
    assert any(complaint in w for w in response["warnings"]), response["warnings"]


@pytest.mark.parametrize("body", [
    b"\x00\xffnot json",
    b"[]",
    b"{}",
    json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"object": {}}}).encode(),
    json.dumps(admission({"kind": "Service"}, kind="Service")).encode(),
    json.dumps(admission("a pod")).encode(),  # type: ignore[arg-type]
    json.dumps({**admission(engine_pod()), "request": {**admission(engine_pod())["request"],
                                                        "object": {**engine_pod(), "spec": []}}}).encode(),
    json.dumps(admission(engine_pod(containers=[{"name": "x", "image": "y", "volumeMounts": "nope"}]))).encode(),
    b'{"request": {"uid": "u", "object": {"metadata": {"annotations": "' + b"x" * (5 * 1024 * 1024) + b'"}}}}',
])  # fmt: skip
def test_a_malformed_review_is_allowed_with_a_warning_never_an_error(webhook, body: bytes) -> None:
    response = send(webhook, body)
    assert response["allowed"] is True and "patch" not in response
    assert response["warnings"] and all(w.startswith("aibrix") and len(w) <= 256 for w in response["warnings"])


def test_a_deployment_annotated_as_upstream_annotates_it_gets_its_template_injected(webhook) -> None:
    template = engine_pod()
    annotations = template["metadata"].pop("annotations")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama-3", "namespace": "default", "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"model.aibrix.ai/name": "llama-3"}},
            "template": {"metadata": {"labels": template["metadata"]["labels"]}, "spec": template["spec"]},
        },
    }
    mutated, _ = mutate(webhook, deployment, kind="Deployment", group="apps")
    kubernetes_validate.validate(mutated, KUBERNETES, strict=True)
    spec = mutated["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["vllm", "aibrix-runtime"]
    again, response = mutate(webhook, mutated, kind="Deployment", group="apps", operation="UPDATE")
    assert again == mutated and "patch" not in response  # applying the manifest again changes nothing


def handshake(url: str, ca: Path) -> str:
    """The subject alternative names of the certificate the server presents, verified against ``ca``."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert()
    return ",".join(value for _, value in cert["subjectAltName"])


def test_a_rotated_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    first, second = make_ca(tmp_path / "ca1"), make_ca(tmp_path / "ca2")
    issue(first, tmp_path / "one", dns=("one.test",))
    issue(second, tmp_path / "two", dns=("two.test",))
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    kube = FakeKube(tmp_path)
    proc, url = serve(kube, mounted)  # no certificate yet: handshakes fail, the controller runs
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            handshake(url, first)
        kubelet_mount(mounted, tmp_path / "one", "v1")
        assert handshake(url, first).startswith("one.test")
        kubelet_mount(mounted, tmp_path / "two", "v2")
        assert handshake(url, second).startswith("two.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(url, first)
        issue(first, tmp_path / "mismatched", dns=("three.test",))  # a certificate whose key is not the one beside it
        (tmp_path / "mismatched" / "tls.key").write_bytes((tmp_path / "two" / "tls.key").read_bytes())
        kubelet_mount(mounted, tmp_path / "mismatched", "v3")
        assert handshake(url, second).startswith("two.test")  # the last good pair keeps serving
        assert proc.popen.poll() is None
    finally:
        proc.stop()
        kube.stop()
    log = proc.output()
    assert "not loaded" in log and "-----BEGIN" not in log


@pytest.mark.parametrize(
    "labels, ports, listen, endpoint",
    [({"model.aibrix.ai/port": "8080"}, [], "8081", "http://localhost:8080"),  # declared nowhere but the label
     ({}, [{"containerPort": 8080}], "8081", "http://localhost:8080"),
     ({"model.aibrix.ai/port": "8080"}, [{"containerPort": 8081}], "8082", "http://localhost:8080"),
     ({}, [], "8080", "http://localhost:8000")],
)  # fmt: skip
def test_the_sidecar_never_listens_where_the_engine_does(labels, ports, listen, endpoint) -> None:
    from aibrix.controller.injection import plan_injection

    spec = {"containers": [{"name": "engine", "image": "vllm/vllm-openai", "ports": ports}]}
    plan = plan_injection(spec, labels, {}, "aibrix/runtime:test", "/spec")
    sidecar = plan.patch[-1]["value"]
    assert sidecar["command"][-1] == listen and env(sidecar)["INFERENCE_ENGINE_ENDPOINT"] == endpoint


@pytest.mark.parametrize(
    "requests, limits, guaranteed",
    [({"cpu": "1000m", "memory": "1Gi"}, {"cpu": "1", "memory": "1024Mi"}, True),
     ({"cpu": "0.5", "memory": "1073741824"}, {"cpu": "500m", "memory": "1Gi"}, True),
     ({"cpu": "1", "memory": "1G"}, {"cpu": "1", "memory": "1Gi"}, False),  # 10^9 is not 2^30
     ({"cpu": "999m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}, False)],
)  # fmt: skip
def test_a_guaranteed_pod_is_recognised_whatever_the_spelling_of_its_quantities(requests, limits, guaranteed) -> None:
    from aibrix.controller.injection import GUARANTEED, plan_injection

    resources = {"requests": requests, "limits": limits}
    spec = {"containers": [{"name": "engine", "image": "vllm/vllm-openai", "resources": resources}]}
    sidecar = plan_injection(spec, {}, {}, "aibrix/runtime:test", "/spec").patch[-1]["value"]
    assert (sidecar["resources"] == {"requests": GUARANTEED, "limits": GUARANTEED}) is guaranteed


def test_a_client_that_never_finishes_its_request_is_cut_off_and_connections_are_bounded(tmp_path: Path) -> None:
    """The webhook shares the controller's process: half a header must not hold a connection for ever, and
    connections beyond the bound get 503 rather than memory."""
    import time

    ca = make_ca(tmp_path / "ca")
    issue(ca, tmp_path / "serving")
    port = free_port()
    kube = FakeKube(tmp_path)
    proc = kube.start_controller(
        "--webhook-bind-address",
        f"{HOST}:{port}",
        "--webhook-cert-dir",
        str(tmp_path / "serving"),
        "--leader-elect=false",
        "--webhook-read-timeout",
        "1",
        "--webhook-max-connections",
        "3",
    )
    context = ssl.create_default_context(cafile=str(ca))
    try:
        url = f"https://{HOST}:{port}"
        first = send((url, context), admission(engine_pod()))  # serving
        assert first["allowed"] is True

        def connect() -> ssl.SSLSocket:
            raw = socket.create_connection((HOST, port), timeout=10)
            return context.wrap_socket(raw, server_hostname=HOST)

        slow = connect()
        slow.sendall(b"POST /mutate-v1-pod HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n")  # half a header
        started = time.monotonic()
        assert slow.recv(1) == b""  # closed by the server ...
        assert time.monotonic() - started < 4  # ... after its read timeout
        body_slow = connect()
        body_slow.sendall(b"POST /mutate-v1-pod HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")  # half a body
        assert body_slow.recv(1) == b""
        held = [connect() for _ in range(3)]
        for sock in held:
            sock.sendall(b"POST /mutate-v1-pod HTTP/1.1\r\nHost: x\r\n")
        extra = connect()
        extra.sendall(b"GET /mutate-v1-pod HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(100).startswith(b"HTTP/1.1 503")
        for sock in (slow, body_slow, extra, *held):
            sock.close()
    finally:
        proc.stop()
        kube.stop()


@pytest.mark.parametrize(
    ("engine", "args", "rank", "slots", "annotations"),
    [
        ("vllm", ["--enable-lora"], "16", "1", {}),  # vLLM's defaults (config/lora.py)
        ("vllm", ["--enable-lora", "--max-lora-rank", "64", "--max-loras=4"], "64", "4", {}),
        ("vllm", ["--max-loras", "4", "--max-cpu-loras", "12"], "16", "12", {}),  # the CPU cache holds more
        ("sglang", ["--enable-lora", "--max-lora-rank=32", "--max-loaded-loras", "8"], "32", "8", {}),
        ("sglang", ["--enable-lora"], None, None, {}),  # SGLang has no default to rely on
        ("vllm", ["--max-lora-rank", "64"], "8", "30", {RANK: "8", SLOTS: "30"}),  # the pod's annotations win
        ("sglang", ["--enable-lora"], "128", None, {RANK: "128", SLOTS: "none"}),  # a value that is no number: none
    ],
)
def test_the_runtime_learns_the_engines_limits_from_its_arguments(
    engine: str, args: list, rank, slots, annotations: dict
) -> None:
    from aibrix.controller.injection import plan_injection
    from aibrix.controller.pods import pod_from_object

    spec = {"containers": [{"name": "engine", "image": "e", "command": ["python3", "-m", "serve"], "args": args}]}
    labels = {"model.aibrix.ai/engine": engine, "model.aibrix.ai/metric-port": "9400"}
    sidecar = plan_injection(spec, labels, annotations, "aibrix/runtime:test", "/spec").patch[-1]["value"]
    found = env(sidecar)
    assert (found.get("AIBRIX_ENGINE_MAX_LORA_RANK"), found.get("AIBRIX_ENGINE_MAX_ADAPTERS")) == (rank, slots)
    assert found["INFERENCE_ENGINE_METRICS_ENDPOINT"] == "http://localhost:9400"
    pod = pod_from_object({"metadata": {"labels": labels, "annotations": annotations}, "spec": spec})
    as_text = (str(pod.limits.max_rank) if pod.limits.max_rank else None, pod.limits.max_adapters)
    declared = slots if slots and args != ["--enable-lora"] else None  # vLLM's default slot is no placement cap
    assert as_text == (rank, int(declared) if declared else None)  # placement reads the same limits
