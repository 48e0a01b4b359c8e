"""Placement on a fleet of mixed capacity (issue 23), through the controller, with real pods (runtime + simulator).

    scripts/in_netns.sh .venv/bin/python bench/placement_bench.py [--pods 50] [--adapters 1000] [--api fake|real]

Pods get a rank limit of 8, 16 or 64 (their engine's --max-lora-rank, and the simulator enforces it) and 20-40
declared adapter slots (the annotation adapter.model.aibrix.ai/max-adapters). Adapters have ranks 8, 16 or 64 and
replicas 1-3; each gets a Zipf-skewed demand weight (s = 1.1; ``--skew``). The ModelAdapters are created concurrently.
For each placement policy given, in one run:

- constraint violations: an instance on a pod whose rank limit is below the adapter's, or a pod holding more adapters
  than its slots;
- time from the first create until every placeable adapter is Running with all the replicas it can get;
- peak pod demand over mean pod demand (an adapter's weight is split evenly over its instances), after a phase of
  Zipf-weighted completions sent to the pods holding each adapter (the ``balanced`` policy estimates demand from the
  engines' metrics during it and moves adapters); beside it, peak over the floor no placement can go below (the
  mean, or one adapter's weight over its replicas when larger);
- adapters moved when a pod joins, and when one leaves, against the minimum that must move (those on the leaving
  pod; none when one joins);
- failover: time until the adapters of the deleted pod are Running elsewhere.
Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import random
import shlex
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from controller_bench import adapters  # noqa: E402
from tests.helpers.kube import ADAPTERS, FakeKube  # noqa: E402
from tests.helpers.procs import HOST, Proc, start_runtime, start_sim  # noqa: E402
from tests.helpers.real_kube import ControlPlane, RealKube, pod_ip  # noqa: E402

from aibrix.engines.transport import HTTPClient, TransportError  # noqa: E402

RANKS = (8, 16, 64)
SLOTS = "adapter.model.aibrix.ai/max-adapters"


class Fleet:
    """The pods of one run: a simulator and a runtime each, with their limits."""

    def __init__(self, kube: FakeKube, host: str, seed: int, ttft_ms: float = 20.0) -> None:
        self.kube, self.host, self.ttft_ms = kube, host, ttft_ms
        self.random = random.Random(seed)
        self.limits: dict[str, tuple[int, int]] = {}  # pod -> (rank limit, slots)
        self.procs: dict[str, list[Proc]] = {}

    def add(self, name: str) -> None:
        rank, slots = self.random.choice(RANKS), self.random.randint(20, 40)
        sim = start_sim(
            "vllm", "--lora-load-ms", "5", "--max-lora-rank", str(rank), "--ttft-ms", str(self.ttft_ms), host=self.host
        )
        runtime = start_runtime("vllm", sim.url, host=self.host)
        args = ["--enable-lora", "--max-lora-rank", str(rank)]
        self.kube.add_pod(name, runtime=runtime, engine=sim, args=args, annotations={SLOTS: str(slots)})
        self.limits[name], self.procs[name] = (rank, slots), [sim, runtime]

    def remove(self, name: str) -> None:
        self.kube.delete(f"/api/v1/namespaces/default/pods/{name}")
        self.limits.pop(name)
        for proc in self.procs.pop(name):
            proc.stop()

    def stop(self) -> None:
        for procs in self.procs.values():
            for proc in procs:
                proc.stop()


def folders(work: Path) -> dict[int, str]:
    made = {}
    for rank in RANKS:
        folder = work / f"lora-r{rank}"
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
        (folder / "adapter_model.safetensors").write_bytes(b"w")
        made[rank] = str(folder)
    return made


def placement(kube: FakeKube) -> dict[str, list[str]]:
    return {a["metadata"]["name"]: list((a.get("status") or {}).get("instances") or []) for a in adapters(kube)}


def violations(places: dict[str, list[str]], ranks: dict[str, int], limits: dict[str, tuple[int, int]]) -> int:
    per_pod = Counter(pod for pods in places.values() for pod in pods)
    over_rank = sum(1 for name, pods in places.items() for pod in pods if ranks[name] > limits[pod][0])
    over_slots = sum(1 for pod, count in per_pod.items() if count > limits[pod][1])
    return over_rank + over_slots


def pod_demand(places: dict[str, list[str]], demand: dict[str, float], pods: list[str]) -> dict[str, float]:
    load = dict.fromkeys(pods, 0.0)
    for name, held in places.items():
        for pod in held:
            load[pod] += demand[name] / len(held)
    return load


def floor(places: dict[str, list[str]], demand: dict[str, float], pods: list[str]) -> float:
    """The lowest peak any placement of these instances reaches: the mean, or one instance's share when larger."""
    mean = sum(demand[name] for name, held in places.items() if held) / len(pods)
    return max([mean, *(demand[name] / len(held) for name, held in places.items() if held)])


def traffic(fleet: Fleet, kube: FakeKube, demand: dict[str, float], args: argparse.Namespace) -> int:
    """Completions for ``--traffic`` seconds from ``--workers`` concurrent clients: adapters drawn by weight, each
    request to one of the pods its status names now (re-read every two seconds, as a gateway follows the
    EndpointSlices), so traffic follows the moves."""
    return asyncio.run(_traffic(fleet, kube, demand, args))


def _table(places: dict[str, list[str]], demand: dict[str, float]) -> tuple[list[str], list[float]]:
    """The adapters with a pod and their cumulative weights: one draw is a bisection, not a pass over 1000."""
    names = [name for name, held in places.items() if held]
    return names, list(itertools.accumulate(demand[n] for n in names))


async def _traffic(fleet: Fleet, kube: FakeKube, demand: dict[str, float], args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.traffic
    urls = {pod: procs[0].url for pod, procs in fleet.procs.items()}
    places = placement(kube)
    current = (places, *_table(places, demand))
    # the project's own kept-alive HTTP/1.1 client: httpx spent about 1.3 ms of CPU per request, more than the
    # simulator answering it, and its pool capped the traffic near 100 requests a second on this machine
    clients = {url: HTTPClient(url, timeout=30, max_idle=args.workers) for url in urls.values()}

    async def refresh() -> None:
        nonlocal current
        while time.monotonic() < deadline:
            await asyncio.sleep(2.0)
            places = await asyncio.to_thread(placement, kube)
            current = (places, *_table(places, demand))

    async def worker(seed: int) -> int:
        rng, sent = random.Random(seed), 0
        while time.monotonic() < deadline:
            places, names, weights = current
            name = names[min(len(names) - 1, bisect.bisect(weights, rng.random() * weights[-1]))]
            url = urls.get(rng.choice(places[name]))
            if url is None:
                await asyncio.sleep(0.01)
                continue
            body = {"model": name, "prompt": "x", "max_tokens": args.max_tokens}
            try:
                sent += (await clients[url].request("POST", "/v1/completions", json=body)).status_code == 200
            except TransportError:
                await asyncio.sleep(0.01)  # a pod that left, or a kept-alive connection the server closed
        return sent

    updates = asyncio.create_task(refresh())
    try:
        sent = await asyncio.gather(*(worker(seed) for seed in range(args.workers)))
    finally:
        await updates
        await asyncio.gather(*(client.aclose() for client in clients.values()))
    return sum(sent)


def _done(status: dict, want: int) -> bool:
    """Holding its replicas, or fewer with a Scheduled shortfall said."""
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "Scheduled"), {})
    short = scheduled.get("status") == "False" and status.get("phase") in ("Running", "Pending")
    return (status.get("readyReplicas") or 0) >= want or short


def settled(kube: FakeKube, want: dict[str, int], timeout: float) -> float:
    """Seconds until every adapter holds what it can, followed on a watch: polling a list of 1000 adapters would
    load the API server more than the controller does."""
    started = time.monotonic()
    path = ADAPTERS.format(ns="default")
    listing = kube.http.get(path).json()
    statuses = {a["metadata"]["name"]: a.get("status") or {} for a in listing["items"]}
    done = {name for name, status in statuses.items() if _done(status, want[name])}
    version, progress, last, seconds = listing["metadata"]["resourceVersion"], [], 0.0, 0.0
    when: dict[str, float] = {}  # adapter -> seconds until it (last) became settled
    while len(done) < len(want) and time.monotonic() - started < timeout:
        params = {"watch": "true", "resourceVersion": version, "timeoutSeconds": "5"}
        with kube.http.stream("GET", path, params=params, timeout=30) as stream:
            for line in stream.iter_lines():
                event = json.loads(line)
                obj = event["object"]
                version = obj["metadata"].get("resourceVersion", version)
                name = obj["metadata"].get("name")
                if name in want:
                    statuses[name] = obj.get("status") or {}
                    if not _done(statuses[name], want[name]):
                        done.discard(name)
                    elif name not in done:
                        done.add(name)
                        when[name] = time.monotonic() - started
                if time.monotonic() - last >= 1:
                    last = time.monotonic()
                    progress.append(f"{last - started:.0f}s:{len(done)}")
                if len(done) == len(want):
                    seconds = time.monotonic() - started  # when the last event came
                    break
    if len(done) == len(want):
        closed = time.monotonic() - started - seconds
        said = f"settled {seconds:.1f}s after the creates were answered; the watch closed {closed:.1f}s later"
        print(said, file=sys.stderr)
        print("settled over time: " + " ".join(progress), file=sys.stderr)
        for name in sorted(when, key=when.__getitem__)[-5:]:
            status = statuses[name]
            reasons = {c.get("type"): c.get("reason") for c in status.get("conditions") or []}
            held = f"{status.get('readyReplicas') or 0}/{want[name]}"
            said = f"  settled last: {name} {when[name]:.1f}s after the creates, {held} replicas, {reasons}"
            print(said, file=sys.stderr)
        return seconds
    left = Counter()
    for name, status in statuses.items():
        if name not in done:
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "Scheduled"), {})
            left[
                (status.get("phase"), scheduled.get("reason"), ready.get("reason"), ready.get("message", "")[:160])
            ] += 1
    for what, count in left.most_common(8):
        print(f"  not settled: {count} x {what}", file=sys.stderr)
    raise TimeoutError(f"not settled within {timeout}s")


def _replaced(adapter: dict, gone: str, had: int) -> bool:
    """Off the pod that left and back to as many pods as before, or told why not (a Scheduled shortfall)."""
    status = adapter.get("status") or {}
    held = status.get("instances") or []
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "Scheduled"), {})
    return gone not in held and (len(held) >= had or scheduled.get("status") == "False")


def cpu_seconds(proc: Proc) -> float:
    """User and system CPU the process has used so far."""
    fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def cpu_use(controller: Proc, kube: FakeKube, plane: ControlPlane | None, fleet: Fleet) -> dict[str, float]:
    # etcd, kube-apiserver and kube-controller-manager, or the fake API server
    servers = {Path(p.popen.args[0]).name: p for p in plane.procs} if plane is not None else {"API server": kube.proc}
    return {
        "controller": cpu_seconds(controller),
        **{name: cpu_seconds(proc) for name, proc in servers.items()},
        "pods (engines, runtimes)": sum(cpu_seconds(p) for procs in fleet.procs.values() for p in procs),
        "bench": sum(os.times()[:2]),
    }


def real_requests(kube: FakeKube) -> dict[str, int]:
    """kube-apiserver's own count of the writes it served (apiserver_request_total), by verb and resource. Read with
    prometheus_client's parser, not tests/helpers/metric_pages.parsed: Go's page repeats some families."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(kube.http.get("/metrics").text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "apiserver_request_total" and labels.get("verb") in ("POST", "PATCH", "PUT", "DELETE"):
                what = labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
                counts[f"{labels['verb']} {what}"] += int(sample.value)
    return dict(counts.most_common())


def keep_log(controller: Proc, path: Path | None, policy: str) -> None:
    if path is not None:
        controller.log.seek(0)
        path.with_name(f"{path.name}.{policy}").write_bytes(controller.log.read())


def balancer_moves(kube: FakeKube) -> int:
    """Moves the balancer made so far (one Event ``Moved`` each; a swap makes two)."""
    events = kube.items("/api/v1/namespaces/default/events", fieldSelector="reason=Moved")
    return sum(1 for e in events if e.get("reason") == "Moved")


def moved(before: dict[str, list[str]], after: dict[str, list[str]]) -> int:
    return sum(len(set(before[name]) - set(after.get(name, []))) for name in before)


def run(policy: str, args: argparse.Namespace, work: Path) -> dict[str, float | int]:
    work = work / policy
    work.mkdir()
    plane = ControlPlane(work / "kube") if args.api == "real" else None
    kube: FakeKube = RealKube(plane) if plane is not None else FakeKube(work)
    fleet = Fleet(kube, pod_ip() if plane is not None else HOST, args.seed, args.ttft_ms)
    rng = random.Random(args.seed)
    lora = folders(work)
    try:
        for i in range(args.pods):
            fleet.add(f"pod-{i:02d}")
        controller = kube.start_controller(*shlex.split(args.controller_args))
        ranks = {f"lora-{i:04d}": rng.choice(RANKS) for i in range(args.adapters)}
        replicas = {name: rng.randint(1, 3) for name in ranks}
        weights = [1 / (k + 1) ** args.skew for k in range(args.adapters)]
        rng.shuffle(weights)
        demand = dict(zip(ranks, weights, strict=True))

        def create(name: str) -> None:
            body = {
                "apiVersion": "model.aibrix.ai/v1alpha1",
                "kind": "ModelAdapter",
                "metadata": {"name": name},
                "spec": {
                    "podSelector": {"matchLabels": {"model.aibrix.ai/name": "base-model"}},
                    "artifactURL": lora[ranks[name]],
                    "replicas": replicas[name],
                    "schedulerName": policy,
                },
            }
            assert kube.http.post(ADAPTERS.format(ns="default"), json=body).status_code == 201

        cpu_before = cpu_use(controller, kube, plane, fleet)
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, ranks))
        creates = time.monotonic() - started
        running = creates + settled(kube, replicas, args.timeout)  # from the first create
        first = placement(kube)
        result: dict[str, float | int] = {
            "running_s": running,
            "creates_s": creates,
            "violations": violations(first, ranks, fleet.limits),
            "placed": sum(1 for pods in first.values() if pods),
            "demand_placed": sum(demand[n] for n, pods in first.items() if pods) / sum(demand.values()),
        }
        cpu = {k: round(v - cpu_before[k], 1) for k, v in cpu_use(controller, kube, plane, fleet).items()}
        print(f"{policy}: CPU seconds from the first create until settled: {cpu}", file=sys.stderr)
        sample = kube.http.get(ADAPTERS.format(ns="default") + "/lora-0000").json()
        managed = len(json.dumps(sample["metadata"].get("managedFields") or []))
        size = len(json.dumps(sample))
        print(f"{policy}: a settled adapter is {size} bytes ({managed} managedFields)", file=sys.stderr)
        if args.api == "real":
            print(f"{policy}: API requests until settled: {real_requests(kube)}", file=sys.stderr)
        if args.api == "fake":
            asked = kube.http.get("/stats").json()
            print(f"{policy}: {asked['requests']} API requests until settled: {asked['byKind']}", file=sys.stderr)
            time.sleep(5)  # the Events queued behind the status writes go out
            events = kube.items("/api/v1/namespaces/default/events")
            reasons = Counter(e.get("reason") for e in events)
            print(f"{policy}: Events by reason: {dict(reasons)}", file=sys.stderr)
            for reason in reasons:
                example = next(e for e in events if e.get("reason") == reason)
                print(f"  e.g. {reason}: {example.get('message')}", file=sys.stderr)
        if args.settle_only:
            controller.stop()
            keep_log(controller, args.controller_log, policy)
            return result
        before = pod_demand(first, demand, list(fleet.limits))
        result["peak_before"] = max(before.values()) / (sum(before.values()) / len(before))
        result["requests"] = traffic(fleet, kube, demand, args)
        time.sleep(args.settle)  # moves asked near the end of the traffic finish
        first = placement(kube)
        result["balancer_moves"] = balancer_moves(kube)
        load = pod_demand(first, demand, list(fleet.limits))
        result["peak_over_mean"] = max(load.values()) / (sum(load.values()) / len(load))
        result["peak_over_floor"] = max(load.values()) / floor(first, demand, list(fleet.limits))
        fleet.add("pod-joined")
        time.sleep(args.settle)
        joined = placement(kube)
        result["moved_on_join"] = moved(first, joined)
        result["balanced_on_join"] = balancer_moves(kube) - int(result["balancer_moves"])
        busiest = Counter(pod for pods in joined.values() for pod in pods).most_common(1)[0][0]
        result["must_move_on_leave"] = sum(1 for pods in joined.values() if busiest in pods)
        left_at = time.monotonic()
        fleet.remove(busiest)
        wanted = [name for name, pods in joined.items() if busiest in pods]
        while time.monotonic() - left_at < args.timeout:
            if all(
                _replaced(a, busiest, len(joined[a["metadata"]["name"]]))
                for a in adapters(kube)
                if a["metadata"]["name"] in wanted
            ):
                break
            time.sleep(0.2)
        result["failover_s"] = time.monotonic() - left_at
        time.sleep(args.settle)
        after = placement(kube)
        result["moved_on_leave"] = moved(joined, after)
        result["balanced_on_leave"] = balancer_moves(kube) - int(result["balancer_moves"]) - result["balanced_on_join"]
        result["violations"] = int(result["violations"]) + violations(after, ranks, fleet.limits)
        controller.stop()
        keep_log(controller, args.controller_log, policy)
        return result
    finally:
        fleet.stop()
        kube.stop()
        if plane is not None:
            plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--api", choices=["fake", "real"], default="fake")
    parser.add_argument("--policies", default="default,balanced")
    parser.add_argument("--traffic", type=float, default=40.0, help="seconds of Zipf-weighted completions")
    parser.add_argument("--skew", type=float, default=1.1, help="the Zipf exponent of the adapters' demand")
    parser.add_argument("--workers", type=int, default=16, help="concurrent completions during the traffic")
    parser.add_argument(
        "--ttft-ms",
        type=float,
        default=20.0,
        help="the simulators' time to first token: longer requests, more in flight",
    )
    parser.add_argument("--max-tokens", type=int, default=1, help="tokens per completion (CPU, not time in flight)")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after a pod joins or leaves")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--settle-only", action="store_true", help="stop after the first placement has settled")
    parser.add_argument("--controller-args", default="", help="more arguments for aibrix_controller, one string")
    parser.add_argument("--controller-log", type=Path, help="write the controller's log here (policy appended)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="placement-bench-"))
    results = {policy: run(policy, args, work) for policy in args.policies.split(",")}
    print(
        f"### Placement: {args.adapters} adapters over {args.pods} pods of mixed limits, Zipf s = {args.skew} "
        f"({args.api} API server)\n"
    )
    print("| measure | " + " | ".join(results) + " | target |")
    print("|---" * (len(results) + 2) + "|")
    rows = [
        ("constraint violations", "violations", "{:d}", "0"),
        ("adapters with at least one pod", "placed", "{:d}", ""),
        ("share of all demand on adapters with a pod", "demand_placed", "{:.1%}", ""),
        ("all creates answered (s)", "creates_s", "{:.1f}", ""),
        ("create → all placeable settled (s)", "running_s", "{:.1f}", "≤ 15 (fake), ≤ 30 (real)"),
        ("peak pod demand / mean before the traffic", "peak_before", "{:.2f}", ""),
        ("completions sent during the traffic phase", "requests", "{:d}", ""),
        ("adapters moved to even out demand during it", "balancer_moves", "{:d}", ""),
        ("peak pod demand / mean", "peak_over_mean", "{:.2f}", "≤ 1.25"),
        ("peak pod demand / floor (mean, or the largest instance share)", "peak_over_floor", "{:.2f}", ""),
        ("instances moved when a pod joins (minimum 0)", "moved_on_join", "{:d}", "≤ 1.5 × minimum"),
        ("of them, moved by the balancer meanwhile (Event Moved)", "balanced_on_join", "{:d}", ""),
        ("instances on the pod that leaves (the minimum)", "must_move_on_leave", "{:d}", ""),
        ("instances moved when it leaves", "moved_on_leave", "{:d}", "≤ 1.5 × minimum"),
        ("of them, moved by the balancer meanwhile (Event Moved)", "balanced_on_leave", "{:d}", ""),
        ("failover of the leaving pod's adapters (s)", "failover_s", "{:.2f}", "≤ 2"),
    ]
    for label, key, form, target in rows:
        if any(key not in r for r in results.values()):
            continue
        print(f"| {label} | " + " | ".join(form.format(r[key]) for r in results.values()) + f" | {target} |")


if __name__ == "__main__":
    main()
