"""The Grafana dashboard and the Prometheus alerts in deploy/monitoring/, checked by a real Prometheus (Debian's,
from scripts/fetch_promtool.sh) scraping runtimes over the vLLM and SGLang simulators under traffic, and a
controller holding a Failed ModelAdapter: every panel query and every alert's signal returns data for both engine
kinds, and the alerts fire on what they watch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers.kube import FakeKube, phase
from tests.helpers.procs import Proc, free_port

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
RULES = ROOT / "deploy" / "monitoring" / "aibrix-rules.yaml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "aibrix-dashboard.json"
THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[\d.]+\s*$")


def need_prometheus() -> Path:
    binary = TOOLS / "prometheus"
    if not binary.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is missing: scripts/fetch_promtool.sh puts it in .tools/")
        pytest.skip("prometheus is not in .tools/ (scripts/fetch_promtool.sh fetches it)")
    return binary


class Prometheus:
    """A real Prometheus on loopback, scraping every second, evaluating the rules every second."""

    def __init__(self, binary: Path, workdir: Path, jobs: dict[str, list[str]]) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in jobs.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        self.proc = Proc(
            [
                str(binary),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
        )
        self.proc.wait_http("/-/ready", timeout=30)

    def wait_scraped(self, targets: int, timeout: float = 30.0) -> None:
        """Until every target was scraped a few times (service discovery hands targets over after ~5 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = httpx.get(self.proc.url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            if len(active) == targets and all(t["health"] == "up" for t in active):
                time.sleep(4)  # rates and quantiles need a few samples in their window
                return
            time.sleep(0.5)
        raise AssertionError(f"targets not all up after {timeout}s: {active}")

    def query(self, expr: str) -> list[dict]:
        response = httpx.get(self.proc.url + "/api/v1/query", params={"query": expr}, timeout=10).json()
        assert response["status"] == "success", (expr, response)
        return response["data"]["result"]

    def stop(self) -> None:
        self.proc.stop()


def alerts(prometheus: Prometheus) -> set[str]:
    """Names of the alerts pending or firing."""
    found = httpx.get(prometheus.proc.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {alert["labels"]["alertname"] for alert in found}


def traffic(urls: list[str], stop: threading.Event) -> None:
    """Completions against each engine until ``stop``: the latency histograms and token counters move."""
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            for url in urls:
                try:
                    client.post(url + "/v1/completions", json={"model": "base-model", "prompt": "hi", "max_tokens": 4})
                except httpx.TransportError:
                    pass  # the test stops one engine on purpose
            time.sleep(0.05)


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"].replace("$__rate_interval", "30s") for p in panels for t in p.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_dashboard_and_alerts_work_for_every_engine_on_a_real_prometheus(procs, adapter_dir, tmp_path: Path) -> None:
    binary = need_prometheus()
    check = subprocess.run([str(TOOLS / "promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    sims = {kind: procs.sim(kind, "--ttft-ms", "2", "--itl-ms", "1") for kind in ("vllm", "sglang")}
    runtimes = {kind: procs.runtime(kind, sim.url) for kind, sim in sims.items()}
    for kind, runtime in runtimes.items():
        body = {"lora_name": f"{kind}-lora", "lora_path": str(adapter_dir)}
        assert httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=10).status_code == 200
    (tmp_path / "kube").mkdir()
    kube = FakeKube(tmp_path / "kube")
    controller = kube.start_controller()
    kube.add_adapter("9lives", replicas=1)  # not a Service name: the controller fails it at once (no CEL here)
    kube.wait_adapter("9lives", lambda obj: phase(obj) == "Failed", timeout=15)
    stop = threading.Event()
    load = threading.Thread(target=traffic, args=([sim.url for sim in sims.values()], stop), daemon=True)
    load.start()
    host = lambda proc: proc.url.removeprefix("http://")  # noqa: E731
    prometheus = Prometheus(
        binary,
        tmp_path,
        {"aibrix-runtime": [host(r) for r in runtimes.values()], "aibrix-controller": [host(controller)]},
    )
    try:
        prometheus.wait_scraped(targets=3)
        for expr in dashboard_queries():
            kinds = {series["metric"].get("inference_engine") for series in prometheus.query(expr)}
            assert kinds >= {"vllm", "sglang"}, (expr, kinds)
        instances = {host(r): kind for kind, r in runtimes.items()}
        loaded = prometheus.query("aibrix:lora_adapter_loaded == 1")
        on = {(s["metric"]["lora_name"], instances.get(s["metric"]["instance"])) for s in loaded}
        assert on == {("vllm-lora", "vllm"), ("sglang-lora", "sglang")}, loaded
        for rule in alert_rules():
            prometheus.query(rule["expr"])  # the whole expression is valid PromQL
            signal = THRESHOLD.sub("", rule["expr"])
            seen = prometheus.query(signal)
            if rule["alert"] == "AIBrixModelAdaptersFailed":
                assert [float(s["value"][1]) for s in seen] == [1.0], (signal, seen)
            else:
                assert {instances.get(s["metric"].get("instance")) for s in seen} >= {"vllm", "sglang"}, (signal, seen)
        sims["sglang"].stop()  # the alert's condition becomes true for that engine only
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not prometheus.query("aibrix:engine_up == 0"):
            time.sleep(0.5)
        down = prometheus.query("aibrix:engine_up == 0")
        assert [instances[s["metric"]["instance"]] for s in down] == ["sglang"]
        expected = {"AIBrixEngineDown", "AIBrixModelAdaptersFailed"}
        while time.monotonic() < deadline and not expected <= alerts(prometheus):
            time.sleep(0.5)
        assert expected <= alerts(prometheus)  # pending: each has a for: before it fires
    finally:
        stop.set()
        load.join(timeout=5)
        prometheus.stop()
        controller.stop()
        kube.stop()
