"""The fake Kubernetes API behaves like the real one where the controller relies on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube import FakeKube

PODS = "/api/v1/namespaces/default/pods"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKube]:
    server = FakeKube(tmp_path_factory.mktemp("kube"))
    yield server
    server.stop()


def test_stale_resource_version_is_a_conflict(kube: FakeKube) -> None:
    lease = kube.create(LEASES, {"metadata": {"name": "l1"}, "spec": {"holderIdentity": "a"}})
    fresh = {**lease, "spec": {"holderIdentity": "b"}}
    assert kube.http.put(f"{LEASES}/l1", json=fresh).status_code == 200
    stale = {**lease, "spec": {"holderIdentity": "c"}}  # still carries the first resourceVersion
    response = kube.http.put(f"{LEASES}/l1", json=stale)
    assert response.status_code == 409 and response.json()["reason"] == "Conflict"
    assert kube.get(f"{LEASES}/l1")["spec"]["holderIdentity"] == "b"  # type: ignore[index]


def test_json_patch_test_operation_guards_a_write(kube: FakeKube) -> None:
    pod = kube.create(PODS, {"metadata": {"name": "jp", "labels": {"a": "1"}}, "spec": {}})
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    headers = {"content-type": "application/json-patch+json"}
    assert kube.http.patch(f"{PODS}/jp", json=ops, headers=headers).status_code == 422
    ops[0]["value"] = pod["metadata"]["resourceVersion"]
    assert kube.http.patch(f"{PODS}/jp", json=ops, headers=headers).json()["metadata"]["finalizers"] == ["x"]


def test_finalizers_hold_deletion_until_removed(kube: FakeKube) -> None:
    kube.create(PODS, {"metadata": {"name": "fin", "finalizers": ["keep"]}, "spec": {}})
    assert kube.delete(f"{PODS}/fin").status_code == 200
    held = kube.get(f"{PODS}/fin")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    merge = {"content-type": "application/merge-patch+json"}
    kube.http.patch(f"{PODS}/fin", json={"metadata": {"finalizers": None}}, headers=merge).raise_for_status()
    assert kube.get(f"{PODS}/fin") is None


def test_status_subresource_is_separate_from_the_object(kube: FakeKube) -> None:
    kube.create(PODS, {"metadata": {"name": "st"}, "spec": {"a": 1}})
    kube.patch_status(f"{PODS}/st", {"phase": "Running"})
    merge = {"content-type": "application/merge-patch+json"}
    body = {"spec": {"a": 2}, "status": {"phase": "Failed"}}
    updated = kube.http.patch(f"{PODS}/st", json=body, headers=merge).json()
    assert updated["spec"] == {"a": 2} and updated["status"] == {"phase": "Running"}


def test_label_selectors(kube: FakeKube) -> None:
    for name, labels in [("s1", {"app": "x", "tier": "a"}), ("s2", {"app": "x"}), ("s3", {"app": "y"})]:
        kube.create(PODS, {"metadata": {"name": name, "labels": {"group": "sel", **labels}}, "spec": {}})

    def names(selector: str) -> list[str]:
        return [p["metadata"]["name"] for p in kube.items(PODS, labelSelector=f"group=sel,{selector}")]

    assert names("app=x") == ["s1", "s2"]
    assert names("app in (x,y),!tier") == ["s2", "s3"]
    assert names("app!=x") == ["s3"]
    assert names("tier") == ["s1"]


def test_watch_resumes_from_a_resource_version(kube: FakeKube) -> None:
    start = kube.http.get(PODS).json()["metadata"]["resourceVersion"]
    kube.create(PODS, {"metadata": {"name": "w1", "labels": {"watch": "me"}}, "spec": {}})
    kube.delete(f"{PODS}/w1")
    params = {"watch": "true", "resourceVersion": start, "labelSelector": "watch=me", "timeoutSeconds": "1"}
    with kube.http.stream("GET", PODS, params=params) as stream:
        events = [json.loads(line)["type"] for line in stream.iter_lines()]
    assert events == ["ADDED", "DELETED"]


def test_owner_references_are_garbage_collected(kube: FakeKube, tmp_path: Path) -> None:
    owner = kube.create(PODS, {"metadata": {"name": "owner"}, "spec": {}})
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": owner["metadata"]["uid"]}
    kube.create("/api/v1/namespaces/default/services", {"metadata": {"name": "owned", "ownerReferences": [ref]}})
    kube.delete(f"{PODS}/owner")
    assert kube.get("/api/v1/namespaces/default/services/owned") is None
