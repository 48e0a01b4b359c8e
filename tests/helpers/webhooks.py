"""What the webhook tests and bench/webhook_bench.py share: AdmissionReview requests as the API server sends them,
and the webhook wired into a real control plane (certificate from scripts/webhook-certs.sh, Service endpoints)."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.helpers.real_kube import ControlPlane, pod_ip

ROOT = Path(__file__).resolve().parents[2]


def admission(obj: Any, kind: str = "Pod", group: str = "", operation: str = "CREATE") -> dict[str, Any]:
    resource = {"Pod": "pods", "Deployment": "deployments"}.get(kind, kind.lower() + "s")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": obj,
            "dryRun": False,
        },
    }


def install_certificate(plane: ControlPlane, folder: Path) -> tuple[str, str]:
    """scripts/webhook-certs.sh run against ``plane`` (the webhook configuration applied already), and its Secret
    written to ``folder`` as the kubelet mounts it; returns the script's output and the CA it made (base64)."""
    kubectl = f"{plane.bin / 'kubectl'} --kubeconfig {plane.admin}"
    script = subprocess.run(
        [str(ROOT / "scripts" / "webhook-certs.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECTL": kubectl},
    )
    assert script.returncode == 0, script.stderr
    secret = plane.http.get("/api/v1/namespaces/aibrix-system/secrets/aibrix-webhook-cert").json()
    assert secret["type"] == "kubernetes.io/tls"
    folder.mkdir()
    for name in ("tls.crt", "tls.key"):
        (folder / name).write_bytes(base64.b64decode(secret["data"][name]))
    return script.stdout, secret["data"]["ca.crt"]


def route_service(plane: ControlPlane, name: str, port: int) -> None:
    """What the EndpointSlice controller writes for the controller's pod (no kubelet runs here to make one): the
    aibrix-webhook Service's `webhook` port at ``port`` on the pod address."""
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "aibrix-webhook"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [pod_ip()], "conditions": {"ready": True}}],
        "ports": [{"name": "webhook", "port": port, "protocol": "TCP"}],
    }
    response = plane.http.post("/apis/discovery.k8s.io/v1/namespaces/aibrix-system/endpointslices", json=body)
    assert response.status_code == 201, response.text
