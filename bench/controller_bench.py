"""The ModelAdapter controller at scale, against the fake Kubernetes API or a real kube-apiserver, with real pods
(runtime + engine simulator).

    python bench/controller_bench.py [--pods 20] [--adapters 200] [--mode sidecar|direct]
    AIBRIX_KUBE_BIN=$(scripts/build_kube.sh | tail -1) scripts/in_netns.sh \
        .venv/bin/python bench/controller_bench.py --api real     # the real control plane of scripts/build_kube.sh

1. Time from creating N ModelAdapters (least-adapters; replicas: 1, or omitted with --every-pod) until all are
   Running on as many pods as they want.
2. Controller CPU per adapter for a resync with nothing to do (utime+stime of the controller process over several
   resync periods, divided by the reconciles it counted).
3. Failover: delete the pod holding the most adapters; time until every one of them is Running on another pod.
Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.helpers.kube import ADAPTERS, FakeKube  # noqa: E402
from tests.helpers.procs import HOST, Proc, start_runtime, start_sim  # noqa: E402
from tests.helpers.real_kube import ControlPlane, RealKube, pod_ip  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def counter(proc: Proc, series: str) -> float:
    for line in httpx.get(proc.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def adapters(kube: FakeKube) -> list[dict]:
    return kube.items(ADAPTERS.format(ns="default"))


def api_requests(kube: FakeKube) -> float:
    """Requests the API server has served: the fake counts them; a real one says so in apiserver_request_total
    (writes only: its own controllers and the controller's watches read all the time)."""
    if not isinstance(kube, RealKube):
        return httpx.get(kube.url + "/stats").json()["requests"]
    total = 0.0
    for line in kube.http.get("/metrics").text.splitlines():
        writes = ('verb="CREATE"', 'verb="PATCH"', 'verb="UPDATE"')
        if line.startswith("apiserver_request_total{") and any(verb in line for verb in writes):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_all(kube: FakeKube, check, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(check(a) for a in adapters(kube)):
            return time.monotonic() - started
        time.sleep(0.05)
    left = [a for a in adapters(kube) if not check(a)]
    phases = Counter((a.get("status") or {}).get("phase") for a in left)
    print(f"not done within {timeout}s: {len(left)} adapters, by phase {dict(phases)}; their Ready conditions:")
    reasons = Counter(_ready(a) for a in left)  # kept before the bench tears the cluster down
    for (reason, message), count in reasons.most_common(10):
        print(f"  {count} x {reason}: {message[:300]}")
    raise TimeoutError(f"not done within {timeout}s: {dict(phases)}")


def _ready(adapter: dict) -> tuple[str, str]:
    conditions = (adapter.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    return str(ready.get("reason", "-")), str(ready.get("message", ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--adapters", type=int, default=200)
    parser.add_argument("--mode", choices=["sidecar", "direct"], default="sidecar")
    parser.add_argument("--every-pod", action="store_true", help="omit replicas: every adapter on every pod")
    parser.add_argument("--resync", type=float, default=2.0)
    parser.add_argument("--resync-rounds", type=int, default=5)
    parser.add_argument("--api", choices=["fake", "real"], default="fake")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="controller-bench-"))
    folder = work / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8}')
    plane = ControlPlane(work / "kube") if args.api == "real" else None
    kube: FakeKube = RealKube(plane) if plane is not None else FakeKube(work)
    host = pod_ip() if plane is not None else HOST
    procs: list[Proc] = []
    try:
        for i in range(args.pods):
            sim = start_sim("vllm", "--lora-load-ms", "5", host=host)
            procs.append(sim)
            runtime = start_runtime("vllm", sim.url, host=host) if args.mode == "sidecar" else None
            if runtime:
                procs.append(runtime)
            kube.add_pod(f"base-{i:02d}", runtime=runtime, engine=sim)
        controller = kube.start_controller(
            *("--resync-seconds", str(args.resync)),
            *("--enable-runtime-sidecar", "true" if args.mode == "sidecar" else "false"),
        )
        time.sleep(0.5)

        started, cpu_start = time.monotonic(), cpu_seconds(controller.popen.pid)
        http = kube.http
        for i in range(args.adapters):
            body = {
                "apiVersion": "model.aibrix.ai/v1alpha1",
                "kind": "ModelAdapter",
                "metadata": {"name": f"lora-{i:03d}"},
                "spec": {
                    "baseModel": "base-model",
                    "schedulerName": "least-adapters",
                    "podSelector": {"matchLabels": {"model.aibrix.ai/name": "base-model"}},
                    "artifactURL": str(folder),
                    **({} if args.every_pod else {"replicas": 1}),
                },
            }
            assert http.post(ADAPTERS.format(ns="default"), json=body).status_code == 201
        created = time.monotonic() - started
        want = args.pods if args.every_pod else 1
        running = wait_all(kube, lambda a: (a.get("status") or {}).get("readyReplicas") == want, 120) + created
        cpu_create = cpu_seconds(controller.popen.pid) - cpu_start
        spread = Counter(pod for a in adapters(kube) for pod in a["status"]["instances"])
        rss = rss_mb(controller.popen.pid)

        time.sleep(args.resync * 1.5)  # let the first checks of every pod settle
        cpu0, n0 = (
            cpu_seconds(controller.popen.pid),
            counter(controller, 'aibrix_controller_reconciles_total{result="ok"}'),
        )
        writes0 = api_requests(kube)
        time.sleep(args.resync * args.resync_rounds)
        cpu1, n1 = (
            cpu_seconds(controller.popen.pid),
            counter(controller, 'aibrix_controller_reconciles_total{result="ok"}'),
        )
        writes1 = api_requests(kube)
        per_adapter_ms = (cpu1 - cpu0) / max(1.0, n1 - n0) * 1000

        busiest = spread.most_common(1)[0][0]
        moved = [a["metadata"]["name"] for a in adapters(kube) if busiest in a["status"]["instances"]]
        kube.delete(f"/api/v1/namespaces/default/pods/{busiest}")
        want = args.pods - 1 if args.every_pod else 1

        def settled(a: dict) -> bool:
            status = a.get("status") or {}
            if a["metadata"]["name"] not in moved:
                return True
            return (
                status.get("phase") == "Running"
                and busiest not in status["instances"]
                and status["readyReplicas"] == want
            )

        failover = wait_all(kube, settled, 30)
    except Exception:
        controller_log = work / "controller.log"
        for proc in procs:
            proc.stop()
        controller_log.write_text(procs[-1].output(10**7))
        print(f"controller output in {controller_log}", file=sys.stderr)
        raise
    finally:
        for proc in reversed(procs):
            proc.stop()
        kube.stop()
        if plane is not None:
            plane.stop()

    layout = "every adapter on every pod" if args.every_pod else "replicas: 1"
    print(f"### Controller: {args.adapters} ModelAdapters over {args.pods} pods ({args.mode} mode, {layout}, "
          f"{args.api} API server)\n")  # fmt: skip
    print("| measure | result | target |")
    print("|---|---|---|")
    print(
        f"| create → all Running | {running:.2f} s (creating took {created:.2f} s; controller CPU "
        f"{cpu_create:.2f} s) | ≤ 30 s |"
    )
    print(f"| adapters per pod (least-adapters) | min {min(spread.values())}, max {max(spread.values())} | even |")
    print(
        f"| resync with nothing to do, controller CPU | {per_adapter_ms:.3f} ms per adapter "
        f"({n1 - n0:.0f} reconciles, {writes1 - writes0} API requests) | < 1 ms |"
    )
    print(f"| controller RSS with {args.adapters} adapters | {rss:.1f} MB | |")
    what = "dropped from" if args.every_pod else "moved off"
    print(f"| {len(moved)} adapters {what} a deleted pod ({busiest}), all Running | {failover:.2f} s | ≤ 10 s |")


if __name__ == "__main__":
    main()
