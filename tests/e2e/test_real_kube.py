"""The controller and its manifests against a real kube-apiserver (with etcd and kube-controller-manager), driven
with a real kubectl: schema and CEL rules enforced by the server, printer columns, describe, wait, server-side
dry runs, garbage collection of owned objects, and the controller holding only deploy/rbac.yaml's permissions."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.kube import ADAPTERS, fast_flags, phase, running
from tests.helpers.procs import Proc, start_runtime, start_sim
from tests.helpers.real_kube import CONTROLLER_USER, ControlPlane, RealKube, pod_ip

FAST = fast_flags()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kube(control_plane: ControlPlane) -> Iterator[RealKube]:
    control_plane.reset()
    real = RealKube(control_plane)
    yield real
    real.stop()


@pytest.fixture
def pod(kube: RealKube, tmp_path: Path) -> Iterator[tuple[Proc, Proc]]:
    sim = start_sim("vllm", host=pod_ip())
    runtime = start_runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters")}, host=pod_ip())
    kube.add_pod("base-0", runtime=runtime, engine=sim)
    yield sim, runtime
    runtime.stop()
    sim.stop()


def test_the_control_plane_starts_quickly_and_kubectl_sees_the_crd(control_plane: ControlPlane) -> None:
    assert control_plane.started_seconds < 60, control_plane.started_seconds
    resources = control_plane.kubectl("api-resources", "--api-group", "model.aibrix.ai").stdout
    assert "modeladapters" in resources
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ({"artifactURL": "ftp://somewhere/lora"}, "spec.artifactURL"),
        ({"replicas": 0}, "spec.replicas"),
        ({"podSelector": {}}, "podSelector"),
        ({"schedulerName": "random"}, "spec.schedulerName"),
    ],
)
def test_the_server_refuses_what_the_crd_schema_forbids(kube: RealKube, spec: dict, complaint: str) -> None:
    body = {
        "apiVersion": "model.aibrix.ai/v1alpha1",
        "kind": "ModelAdapter",
        "metadata": {"name": "bad"},
        "spec": {"baseModel": "m", "podSelector": {"matchLabels": {"a": "b"}}, "artifactURL": "s3://b/k", **spec},
    }
    response = kube.http.post(ADAPTERS.format(ns="default"), json=body)
    assert response.status_code == 422, response.text
    assert complaint in response.json()["message"]


def test_a_name_a_service_cannot_take_is_refused_by_the_cel_rule(kube: RealKube) -> None:
    spec = {"baseModel": "m", "podSelector": {"matchLabels": {"a": "b"}}, "artifactURL": "s3://b/k"}
    body = {
        "apiVersion": "model.aibrix.ai/v1alpha1",
        "kind": "ModelAdapter",
        "metadata": {"name": "9-lives.x"},
        "spec": spec,
    }
    response = kube.http.post(ADAPTERS.format(ns="default"), json=body)
    assert response.status_code == 422, response.text


def test_kubectl_explain_describes_every_field_and_a_refusal_names_its_field(kube: RealKube, tmp_path: Path) -> None:
    """kubectl explain shows a description for the spec and each of its fields; kubectl apply of a bad name says
    which field is wrong (it used to print an empty "<nil>:" cause)."""
    explained = kube.plane.kubectl("explain", "modeladapter.spec").stdout
    assert "DESCRIPTION:" in explained and "Which adapter to serve" in explained
    for field in ("artifactURL", "artifactDigest", "podSelector", "replicas", "schedulerName", "credentialsSecretRef"):
        assert field in explained
        block = kube.plane.kubectl("explain", f"modeladapter.spec.{field}").stdout
        assert "<empty>" not in block.split("DESCRIPTION:", 1)[1].split("FIELDS:", 1)[0], block
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: model.aibrix.ai/v1alpha1\nkind: ModelAdapter\nmetadata: {name: 9-lives}\n"
        "spec: {podSelector: {matchLabels: {a: b}}, artifactURL: s3://b/k}\n"
    )
    refused = kube.plane.kubectl("apply", "-f", str(bad), check=False)
    assert refused.returncode != 0 and "<nil>" not in refused.stderr, refused.stderr
    assert "metadata.name" in refused.stderr and "DNS-1035 label" in refused.stderr, refused.stderr


def test_kubectl_get_wide_describe_and_wait(kube: RealKube, pod: tuple[Proc, Proc], adapter_dir: Path) -> None:
    controller = kube.start_controller(*FAST)
    try:
        kube.add_adapter("lora-a", artifactURL=str(adapter_dir), replicas=1)
        waited = kube.plane.kubectl(
            "wait", "--for=jsonpath={.status.phase}=Running", "modeladapter/lora-a", "--timeout=60s", check=False
        )
        assert waited.returncode == 0, waited.stderr + controller.output()
        wide = kube.plane.kubectl("get", "modeladapters", "-o", "wide").stdout.splitlines()
        header = wide[0].split()
        for column in ("NAME", "PHASE", "READY", "DESIRED", "AGE"):
            assert column in header, wide[0]
        row = dict(zip(header, wide[1].split(), strict=False))
        assert (row["NAME"], row["PHASE"]) == ("lora-a", "Running")
        described = kube.plane.kubectl("describe", "modeladapter", "lora-a").stdout
        assert "Conditions:" in described or "Conditions" in described
        assert "Scheduled" in described and "Loaded" in described  # the events
    finally:
        controller.stop()


def test_owned_service_and_slice_are_garbage_collected(
    kube: RealKube, pod: tuple[Proc, Proc], adapter_dir: Path
) -> None:
    controller = kube.start_controller(*FAST)
    try:
        kube.add_adapter("lora-gc", artifactURL=str(adapter_dir), replicas=1)
        obj = kube.wait_adapter("lora-gc", running, timeout=60)
        assert kube.get("/api/v1/namespaces/default/services/lora-gc") is not None
        kube.delete(ADAPTERS.format(ns="default") + "/lora-gc")
        kube.wait_gone(ADAPTERS.format(ns="default") + "/lora-gc", timeout=30)
        kube.wait_gone("/api/v1/namespaces/default/services/lora-gc", timeout=30)
        kube.wait_gone("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/lora-gc", timeout=30)
        assert obj["metadata"]["uid"]
    finally:
        controller.stop()


def test_kubectl_apply_k_deploy_with_a_server_dry_run_first(control_plane: ControlPlane) -> None:
    dry = control_plane.kubectl("apply", "-k", str(ROOT / "deploy"), "--dry-run=server")
    assert "deployment.apps/aibrix-controller-manager" in dry.stdout or "(server dry run)" in dry.stdout
    assert control_plane.kubectl("get", "deployment", "-n", "aibrix-system", check=False).stdout.strip() == ""
    control_plane.kubectl("apply", "-k", str(ROOT / "deploy"))
    deployments = control_plane.kubectl("get", "deployments", "-n", "aibrix-system", "-o", "name").stdout
    assert "aibrix-controller-manager" in deployments
    control_plane.kubectl("delete", "deployment", "-n", "aibrix-system", "--all")
    control_plane.kubectl("delete", "-f", str(ROOT / "deploy" / "webhook.yaml"))


@pytest.mark.parametrize(
    "verb, resource, allowed",
    [
        ("watch", "modeladapters.model.aibrix.ai", "yes"),
        ("patch", "modeladapters.model.aibrix.ai/status", "yes"),
        ("create", "services", "yes"),
        ("get", "secrets", "yes"),
        ("list", "secrets", "no"),
        ("delete", "pods", "no"),
        ("delete", "services", "no"),
    ],
)
def test_the_controller_holds_exactly_what_rbac_yaml_grants(
    control_plane: ControlPlane, verb: str, resource: str, allowed: str
) -> None:
    answer = control_plane.kubectl("auth", "can-i", verb, resource, "--as", CONTROLLER_USER, check=False)
    assert answer.stdout.strip() == allowed, answer.stdout + answer.stderr


def test_phase_is_written_by_the_controller_running_with_rbac_yaml(kube: RealKube, pod, adapter_dir: Path) -> None:
    controller = kube.start_controller(*FAST)
    try:
        kube.add_adapter("lora-rbac", artifactURL=str(adapter_dir), replicas=1)
        try:
            obj = kube.wait_adapter("lora-rbac", running, timeout=20)
        except AssertionError:
            print(controller.output(20000))
            raise
        assert obj["status"]["instances"] == ["base-0"]
        assert phase(obj) == "Running"
        assert "forbidden" not in controller.output().lower(), controller.output()
    finally:
        controller.stop()


def test_the_controller_rides_out_an_api_server_restart(kube: RealKube, pod, adapter_dir: Path) -> None:
    """Informers reconnect to the restarted server and carry on from what etcd kept."""
    controller = kube.start_controller(*FAST, "--leader-elect=false")
    try:
        kube.add_adapter("before", artifactURL=str(adapter_dir), replicas=1)
        kube.wait_adapter("before", running, timeout=30)
        kube.plane.stop_apiserver()
        time.sleep(1)
        kube.plane.start_apiserver_again()
        kube.http = kube.plane.http
        assert phase(kube.adapter("before") or {}) == "Running"  # etcd kept it
        kube.add_adapter("after", artifactURL=str(adapter_dir), replicas=1)
        kube.wait_adapter("after", running, timeout=30)
        assert controller.popen.poll() is None
    finally:
        controller.stop()


def test_a_leader_that_cannot_renew_its_real_lease_stops_acting(kube: RealKube) -> None:
    controller = kube.start_controller(
        *FAST, "--lease-duration", "2", "--renew-deadline", "1.5", "--retry-period", "0.3"
    )
    try:
        lease = "/apis/coordination.k8s.io/v1/namespaces/aibrix-system/leases/aibrix-controller-manager"
        deadline = time.monotonic() + 15
        while kube.get(lease) is None:
            assert time.monotonic() < deadline, controller.output()
            time.sleep(0.1)
        kube.plane.stop_apiserver()
        try:
            code = controller.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 1, controller.output(40000)  # no two leaders: it exits and the kubelet restarts it
        assert "leadership lost" in controller.output()
    finally:
        controller.stop()
        if kube.plane.apiserver.popen.poll() is not None:
            kube.plane.start_apiserver_again()
            kube.http = kube.plane.http
