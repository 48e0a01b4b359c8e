"""The fake Kubernetes API behaves like the real one where the controller relies on it: every claim is checked
against both the fake and a real kube-apiserver (tests/helpers/real_kube.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.kube import ADAPTERS, FakeKube
from tests.helpers.real_kube import RealKube

PODS = "/api/v1/namespaces/default/pods"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
SERVICES = "/api/v1/namespaces/default/services"


@pytest.fixture(scope="module", params=["fake", "real"])
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKube]:
    if request.param == "real":
        real = RealKube(request.getfixturevalue("control_plane"))
        real.plane.reset()
        yield real
        real.stop()
        return
    server = FakeKube(tmp_path_factory.mktemp("kube"))
    yield server
    server.stop()


def pod(name: str, labels: dict[str, str] | None = None, **meta: object) -> dict:
    """A pod the real server accepts (one container with an image); no kubelet ever runs it."""
    containers = [{"name": "engine", "image": "registry.invalid/engine"}]
    return {"metadata": {"name": name, "labels": labels or {}, **meta}, "spec": {"containers": containers}}


def test_stale_resource_version_is_a_conflict(kube: FakeKube) -> None:
    lease = kube.create(LEASES, {"metadata": {"name": "l1"}, "spec": {"holderIdentity": "a"}})
    fresh = {**lease, "spec": {"holderIdentity": "b"}}
    assert kube.http.put(f"{LEASES}/l1", json=fresh).status_code == 200
    stale = {**lease, "spec": {"holderIdentity": "c"}}  # still carries the first resourceVersion
    response = kube.http.put(f"{LEASES}/l1", json=stale)
    assert response.status_code == 409 and response.json()["reason"] == "Conflict"
    assert kube.get(f"{LEASES}/l1")["spec"]["holderIdentity"] == "b"  # type: ignore[index]


def test_json_patch_test_operation_guards_a_write(kube: FakeKube) -> None:
    created = kube.create(PODS, pod("jp", {"a": "1"}))
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/x"]},
    ]
    headers = {"content-type": "application/json-patch+json"}
    assert kube.http.patch(f"{PODS}/jp", json=ops, headers=headers).status_code == 422
    ops[0]["value"] = created["metadata"]["resourceVersion"]
    patched = kube.http.patch(f"{PODS}/jp", json=ops, headers=headers).json()
    assert patched["metadata"]["finalizers"] == ["example.com/x"]


def test_finalizers_hold_deletion_until_removed(kube: FakeKube) -> None:
    kube.create(PODS, pod("fin", finalizers=["example.com/keep"]))
    assert kube.delete(f"{PODS}/fin").status_code == 200
    held = kube.get(f"{PODS}/fin")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    merge = {"content-type": "application/merge-patch+json"}
    kube.http.patch(f"{PODS}/fin", json={"metadata": {"finalizers": None}}, headers=merge).raise_for_status()
    kube.wait_gone(f"{PODS}/fin", timeout=10)


def test_status_subresource_is_separate_from_the_object(kube: FakeKube) -> None:
    kube.add_adapter("st", artifactURL="s3://bucket/a")
    path = ADAPTERS.format(ns="default") + "/st"
    kube.patch_status(path, {"phase": "Running"})
    merge = {"content-type": "application/merge-patch+json"}
    body = {"spec": {"artifactURL": "s3://bucket/b"}, "status": {"phase": "Failed"}}
    updated = kube.http.patch(path, json=body, headers=merge).json()
    assert updated["spec"]["artifactURL"] == "s3://bucket/b" and updated["status"] == {"phase": "Running"}


def test_label_selectors(kube: FakeKube) -> None:
    for name, labels in [("s1", {"app": "x", "tier": "a"}), ("s2", {"app": "x"}), ("s3", {"app": "y"})]:
        kube.create(PODS, pod(name, {"group": "sel", **labels}))

    def names(selector: str) -> list[str]:
        return [p["metadata"]["name"] for p in kube.items(PODS, labelSelector=f"group=sel,{selector}")]

    assert names("app=x") == ["s1", "s2"]
    assert names("app in (x,y),!tier") == ["s2", "s3"]
    assert names("app!=x") == ["s3"]
    assert names("tier") == ["s1"]


def test_watch_resumes_from_a_resource_version(kube: FakeKube) -> None:
    start = kube.http.get(PODS).json()["metadata"]["resourceVersion"]
    kube.create(PODS, pod("w1", {"watch": "me"}))
    kube.delete(f"{PODS}/w1")
    params = {"watch": "true", "resourceVersion": start, "labelSelector": "watch=me", "timeoutSeconds": "1"}
    with kube.http.stream("GET", PODS, params=params) as stream:
        events = [json.loads(line)["type"] for line in stream.iter_lines()]
    assert events == ["ADDED", "MODIFIED", "DELETED"]  # a pod is marked deleted first (graceful deletion)


def test_owner_references_are_garbage_collected(kube: FakeKube, tmp_path: Path) -> None:
    owner = kube.create(PODS, pod("owner"))
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": owner["metadata"]["uid"]}
    service = {
        "metadata": {"name": "owned", "ownerReferences": [ref]},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 8000}]},
    }
    kube.create(SERVICES, service)
    kube.delete(f"{PODS}/owner")
    kube.wait_gone(f"{SERVICES}/owned", timeout=20)  # the real garbage collector works in the background
