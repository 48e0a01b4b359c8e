"""scripts/demo.sh, as a newcomer runs it first: the engine's metrics beside the aibrix: ones under traffic, an
adapter loaded and listed; --once stops at the end, otherwise it runs until Ctrl-C; --real does it on real vLLM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.procs import free_port

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    ports = {"ENGINE_PORT": str(free_port()), "RUNTIME_PORT": str(free_port())}
    return subprocess.Popen(
        [sys.executable, "-u", str(DEMO), *args],
        env={**os.environ, **ports, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def check_walk_through(output: str, engine_prefix: str = "vllm:") -> None:
    assert '"status":"loaded"' in output and '"name":"demo-lora"' in output, output
    rows = {
        m.group(1): (m.group(2), m.group(4))
        for m in re.finditer(r"^(vllm:\S+)\s+(\S+)\s+(aibrix:\S+)\s+(\S+)$", output, re.MULTILINE)
    }
    assert f"{engine_prefix}generation_tokens_total" in rows, output
    engine_value, ours = rows[f"{engine_prefix}generation_tokens_total"]
    assert engine_value == ours and float(ours) > 0, rows  # under traffic, and the same number under both names
    assert re.search(r"aibrix:engine_up\s+1$", output, re.MULTILINE), output


def test_demo_once_walks_through_and_stops() -> None:
    proc = demo("--once")
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, output
    check_walk_through(output)
    assert "demo: runtime and engine stopped" in output


def test_demo_keeps_running_until_ctrl_c_and_says_what_to_try() -> None:
    proc = demo()
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops them" in line:
            break
    time.sleep(1)
    assert proc.poll() is None, "".join(lines)  # still serving after the walk-through
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    output = "".join(lines) + rest
    check_walk_through(output)
    assert "curl -X POST" in output and "demo: runtime and engine stopped" in output and proc.returncode == 0


@pytest.mark.real_vllm
def test_demo_real_does_the_same_on_real_vllm(real_vllm) -> None:  # the fixture proves vLLM is installed here
    proc = demo("--once", "--real")
    output, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, output
    assert "engine: vLLM (CPU)" in output
    check_walk_through(output)
