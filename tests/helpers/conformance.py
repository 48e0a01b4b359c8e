"""One table of engine-API cases, run in order against an engine; results normalized so that the real vLLM and
the simulator can be compared answer by answer (tests/e2e/test_vllm_conformance.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Case:
    """A request and how its answer is compared: ``exact`` (status, content type, body), ``shape`` (status,
    content type, JSON keys and value types), or ``models`` (model cards without timestamps and random ids)."""

    name: str
    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    compare: str = "exact"


def load(name: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"lora_name": name, "lora_path": path, **extra}


LOAD, UNLOAD = "/v1/load_lora_adapter", "/v1/unload_lora_adapter"
# fmt: off
CASES = [
    Case("health", "GET", "/health"),
    Case("version", "GET", "/version", compare="shape"),
    Case("models: the base model card", "GET", "/v1/models", compare="models"),
    Case("load an adapter", "POST", LOAD, load("conf-a", "{models}/lora-r8")),
    Case("load the same name again", "POST", LOAD, load("conf-a", "{models}/lora-r8")),
    Case("load in place", "POST", LOAD, load("conf-a", "{models}/lora-r8", load_inplace=True)),
    Case("rank above --max-lora-rank", "POST", LOAD, load("conf-big", "{models}/lora-r64")),
    Case("a file as the adapter folder", "POST", LOAD, load("conf-file", "{models}/lora-r8/adapter_config.json")),
    Case("a folder that does not exist", "POST", LOAD, load("conf-nf", "{models}/no-such-adapter")),
    Case("a folder that is not an adapter", "POST", LOAD, load("conf-model", "{models}/model")),
    Case("the served model's name", "POST", LOAD, load("tiny", "{models}/lora-r8-b")),
    Case("empty name and path", "POST", LOAD, load("", "")),
    Case("content type not JSON", "POST", LOAD, raw=b'{"lora_name": "x", "lora_path": "y"}',
         headers={"content-type": "text/plain"}),
    Case("lora_name not a string", "POST", LOAD, {"lora_name": 5, "lora_path": "{models}/lora-r8"}),
    Case("body not JSON", "POST", LOAD, raw=b"notjson", headers=JSON),
    Case("fields missing", "POST", LOAD, {}),
    Case("models: base and adapter", "GET", "/v1/models", compare="models"),
    Case("completion on the adapter", "POST", "/v1/completions",
         {"model": "conf-a", "prompt": "Hello", "max_tokens": 4, "temperature": 0}, compare="shape"),
    Case("chat completion on the adapter", "POST", "/v1/chat/completions",
         {"model": "conf-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}, compare="shape"),
    # --max-loras 2 (so --max-cpu-loras 2): more adapters stay registered than the cache holds, each swapped in on
    # its request; this is why a pod's default slot count is no placement cap (docs/placement.md)
    Case("a second adapter", "POST", LOAD, load("conf-c", "{models}/lora-r8-b")),
    Case("a third, beyond --max-loras", "POST", LOAD, load("conf-d", "{models}/lora-r8")),
    Case("completion on the third", "POST", "/v1/completions",
         {"model": "conf-d", "prompt": "Hello", "max_tokens": 2, "temperature": 0}, compare="shape"),
    Case("completion on the second", "POST", "/v1/completions",
         {"model": "conf-c", "prompt": "Hello", "max_tokens": 2, "temperature": 0}, compare="shape"),
    Case("completion on the first, swapped back in", "POST", "/v1/completions",
         {"model": "conf-a", "prompt": "Hello", "max_tokens": 2, "temperature": 0}, compare="shape"),
    Case("unload the third", "POST", UNLOAD, {"lora_name": "conf-d"}),
    Case("unload the second", "POST", UNLOAD, {"lora_name": "conf-c"}),
    Case("completion on an unknown model", "POST", "/v1/completions", {"model": "nope", "prompt": "Hi"}),
    Case("max_tokens above --max-model-len", "POST", "/v1/completions",
         {"model": "tiny", "prompt": "Hi", "max_tokens": 5000}),
    Case("completion without a prompt", "POST", "/v1/completions", {"model": "tiny"}),
    Case("unload an unknown name", "POST", UNLOAD, {"lora_name": "conf-zz"}),
    Case("unload without a name", "POST", UNLOAD, {}),
    Case("unload", "POST", UNLOAD, {"lora_name": "conf-a"}),
    Case("unload it again", "POST", UNLOAD, {"lora_name": "conf-a"}),
    Case("register through /adapters", "POST", "/adapters", {"name": "conf-b", "src": "{models}/lora-r8-b"}),
    Case("unregister through /adapters", "DELETE", "/adapters/conf-b"),
    Case("unregister it again", "DELETE", "/adapters/conf-b"),
    Case("an unknown route", "GET", "/no-such-route"),
    Case("a wrong method", "GET", LOAD),
]
# The same engine started with --api-key secret-key.
AUTH_CASES = [
    Case("models without a key", "GET", "/v1/models"),
    Case("models with a wrong key", "GET", "/v1/models", headers={"authorization": "Bearer wrong"}),
    Case("models with Basic", "GET", "/v1/models", headers={"authorization": "Basic c2VjcmV0LWtleQ=="}),
    Case("models with the key", "GET", "/v1/models", headers={"authorization": "Bearer secret-key"},
         compare="models"),
    Case("load without a key", "POST", LOAD, load("conf-k", "{models}/lora-r8")),
    Case("health without a key", "GET", "/health"),
    Case("version without a key", "GET", "/version", compare="shape"),
    Case("register through /adapters without a key", "POST", "/adapters",
         {"name": "conf-k", "src": "{models}/lora-r8"}),
    Case("unregister without a key", "DELETE", "/adapters/conf-k"),
]
# fmt: on


def shape(value: Any) -> Any:
    """The keys and value types of a JSON value, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def model_cards(body: Any) -> Any:
    """Model cards without the volatile parts; only the base model and this table's adapters."""
    cards = []
    for card in body.get("data", []):
        if card.get("parent") and not str(card["id"]).startswith("conf-"):
            continue  # left by another test sharing the engine
        card = {key: value for key, value in card.items() if key != "created"}
        card["permission"] = [
            {key: value for key, value in perm.items() if key not in ("id", "created")}
            for perm in card.get("permission", [])
        ]
        cards.append(card)
    return {"object": body.get("object"), "data": cards}


def run(base_url: str, cases: list[Case], models: Path) -> list[dict[str, Any]]:
    """Send every case in order; return what each answer looks like, normalized by the case's comparison."""
    results = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for case in cases:
            body = json.loads(json.dumps(case.body).replace("{models}", str(models))) if case.body is not None else None
            content = case.raw if case.raw is not None else (json.dumps(body).encode() if body is not None else None)
            headers = {**(JSON if body is not None else {}), **case.headers}
            response = client.request(case.method, case.path, content=content, headers=headers)
            results.append(normalize(case, response, models))
    return results


def normalize(case: Case, response: httpx.Response, models: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"status": response.status_code, "content-type": response.headers.get("content-type")}
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if case.compare == "shape":
        body = shape(body)
    elif case.compare == "models" and response.status_code == 200:
        body = model_cards(body)
    result["body"] = json.loads(json.dumps(body).replace(str(models), "{models}"))
    return result


def mismatches(cases: list[Case], real: list[dict], simulated: list[dict]) -> str:
    """Each case where the simulator answered otherwise than real vLLM, both answers shown."""
    lines = []
    for case, want, got in zip(cases, real, simulated, strict=True):
        if want != got:
            lines.append(f"{case.name}:\n  real vLLM: {want}\n  simulator: {got}")
    return "\n".join(lines)
