"""How vLLM 0.32 judges management requests, reproduced for the simulator.

Sources (vllm-project/vllm v0.32.0): entrypoints/serve/exception_handling/utils.py (``sanitize_message``: paths
become ``<path>``), handlers/validation.py (FastAPI validation errors as ``N validation error(s):`` with the first
``loc`` as ``param``, type "Bad Request"), serve/utils/api_utils.py (``validate_json_request``: only
application/json), serve/lora/protocol.py (the request fields), lora/peft_helper.py (``validate_legal``: rank above
``--max-lora-rank``), lora/worker_manager.py (FileNotFoundError becomes 404 "No adapter found"; any other
exception a 500 wrapped by the engine core as "Call to add_lora method failed: Worker failed with error ...").
Every status and message here is checked against a real vLLM by tests/e2e/test_vllm_conformance.py.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from pydantic import BaseModel, ValidationError

_PATH_UNDER_ROOTS = re.compile(r"/(?:home|usr|opt|var|tmp|root|lib|mnt|srv)(?:/[\w.\-]+)+")
_PATH_WITH_FILE = re.compile(r"(?:/[\w\-]+)+/[\w\-]+\.\w+")


def sanitize_message(message: str) -> str:
    """vLLM strips file paths from every error message it sends."""
    message = _PATH_UNDER_ROOTS.sub("<path>", message)
    return _PATH_WITH_FILE.sub("<path>", message).strip()


class LoadRequest(BaseModel):
    lora_name: str
    lora_path: str
    load_inplace: bool = False
    is_3d_lora_weight: bool = False


class UnloadRequest(BaseModel):
    lora_name: str
    lora_int_id: int | None = None


class BadRequest(Exception):
    """A request FastAPI's validation refuses; ``body`` is vLLM's 400 error body."""

    def __init__(self, errors: list[Any]) -> None:
        super().__init__("validation failed")
        self.errors = errors

    @property
    def body(self) -> dict[str, Any]:
        label = "error" if len(self.errors) == 1 else "errors"
        message = f"{len(self.errors)} validation {label}:\n" + "".join(f"  {_render(e)}\n" for e in self.errors)
        first = self.errors[0]
        param = ".".join(str(p) for p in first["loc"]) if isinstance(first, dict) else None
        info = {"message": sanitize_message(message.rstrip()), "type": "Bad Request", "param": param, "code": 400}
        return {"error": info}


def _summarize(value: object) -> object:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return f"<{type(value).__name__} of {len(value)} items>"
    return str(value)


def _render(error: object) -> str:
    if isinstance(error, dict):
        error = dict(error)
        if "input" in error:
            error["input"] = _summarize(error["input"])
        error["loc"] = ".".join(str(p) for p in error["loc"])
    return str(error)


def parse_request(content_type: str, raw: bytes, model: type[BaseModel]) -> Any:
    """The request as vLLM's FastAPI route parses it, or BadRequest with FastAPI's errors."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise BadRequest(["Unsupported Media Type: Only 'application/json' is allowed"])
    try:
        body = json.loads(raw)
    except ValueError as exc:
        ctx = {"error": exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)}
        raise BadRequest(
            [{"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error", "input": {}, "ctx": ctx}]
        ) from None
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [
            {"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"], "input": e["input"]}
            for e in exc.errors(include_url=False)
        ]
        raise BadRequest(errors) from None


def adapter_problem(path: str, max_rank: int) -> tuple[int, str] | None:
    """Why vLLM's worker would refuse to load the adapter folder ``path``: (404, ...) or (500, ...), or None."""
    config_path = os.path.join(path, "adapter_config.json")
    try:
        with open(config_path) as handle:
            config = json.load(handle)
    except FileNotFoundError:
        return 404, ""
    except (OSError, ValueError) as exc:
        return 500, _worker_failed(str(exc))
    ranks = [config.get("r", 0), *(config.get("rank_pattern") or {}).values()]
    if not all(isinstance(rank, int) and rank > 0 for rank in ranks):
        return 500, _worker_failed(f"LoRA rank `r` must be a positive integer, got {config.get('r')}.")
    problems = []
    if max(ranks) > max_rank:
        problems.append(f"LoRA rank {max(ranks)} is greater than max_lora_rank {max_rank}.")
    if config.get("bias", "none") != "none":
        problems.append("Adapter bias is not supported.")
    if problems:
        return 500, _worker_failed(" ".join(problems))
    return None


def _worker_failed(error: str) -> str:
    return (
        f"Call to add_lora method failed: Worker failed with error '{error}', "
        "please check the stack trace above for the root cause"
    )
