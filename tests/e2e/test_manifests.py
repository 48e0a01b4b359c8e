"""deploy/ checked by tools nobody here wrote: `kubectl kustomize` renders it, Kubernetes' published OpenAPI schemas
(kubernetes-validate, for the version the suite's API server runs) accept every rendered object strictly, and the
real kube-apiserver accepts it with --dry-run=server and for real, the samples included."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helpers.real_kube import ControlPlane, kube_bin

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = "1.36.0"  # the minor version scripts/build_kube.sh builds (v1.36.3)


def rendered(folder: Path = DEPLOY) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(kube_bin() / "kubectl"), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_kustomize_renders_every_object_of_the_listed_files() -> None:
    files = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    expected = sorted(
        (d["kind"], d["metadata"]["name"]) for f in files for d in yaml.safe_load_all((DEPLOY / f).read_text()) if d
    )
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered()) == expected


def test_every_rendered_object_matches_the_published_schemas_strictly() -> None:
    objects = rendered()
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    deployment = copy.deepcopy(next(o for o in objects if o["kind"] == "Deployment"))
    deployment["spec"]["replica"] = 1  # a typo the server would drop silently; the schema check must not
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_real_api_server_takes_the_manifests_and_the_samples(control_plane: ControlPlane) -> None:
    dry = control_plane.kubectl("apply", "--dry-run=server", "-k", str(DEPLOY))
    assert "(server dry run)" in dry.stdout
    try:
        control_plane.kubectl("apply", "-k", str(DEPLOY))
        shown = control_plane.kubectl(
            "get",
            "deployment",
            "aibrix-controller-manager",
            "-n",
            "aibrix-system",
            "-o",
            "jsonpath={.spec.template.spec.serviceAccountName}",
        )
        assert shown.stdout == "aibrix-controller-manager"
        for sample in sorted((DEPLOY / "samples").glob("*.yaml")):
            result = control_plane.kubectl("apply", "--dry-run=server", "-f", str(sample))
            assert "(server dry run)" in result.stdout, (sample.name, result.stdout)
    finally:  # the CRD and RBAC stay (the session's other tests use them); the Deployment and webhook go
        for name in ("controller.yaml", "webhook.yaml"):
            control_plane.kubectl("delete", "-f", str(DEPLOY / name), "--ignore-not-found", "--wait=false", check=False)


def test_the_webhooks_certificate_service_and_mount_agree() -> None:
    extra = rendered(DEPLOY / "cert-manager")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in extra) == [
        ("Certificate", "aibrix-webhook-cert"),
        ("Issuer", "aibrix-selfsigned"),
    ]
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered() + extra}
    certificate = objects[("Certificate", "aibrix-webhook-cert")]
    service = objects[("Service", "aibrix-webhook")]
    webhook = objects[("MutatingWebhookConfiguration", "aibrix-sidecar-injection")]
    deployment = objects[("Deployment", "aibrix-controller-manager")]
    namespace = service["metadata"]["namespace"]
    assert f"{service['metadata']['name']}.{namespace}.svc" in certificate["spec"]["dnsNames"]
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{namespace}/aibrix-webhook-cert"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-certs"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--webhook-bind-address=:{ports[service['spec']['ports'][0]['targetPort']]}" in container["args"]
    for hook in webhook["webhooks"]:
        assert hook["clientConfig"]["service"]["name"] == service["metadata"]["name"]
        assert hook["failurePolicy"] == "Ignore"


def test_the_network_policy_admits_only_the_api_server_to_the_webhook(control_plane: ControlPlane) -> None:
    objects = rendered(DEPLOY / "network-policy")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("NetworkPolicy", "aibrix-controller-manager")]
    policy = objects[0]
    kubernetes_validate.validate(policy, KUBERNETES, strict=True)
    controller = next(o for o in rendered() if o["kind"] == "Deployment")
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= controller["spec"]["template"]["metadata"]["labels"].items()
    )
    webhook = [rule for rule in policy["spec"]["ingress"] if {"port": 9443, "protocol": "TCP"} in rule["ports"]]
    assert len(webhook) == 1 and [list(peer) for peer in webhook[0]["from"]] == [["ipBlock"]]
    dry = control_plane.kubectl("apply", "--dry-run=server", "-k", str(DEPLOY / "network-policy"))
    assert "(server dry run)" in dry.stdout
