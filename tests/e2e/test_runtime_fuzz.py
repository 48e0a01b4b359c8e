"""Fuzz the runtime's HTTP API from its own OpenAPI schema (schemathesis): no 500s, no hangs, whatever comes in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_no_server_errors_from_schema_driven_fuzzing(procs, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    assert schemathesis.exists(), "schemathesis comes with the test extra"
    sim = procs.sim("vllm")
    env = {
        "AIBRIX_ADAPTER_DIR": str(tmp_path / "adapters"),
        "DOWNLOADER_LOCAL_DIR": str(tmp_path / "models"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }  # downloads the fuzzer starts fail fast, offline
    runtime = procs.runtime("vllm", sim.url, "--enable-docs", env=env)
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{runtime.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--request-timeout",
            "10",
            "--max-response-time",
            "10",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
