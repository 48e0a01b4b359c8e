"""The sidecar injection webhook registered on the real kube-apiserver exactly as deploy/ ships it (certificate from
scripts/webhook-certs.sh), a pod created through the API server coming back injected, and that pod then run (engine
simulator plus the runtime with the injected command and environment) and given an adapter by the controller."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import httpx
import yaml

from tests.helpers.kube import running
from tests.helpers.procs import Proc, free_port, start_sim
from tests.helpers.real_kube import ControlPlane, RealKube, pod_ip
from tests.helpers.webhooks import install_certificate, route_service

ROOT = Path(__file__).resolve().parents[2]
FAST = ("--retry-base-seconds", "0.2", "--stability-seconds", "1", "--resync-seconds", "1")
WEBHOOK = "aibrix-sidecar-injection"


def test_a_pod_created_through_the_api_server_is_injected_and_then_loads_an_adapter(
    control_plane: ControlPlane, tmp_path: Path, adapter_dir: Path
) -> None:
    control_plane.reset()
    kube = RealKube(control_plane)
    plane = control_plane
    started: list[Proc] = []
    try:
        plane.kubectl("apply", "-k", str(ROOT / "deploy"))
        output, bundle = install_certificate(plane, tmp_path / "certs")
        assert "(2 webhooks)" in output
        config = plane.http.get(f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK}")
        assert [w["clientConfig"]["caBundle"] for w in config.json()["webhooks"]] == [bundle, bundle]
        port = free_port()
        started.append(
            kube.start_controller(
                "--webhook-bind-address", f"{pod_ip()}:{port}", "--webhook-cert-dir", str(tmp_path / "certs"), *FAST
            )
        )
        route_service(plane, "aibrix-webhook-test", port)

        engine_port = free_port()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "vllm-llama3",
                "namespace": "default",
                "labels": {
                    "model.aibrix.ai/name": "base-model",
                    "adapter.model.aibrix.ai/enabled": "true",
                    "model.aibrix.ai/port": str(engine_port),
                },
                "annotations": {"model.aibrix.ai/sidecar-injection": "true"},
            },
            "spec": {
                "containers": [
                    {"name": "vllm", "image": "vllm/vllm-openai:latest", "ports": [{"containerPort": engine_port}]}
                ]
            },
        }
        # the namespace's runtime key: the injected sidecar takes it, and the controller sends it to this pod only
        plane.kubectl(
            "create", "secret", "generic", "aibrix-runtime-key", "-n", "default", "--from-literal=api-key=ns-key-5150"
        )
        created = plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod))
        assert "Warning" not in created.stderr, created.stderr
        stored = plane.http.get("/api/v1/namespaces/default/pods/vllm-llama3").json()
        containers = {c["name"]: c for c in stored["spec"]["containers"]}
        assert list(containers) == ["vllm", "aibrix-runtime"]
        assert {"name": "adapter-storage", "emptyDir": {}} in stored["spec"]["volumes"]
        for c in containers.values():
            assert {"name": "adapter-storage", "mountPath": "/tmp/aibrix/adapters"} in c["volumeMounts"]
        runtime = containers["aibrix-runtime"]
        assert runtime["image"] == "aibrix/runtime:0.1.0"
        odd = {**pod, "metadata": {**pod["metadata"], "name": "odd", "labels": {"model.aibrix.ai/engine": "ollama"}}}
        refused = plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(odd))  # the user sees why, the pod is made
        assert "Warning: aibrix sidecar not injected: model.aibrix.ai/engine='ollama'" in refused.stderr
        assert "pod/odd created" in refused.stdout

        # Run the pod: the engine on its port, the runtime as injected. The pod's own address stands in for
        # localhost (a pod's containers share it); the adapter-storage volume is a folder.
        sim = start_sim("vllm", port=engine_port, host=pod_ip())
        started.append(sim)
        env = {e["name"]: kubelet_value(plane, e).replace("localhost", pod_ip()) for e in runtime["env"]}
        assert env["AIBRIX_RUNTIME_API_KEY"] == "ns-key-5150"
        env["AIBRIX_ADAPTER_DIR"] = str(tmp_path / "adapter-storage")
        command = [str(Path(sys.executable).parent / runtime["command"][0]), *runtime["command"][1:]]
        listen = runtime["ports"][0]["containerPort"]
        proc = Proc([*command, "--host", pod_ip()], listen, env, pod_ip())
        started.append(proc)
        proc.wait_http(runtime["readinessProbe"]["httpGet"]["path"])
        kube.set_ready("vllm-llama3", True, since=5)

        kube.add_adapter("sql-lora", artifactURL=str(adapter_dir), replicas=1)
        obj = kube.wait_adapter("sql-lora", running, timeout=60)
        assert obj["status"]["instances"] == ["vllm-llama3"]
        cards = httpx.get(sim.url + "/v1/models", timeout=5).json()["data"]
        assert "sql-lora" in {card["id"] for card in cards}
        metrics = httpx.get(proc.url + "/metrics", timeout=5).text  # loaded through the injected runtime
        assert 'aibrix:runtime_adapter_operations_total{operation="load",outcome="ok"} 1' in metrics
        assert httpx.get(proc.url + "/v1/lora_adapter", timeout=5).status_code == 401  # the key is required
    finally:
        for proc in reversed(started):
            proc.stop()
        plane.kubectl("delete", "mutatingwebhookconfiguration", WEBHOOK, "--ignore-not-found", check=False)
        plane.kubectl("delete", "-n", "default", "secret", "aibrix-runtime-key", "--ignore-not-found", check=False)
        plane.kubectl(
            "delete",
            "-n",
            "aibrix-system",
            "endpointslice",
            "aibrix-webhook-test",
            "secret",
            "aibrix-webhook-cert",
            "--ignore-not-found",
            check=False,
        )
        plane.kubectl(
            "delete", "-f", str(ROOT / "deploy" / "controller.yaml"), "--ignore-not-found", "--wait=false", check=False
        )
        kube.stop()


def kubelet_value(plane: ControlPlane, entry: dict) -> str:
    """An env entry's value as the kubelet gives it: literal, or read from the Secret it references."""
    if "value" in entry:
        return str(entry["value"])
    ref = entry["valueFrom"]["secretKeyRef"]
    secret = plane.http.get(f"/api/v1/namespaces/default/secrets/{ref['name']}").json()
    return base64.b64decode(secret["data"][ref["key"]]).decode()
