"""vLLM's management routes as the real server answers them.

Sources (vllm-project/vllm): vllm/entrypoints/openai/api_server.py (routes, the VLLM_ALLOW_RUNTIME_LORA_UPDATING
gate, the /v1 API-key middleware answering 401 {"error": "Unauthorized"}); serving_models.py and
models/serving.py (messages and status codes of load/unload); protocol.py (flat and nested ErrorResponse).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aibrix.sim.engine import SimEngine
from aibrix.sim.http import metrics_handler, read_json
from aibrix.sim.openai import completion_handler


def runtime_lora_allowed(environ: dict[str, str] | None = None) -> bool:
    """vLLM's envs.py reads the gate as "1"/"true", case-insensitive."""
    value = (os.environ if environ is None else environ).get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "0")
    return value.strip().lower() in ("1", "true")


class VLLMErrors:
    """Error bodies: ``nested`` (current vLLM) or ``flat`` (vLLM up to about 0.9)."""

    def __init__(self, style: str) -> None:
        self.style = style

    def __call__(self, code: int, message: str, type: str) -> Response:
        info = {"message": message, "type": type, "param": None, "code": code}
        body = {"error": info} if self.style == "nested" else {"object": "error", **info}
        return JSONResponse(body, status_code=code)


def _card(model_id: str, root: str, parent: str | None, created: int, max_model_len: int | None) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
        "permission": [],
    }


def vllm_routes(engine: SimEngine, *, error_style: str, allow_lora: bool) -> list[Route]:
    error = VLLMErrors(error_style)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        cards = [_card(engine.model, engine.model, None, engine.created, 32768)]
        cards += [_card(name, path, engine.model, engine.created, None) for name, path in engine.adapters.items()]
        return JSONResponse({"object": "list", "data": cards})

    async def load(request: Request) -> Response:
        body = await read_json(request)
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name in engine.adapters and not body.get("load_inplace"):
            message = f"The lora adapter '{name}' has already been loaded."
            if error_style == "nested":
                message += " If you want to load the adapter in place, set 'load_inplace' to True."
            return error(400, message, "InvalidUserInput")
        await asyncio.sleep(engine.timing.lora_load)
        if path.startswith("/") and not os.path.isdir(path):
            return error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        engine.adapters[name] = path
        return Response(f"Success: LoRA adapter '{name}' added successfully.", status_code=200)

    async def unload(request: Request) -> Response:
        body = await read_json(request)
        name = body.get("lora_name")
        if not name:
            return error(400, "'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput")
        if engine.adapters.pop(name, None) is None:
            return error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        return Response(f"Success: LoRA adapter '{name}' removed successfully.", status_code=200)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/completions", completion_handler(False, error), methods=["POST"]),
        Route("/v1/chat/completions", completion_handler(True, error), methods=["POST"]),
        Route("/metrics", metrics_handler(engine), methods=["GET"]),
    ]
    if allow_lora:
        routes += [
            Route("/v1/load_lora_adapter", load, methods=["POST"]),
            Route("/v1/unload_lora_adapter", unload, methods=["POST"]),
        ]
    return routes


def vllm_auth_exempt(path: str) -> bool:
    """vLLM's API-key middleware only guards paths under /v1."""
    return not path.startswith("/v1")
