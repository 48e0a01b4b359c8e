"""Tests that name addresses off this machine run their traffic inside a network namespace with only loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def loopback_only_available() -> str | None:
    """None when ``unshare -n`` works here, else why not."""
    try:
        result = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare cannot run: {exc}"
    return None if result.returncode == 0 else f"unshare -n failed: {result.stderr.strip()}"


def probe_artifact_urls(urls: list[str]) -> list[dict]:
    """Each URL loaded through a runtime inside a loopback-only namespace, directly and via a redirect."""
    reason = loopback_only_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"SSRF tests need a network namespace in CI: {reason}")
        pytest.skip(f"SSRF tests run only inside a loopback-only network namespace: {reason}")
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.helpers.netns_probe", json.dumps(urls)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
