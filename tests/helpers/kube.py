"""Test helpers around the fake Kubernetes API: start it, write a kubeconfig, make pods and adapters."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.procs import HOST, Proc, free_port

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "deploy" / "crd.yaml"
ADAPTERS = "/apis/model.aibrix.ai/v1alpha1/namespaces/{ns}/modeladapters"


def stamp(seconds_ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def fast_flags(unload: str = "1", deletion: str = "3") -> tuple[str, ...]:
    """Controller timings that keep a scenario to seconds: short backoff, stability and resync, and these unload and
    deletion timeouts."""
    timings = ("--retry-base-seconds", "0.2", "--stability-seconds", "1", "--resync-seconds", "1")
    return (*timings, "--unload-timeout", unload, "--deletion-timeout", deletion)


class FakeKube:
    """The fake API server as a child process, with a REST client and a kubeconfig pointing at it."""

    lease_namespace = "default"  # where the controllers started by start_controller keep their lease

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        port = port or free_port()
        self.proc = Proc(
            [sys.executable, "-m", "tests.helpers.fake_kube", "--port", str(port), "--crd", str(CRD)],
            port,
            env={"PYTHONPATH": str(ROOT)},
        )
        self.proc.wait_http("/stats")
        self.url = self.proc.url
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
            f"clusters:\n- name: fake\n  cluster:\n    server: {self.url}\n"
            "users:\n- name: fake\n  user: {}\n"
            "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n"
        )

    def stop(self) -> None:
        self.http.close()
        self.proc.stop()

    def start_controller(self, *args: str) -> Proc:
        """``aibrix_controller`` against this API server; probes and metrics on a free loopback port."""
        port = free_port()
        argv = [
            sys.executable,
            *(["-m", "cProfile", "-o", os.environ["AIBRIX_PROFILE"]] if os.environ.get("AIBRIX_PROFILE") else []),
            "-m",
            "aibrix.controller.cli",
            "--kubeconfig",
            str(self.kubeconfig),
            "--health-probe-bind-address",
            f"127.0.0.1:{port}",
            "--metrics-bind-address",
            "0",
            "--leader-election-namespace",
            "default",
            *args,
        ]
        override = os.environ.get("AIBRIX_CONTROLLER_PYTHONPATH")
        proc = Proc(argv, port, env={"PYTHONPATH": override} if override else None)
        proc.wait_http("/healthz")
        return proc

    # --- REST ---------------------------------------------------------------------------------------------------

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=obj)
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, path: str) -> dict[str, Any] | None:
        response = self.http.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()["items"]

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(path)

    def patch_status(self, path: str, status: dict[str, Any]) -> None:
        response = self.http.patch(
            path + "/status", json={"status": status}, headers={"content-type": "application/merge-patch+json"}
        )
        response.raise_for_status()

    # --- objects ------------------------------------------------------------------------------------------------

    def add_pod(
        self,
        name: str,
        *,
        runtime: Proc | None = None,
        engine: Proc | None = None,
        labels: dict[str, str] | None = None,
        ready_for: float = 60.0,
        engine_name: str = "vllm",
        namespace: str = "default",
        args: list[str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A Running, Ready pod whose engine (and runtime sidecar, if given) are real processes on 127.0.0.1;
        ``args`` are its engine container's (the controller reads the engine's limits from them)."""
        engine_port = engine.port if engine else free_port()
        containers: list[dict[str, Any]] = [
            {"name": "vllm-openai", "image": "vllm/vllm-openai", "ports": [{"containerPort": engine_port}]}
        ]
        if args:
            containers[0]["args"] = args
        if runtime is not None:
            containers.append(
                {
                    "name": "aibrix-runtime",
                    "image": "aibrix/runtime",
                    "ports": [{"containerPort": runtime.port, "protocol": "TCP"}],
                }
            )
        pod_labels = {
            "model.aibrix.ai/name": "base-model",
            "adapter.model.aibrix.ai/enabled": "true",
            "model.aibrix.ai/port": str(engine_port),
            "model.aibrix.ai/engine": engine_name,
            **(labels or {}),
        }
        self.create(
            f"/api/v1/namespaces/{namespace}/pods",
            {
                "metadata": {"name": name, "labels": pod_labels, "annotations": annotations or {}},
                "spec": {"containers": containers},
            },
        )
        self.set_ready(name, True, since=ready_for, namespace=namespace)
        return self.get(f"/api/v1/namespaces/{namespace}/pods/{name}") or {}

    def set_ready(self, name: str, ready: bool, *, since: float = 0.0, namespace: str = "default") -> None:
        condition = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": stamp(since)}
        self.patch_status(
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            {"phase": "Running", "podIP": HOST, "conditions": [condition]},
        )

    def add_adapter(self, name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "model.aibrix.ai/v1alpha1",
            "kind": "ModelAdapter",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "baseModel": "base-model",
                "podSelector": {"matchLabels": {"model.aibrix.ai/name": "base-model"}},
                "artifactURL": "/models/lora",
                **spec,
            },
        }
        return self.create(ADAPTERS.format(ns=namespace), body)

    def patch_adapter(self, name: str, patch: dict[str, Any], namespace: str = "default") -> None:
        """A merge patch of the ModelAdapter, as ``kubectl patch --type merge`` sends it."""
        merge = {"content-type": "application/merge-patch+json"}
        self.http.patch(ADAPTERS.format(ns=namespace) + f"/{name}", json=patch, headers=merge).raise_for_status()

    def adapter(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.get(ADAPTERS.format(ns=namespace) + f"/{name}")

    def wait_adapter(
        self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 20.0, namespace: str = "default"
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            obj = self.adapter(name, namespace)
            if obj is not None and check(obj):
                return obj
            time.sleep(0.05)
        raise AssertionError(f"adapter {name} did not reach the expected state in {timeout}s: {obj}")

    def adapters_version(self, namespace: str = "default") -> str:
        """The resourceVersion of the ModelAdapter list now: ``phases_since`` replays the changes after it."""
        return str(self.http.get(ADAPTERS.format(ns=namespace)).json()["metadata"]["resourceVersion"])

    def phases_since(self, version: str, name: str, namespace: str = "default") -> list[str]:
        """Each phase the adapter ``name`` showed after ``version``, in order, repeats folded (a watch that replays
        the changes since then and ends after a second of quiet)."""
        seen: list[str] = []
        params = {"watch": "true", "resourceVersion": version, "timeoutSeconds": "1"}
        with self.http.stream("GET", ADAPTERS.format(ns=namespace), params=params) as stream:
            for line in stream.iter_lines():
                obj = json.loads(line)["object"]
                current = phase(obj)
                if obj["metadata"]["name"] == name and current and (not seen or seen[-1] != current):
                    seen.append(current)
        return seen

    def wait_event(self, adapter: str, reason: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first Event with ``reason`` about the ModelAdapter ``adapter`` (default namespace)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.items("/api/v1/namespaces/default/events"):
                if (event["involvedObject"]["name"], event["reason"]) == (adapter, reason):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no {reason} event about {adapter} within {timeout}s")

    def wait_gone(self, path: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get(path) is None:
                return
            time.sleep(0.05)
        raise AssertionError(f"{path} still exists after {timeout}s: {self.get(path)}")


def status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def phase(obj: dict[str, Any]) -> str | None:
    return status(obj).get("phase")


def running(obj: dict[str, Any]) -> bool:
    return phase(obj) == "Running"
