"""What the sidecar injection webhook costs: every pod creation in the cluster passes through it.

    python bench/webhook_bench.py [--reviews 2000]                       # reviews straight to the webhook
    AIBRIX_KUBE_BIN=$(scripts/build_kube.sh | tail -1) scripts/in_netns.sh \
        .venv/bin/python bench/webhook_bench.py --api real [--pods 200]  # pod creation through kube-apiserver

1. Reviews sent to the controller's webhook over one keep-alive TLS connection (an injected pod and an unannotated
   one): latency p50/p99 and reviews/s; then 8 clients at once.
2. With --api real: creating pods through the real kube-apiserver, without the webhook registered and with it
   (deploy/webhook.yaml, its certificate from scripts/webhook-certs.sh): the p50/p99 the webhook adds per pod.
Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.helpers.kube import FakeKube  # noqa: E402
from tests.helpers.procs import HOST, free_port  # noqa: E402
from tests.helpers.tls import issue, make_ca  # noqa: E402
from tests.helpers.webhooks import admission, install_certificate, route_service  # noqa: E402

ANNOTATED = {"metadata": {"name": "p", "annotations": {"model.aibrix.ai/sidecar-injection": "true"},
                          "labels": {"model.aibrix.ai/name": "m"}},
             "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai",
                                      "ports": [{"containerPort": 8000}]}]}}  # fmt: skip
PLAIN = {"metadata": {"name": "q"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


def review(obj: dict) -> bytes:
    return json.dumps(admission(obj)).encode()


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def direct(url: str, ca: Path, count: int) -> list[str]:
    context = ssl.create_default_context(cafile=str(ca))
    rows = []
    for name, obj in (("annotated pod (patched)", ANNOTATED), ("unannotated pod (no patch)", PLAIN)):
        body = review(obj)
        with httpx.Client(verify=context, timeout=10) as client:
            for _ in range(50):
                client.post(url + "/mutate-v1-pod", content=body)
            samples = []
            for _ in range(count):
                started = time.perf_counter()
                response = client.post(url + "/mutate-v1-pod", content=body)
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200
        p50, p99 = quantiles(samples)
        rows.append(f"| {name}, 1 client | {p50:.2f} | {p99:.2f} | {count / sum(samples):.0f} |")

    def worker(_: int) -> list[float]:
        body, out = review(ANNOTATED), []
        with httpx.Client(verify=context, timeout=10) as client:
            for _ in range(count // 8):
                started = time.perf_counter()
                client.post(url + "/mutate-v1-pod", content=body)
                out.append(time.perf_counter() - started)
        return out

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        samples = [s for chunk in pool.map(worker, range(8)) for s in chunk]
    wall = time.perf_counter() - started
    p50, p99 = quantiles(samples)
    rows.append(f"| annotated pod, 8 clients | {p50:.2f} | {p99:.2f} | {len(samples) / wall:.0f} |")
    return rows


def through_api(pods: int) -> list[str]:
    from tests.helpers.real_kube import ControlPlane, RealKube, pod_ip

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plane = ControlPlane(Path(tmp) / "plane")
        try:
            kube = RealKube(plane)
            rows.append(create_pods(plane, pods, "without the webhook"))
            plane.kubectl("apply", "-f", str(ROOT / "deploy" / "webhook.yaml"))
            install_certificate(plane, Path(tmp) / "certs")
            port = free_port()
            controller = kube.start_controller("--webhook-bind-address", f"{pod_ip()}:{port}",
                                               "--webhook-cert-dir", str(Path(tmp) / "certs"))  # fmt: skip
            route_service(plane, "bench", port)
            rows.append(create_pods(plane, pods, "with the webhook (annotated: injected)"))
            controller.stop()
        finally:
            plane.stop()
    return rows


def create_pods(plane, pods: int, label: str) -> str:  # type: ignore[no-untyped-def]
    samples = []
    for index in range(pods):
        obj = json.loads(json.dumps(ANNOTATED))
        obj["metadata"]["name"] = f"bench-{label[:4].strip()}-{index}"
        started = time.perf_counter()
        response = plane.http.post("/api/v1/namespaces/default/pods", json=obj)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
        injected = any(c["name"] == "aibrix-runtime" for c in response.json()["spec"]["containers"])
        assert injected == ("with" in label and "without" not in label), label
    plane.http.delete("/api/v1/namespaces/default/pods", params={"gracePeriodSeconds": "0"})
    p50, p99 = quantiles(samples)
    return f"| pod creation {label} | {p50:.2f} | {p99:.2f} | {pods / sum(samples):.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=2000)
    parser.add_argument("--api", choices=["none", "real"], default="none")
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    print("| what | p50 ms | p99 ms | per second |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        ca = make_ca(Path(tmp) / "ca")
        issue(ca, Path(tmp) / "certs")
        kube = FakeKube(Path(tmp))
        port = free_port()
        controller = kube.start_controller("--webhook-bind-address", f"{HOST}:{port}",
                                           "--webhook-cert-dir", str(Path(tmp) / "certs"))  # fmt: skip
        try:
            for row in direct(f"https://{HOST}:{port}", ca, args.reviews):
                print(row, flush=True)
        finally:
            controller.stop()
            kube.stop()
    if args.api == "real":
        for row in through_api(args.pods):
            print(row, flush=True)


if __name__ == "__main__":
    main()
