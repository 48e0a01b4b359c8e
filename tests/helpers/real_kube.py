"""A real Kubernetes control plane for the controller's tests: etcd, kube-apiserver and kube-controller-manager built
from public Go modules by scripts/build_kube.sh, started on loopback with temporary state, RBAC on.

No kubelet runs: pods are objects whose status (podIP on 127.0.0.1, the Ready condition) the test sets through the
pods/status subresource; the engine and runtime behind each pod are real processes, as with the fake API server.
The tests reach the API as an administrator (a static token in system:masters); the controller runs as the
ServiceAccount of deploy/rbac.yaml, so it has exactly the permissions that file grants.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.helpers.kube import CRD, ROOT, FakeKube
from tests.helpers.procs import HOST, Proc, free_port
from tests.helpers.services import require

ADMIN_TOKEN = "aibrix-test-admin-token"
CONTROLLER_TOKEN = "aibrix-test-controller-token"
CONTROLLER_USER = "system:serviceaccount:aibrix-system:aibrix-controller-manager"
CLEANED = [
    "/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters",
    "/api/v1/namespaces/default/pods",
    "/api/v1/namespaces/default/services",
    "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
    "/api/v1/namespaces/default/secrets",
    "/api/v1/namespaces/default/events",
    "/apis/coordination.k8s.io/v1/namespaces/aibrix-system/leases",
]


def pod_ip() -> str:
    """The address pods get: EndpointSlices refuse loopback ones, so scripts/in_netns.sh puts this one on the
    loopback interface of the suite's own network namespace (it exists nowhere else)."""
    address = os.environ.get("AIBRIX_POD_IP", "")
    require(bool(address), "a pod address (AIBRIX_POD_IP; scripts/test.sh runs the suite through scripts/in_netns.sh)")
    return address


def kube_bin() -> Path:
    folder = os.environ.get("AIBRIX_KUBE_BIN", "")
    require(bool(folder) and (Path(folder) / "kube-apiserver").exists(), "kube-apiserver (scripts/build_kube.sh)")
    return Path(folder)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, for a whole test session."""

    def __init__(self, workdir: Path) -> None:
        self.bin = kube_bin()
        self.workdir = workdir
        self.procs: list[Proc] = []
        started = time.monotonic()
        self._credentials()
        self._start_etcd()
        self._start_apiserver()
        self.admin = self._kubeconfig("admin", ADMIN_TOKEN)
        self.controller = self._kubeconfig("controller", CONTROLLER_TOKEN)
        self.http = self._wait_ready()
        self._start_controller_manager()
        self.kubectl("apply", "-f", str(CRD))
        self.kubectl("apply", "-f", str(ROOT / "deploy" / "rbac.yaml"))
        self.kubectl("wait", "--for=condition=Established", "crd/modeladapters.model.aibrix.ai", "--timeout=30s")
        self.started_seconds = time.monotonic() - started

    def _credentials(self) -> None:
        (self.workdir / "certs").mkdir(parents=True)
        key = self.workdir / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.workdir / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (self.workdir / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n'
            f'{CONTROLLER_TOKEN},{CONTROLLER_USER},controller-uid,"system:serviceaccounts,system:authenticated"\n'
        )

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://{HOST}:{client}"
        self.procs.append(
            Proc(
                [
                    str(self.bin / "etcd"),
                    "--data-dir",
                    str(self.workdir / "etcd"),
                    "--listen-client-urls",
                    self.etcd_url,
                    "--advertise-client-urls",
                    self.etcd_url,
                    "--listen-peer-urls",
                    f"http://{HOST}:{peer}",
                    "--initial-advertise-peer-urls",
                    f"http://{HOST}:{peer}",
                    "--initial-cluster",
                    f"default=http://{HOST}:{peer}",
                    "--log-level",
                    "error",
                ],
                client,
            )
        )
        self.procs[-1].wait_http("/health", timeout=30)

    def _start_apiserver(self, port: int | None = None) -> None:
        port = port or free_port()
        self.url = f"https://{HOST}:{port}"
        argv = [
            str(self.bin / "kube-apiserver"),
            "--etcd-servers",
            self.etcd_url,
            "--bind-address",
            HOST,
            "--advertise-address",
            HOST,
            "--secure-port",
            str(port),
            "--cert-dir",
            str(self.workdir / "certs"),
            "--token-auth-file",
            str(self.workdir / "tokens.csv"),
            "--authorization-mode",
            "RBAC",
            "--service-cluster-ip-range",
            "10.96.0.0/24",
            "--service-account-issuer",
            "https://kubernetes.default.svc",
            "--service-account-key-file",
            str(self.workdir / "sa.pub"),
            "--service-account-signing-key-file",
            str(self.workdir / "sa.key"),
            "--disable-admission-plugins",
            "ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--enable-aggregator-routing=true",  # webhooks reached through EndpointSlices: no cluster IPs here
            "--v",
            "0",
        ]
        proc = Proc(argv, port)
        self.procs.append(proc)
        self.apiserver = proc
        self.ca = self.workdir / "certs" / "apiserver.crt"

    def _wait_ready(self, timeout: float = 60) -> httpx.Client:
        """An admin client once the server is ready and has made the default namespace (its serving certificate,
        self-signed on start, is the CA the clients trust)."""
        deadline = time.monotonic() + timeout
        client: httpx.Client | None = None
        while time.monotonic() < deadline:
            if self.apiserver.popen.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited: {self.apiserver.output()}")
            if client is None and self.ca.exists():
                client = httpx.Client(
                    base_url=self.url,
                    verify=ssl.create_default_context(cafile=str(self.ca)),
                    timeout=30,
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
            try:
                if client is not None and client.get("/readyz").status_code == 200:
                    if client.get("/api/v1/namespaces/default").status_code == 200:
                        return client
            except (httpx.TransportError, OSError, ssl.SSLError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready in {timeout}s: {self.apiserver.output()}")

    def _start_controller_manager(self) -> None:
        port = free_port()
        self.procs.append(
            Proc(
                [
                    str(self.bin / "kube-controller-manager"),
                    "--kubeconfig",
                    str(self.admin),
                    "--controllers",
                    "garbagecollector,namespace",
                    "--leader-elect=false",
                    "--bind-address",
                    HOST,
                    "--secure-port",
                    str(port),
                    "--use-service-account-credentials=false",
                    "--v",
                    "0",
                ],
                port,
            )
        )

    def _kubeconfig(self, name: str, token: str) -> Path:
        path = self.workdir / f"{name}.kubeconfig"
        cluster = {"server": self.url, "certificate-authority": str(self.ca)}
        context = {"cluster": "test", "user": name, "namespace": "default"}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": name,
            "clusters": [{"name": "test", "cluster": cluster}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": context}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def stop_apiserver(self) -> None:
        self.apiserver.stop()
        self.procs.remove(self.apiserver)

    def start_apiserver_again(self) -> None:
        """The same server on the same port over the same etcd: everything it held is still there."""
        self._start_apiserver(self.apiserver.port)
        self.http.close()
        self.http = self._wait_ready()

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(self.admin), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def reset(self) -> None:
        """Leave the default namespace empty for the next test: finalizers removed, every object deleted."""
        for path in CLEANED:
            for obj in self.http.get(path).json().get("items", []):
                if obj["metadata"].get("finalizers"):
                    self.http.patch(
                        f"{path}/{obj['metadata']['name']}",
                        json={"metadata": {"finalizers": None}},
                        headers={"content-type": "application/merge-patch+json"},
                    )
            self.http.delete(path, params={"gracePeriodSeconds": "0"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(self.http.get(p).json().get("items") for p in CLEANED[:4]):
            time.sleep(0.1)

    def stop(self) -> None:
        self.http.close()
        for proc in reversed(self.procs):
            proc.stop()


class RealKube(FakeKube):
    """FakeKube's helpers (objects, waits, the controller process) against the real control plane."""

    lease_namespace = "aibrix-system"  # deploy/rbac.yaml grants lease verbs there only

    def __init__(self, plane: ControlPlane) -> None:  # noqa: D107 - no fake server to start
        self.plane = plane
        self.url = plane.url
        self.http = plane.http
        self.kubeconfig = plane.controller

    def start_controller(self, *args: str) -> Proc:
        return super().start_controller(*args, "--leader-election-namespace", "aibrix-system")

    def set_ready(self, name: str, ready: bool, *, since: float = 0.0, namespace: str = "default") -> None:
        super().set_ready(name, ready, since=since, namespace=namespace)
        self.patch_status(
            f"/api/v1/namespaces/{namespace}/pods/{name}", {"podIP": pod_ip(), "podIPs": [{"ip": pod_ip()}]}
        )

    def stop(self) -> None:
        self.plane.reset()

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/pods"):  # the real API wants an image on every container, which the fake does not
            for container in obj.get("spec", {}).get("containers", []):
                container.setdefault("image", "registry.invalid/none")
        return super().create(path, obj)
