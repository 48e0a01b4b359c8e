"""The manifests under deploy/ fit together: the CRD accepts the samples, the controller takes its own args,
RBAC stays least-privilege, and the sample base model's pods are ones the controller will place adapters on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aibrix.controller.cli import parser
from aibrix.controller.pods import pod_from_object
from aibrix.controller.spec import parse_spec
from tests.helpers.kube import ADAPTERS, FakeKube

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def documents(pattern: str = "**/*.yaml") -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.glob(pattern)):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc.get("kind") == kind]


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKube]:
    server = FakeKube(tmp_path_factory.mktemp("kube"))
    yield server
    server.stop()


@pytest.mark.parametrize("adapter", of_kind("ModelAdapter"), ids=lambda doc: doc["metadata"]["name"])
def test_every_sample_adapter_is_accepted_and_understood(kube: FakeKube, adapter: dict[str, Any]) -> None:
    response = kube.http.post(ADAPTERS.format(ns="default"), json=adapter)
    assert response.status_code == 201, response.text
    spec = parse_spec(response.json())
    assert spec.name == adapter["metadata"]["name"]


def test_controller_deployment_args_are_accepted() -> None:
    (deployment,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "aibrix-controller-manager"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = parser().parse_args(container["args"])
    assert args.enable_runtime_sidecar is True and args.leader_elect is True
    assert args.health_probe_bind_address == ("0.0.0.0", 8081)
    probe_ports = {container["livenessProbe"]["httpGet"]["port"], container["readinessProbe"]["httpGet"]["port"]}
    assert probe_ports == {8081}
    assert parser().parse_args(["--enable-runtime-sidecar=false"]).enable_runtime_sidecar is False


def test_rbac_is_least_privilege() -> None:
    (role,) = of_kind("ClusterRole")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"]  # never list or watch every secret in the cluster
        assert "delete" not in rule["verbs"]  # owned objects go with their ModelAdapter (garbage collection)
    (lease_role,) = of_kind("Role")
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]


def test_sample_base_model_pods_host_the_sample_adapters() -> None:
    (deployment,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "qwen-coder-1-5b-instruct"]
    template = deployment["spec"]["template"]
    pod = pod_from_object(
        {
            "metadata": {"name": "p", **template["metadata"]},
            "spec": template["spec"],
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            },
        }
    )
    assert (pod.engine_port, pod.runtime_port, pod.engine) == (8000, 8080, "vllm")
    assert pod.eligible(now=1e10, stability=5)
    for adapter in of_kind("ModelAdapter"):
        assert parse_spec({**adapter, "metadata": {**adapter["metadata"]}}).selector.matches(pod.labels)
