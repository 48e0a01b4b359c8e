"""Calls to a runtime's adapter API as the tests make them, and the one way they read its error bodies."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers.procs import Proc


def load(client: httpx.Client, runtime: Proc, name: str, path: str | Path) -> httpx.Response:
    """Load a folder the runtime can read under ``name``."""
    return client.post(f"{runtime.url}/v1/lora_adapter/load", json={"lora_name": name, "lora_path": str(path)})


def load_body(runtime: Proc, body: dict, timeout: float = 60) -> httpx.Response:
    """Load with any body (an artifact to download, credentials, ...)."""
    return httpx.post(f"{runtime.url}/v1/lora_adapter/load", json=body, timeout=timeout)


def assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    """The answer is an error with ``status`` in its JSON body too, a type, and each fragment in its message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    assert error["type"]
    for fragment in fragments:
        assert fragment in error["message"]
