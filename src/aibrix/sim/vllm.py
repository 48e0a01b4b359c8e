"""vLLM's management routes as the real server answers them.

Sources (vllm-project/vllm v0.32.0): entrypoints/openai/api_server.py (routes, the VLLM_ALLOW_RUNTIME_LORA_UPDATING
gate), serve/middleware/authenticate.py (401 {"error": "Unauthorized"}), serve/lora/api_router.py (the /v1 routes and
the SageMaker-style /adapters routes), openai/models/serving.py (messages, status codes, model cards);
engine/protocol.py (flat and nested ErrorResponse). tests/e2e/test_vllm_conformance.py holds this module to a real vLLM.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aibrix.sim.engine import SimEngine
from aibrix.sim.http import metrics_handler, read_json
from aibrix.sim.openai import completion_handler
from aibrix.sim.vllm_rules import (
    BadRequest,
    LoadRequest,
    UnloadRequest,
    adapter_problem,
    parse_request,
    sanitize_message,
)

VLLM_VERSION = "0.32.0"


@dataclass(frozen=True)
class VLLMLimits:
    """The serving flags that shape vLLM's answers: ``--max-model-len``, ``--max-lora-rank``, ``--max-loras``, the
    model's path (``root`` of the base model card; the served name when not given) and ``--max-cpu-loras`` (the
    adapter cache; default ``--max-loras``, as vLLM's config/lora.py)."""

    max_model_len: int = 32768
    max_lora_rank: int = 16
    max_loras: int = 1
    model_path: str | None = None
    max_cpu_loras: int | None = None


def runtime_lora_allowed(environ: dict[str, str] | None = None) -> bool:
    """vLLM's envs.py reads the gate as "1"/"true", case-insensitive."""
    value = (os.environ if environ is None else environ).get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "0")
    return value.strip().lower() in ("1", "true")


class VLLMErrors:
    """Error bodies: ``nested`` (current vLLM) or ``flat`` (vLLM up to about 0.9), messages sanitized as vLLM does."""

    def __init__(self, style: str) -> None:
        self.style = style

    def __call__(self, code: int, message: str, type: str, param: str | None = None) -> Response:
        info = {"message": sanitize_message(message), "type": type, "param": param, "code": code}
        body = {"error": info} if self.style == "nested" else {"object": "error", **info}
        return JSONResponse(body, status_code=code)


def _card(model_id: str, root: str, parent: str | None, created: int, max_model_len: int | None) -> dict[str, Any]:
    permission = {
        "id": f"modelperm-{uuid.uuid4().hex[:16]}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
        "permission": [permission],
    }


def _text(message: str) -> Response:
    """vLLM answers adapter successes as a bare text body without a content type."""
    response = Response(message.encode(), status_code=200)
    del response.headers["content-type"]
    return response


def vllm_routes(engine: SimEngine, *, error_style: str, allow_lora: bool, limits: VLLMLimits) -> list[Route]:
    error = VLLMErrors(error_style)

    async def parsed(request: Request, model: type[Any]) -> Any:
        try:
            return parse_request(request.headers.get("content-type", ""), await request.body(), model)
        except BadRequest as exc:
            body = exc.body if error_style == "nested" else {"object": "error", **exc.body["error"]}
            return JSONResponse(body, status_code=400)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def version(request: Request) -> Response:
        return JSONResponse({"version": VLLM_VERSION})

    async def models(request: Request) -> Response:
        now = int(time.time())
        cards = [_card(engine.model, limits.model_path or engine.model, None, now, limits.max_model_len)]
        cards += [_card(name, path, engine.model, now, None) for name, path in engine.adapters.items()]
        return JSONResponse({"object": "list", "data": cards})

    async def add(name: str, path: str, inplace: bool) -> Response:
        if not name or not path:
            return error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name == engine.model:
            return error(400, f"The lora adapter '{name}' conflicts with a served base model.", "InvalidUserInput")
        if name in engine.adapters and not inplace:
            message = f"The lora adapter '{name}' has already been loaded."
            if error_style == "nested":
                message += " If you want to load the adapter in place, set 'load_inplace' to True."
            return error(400, message, "InvalidUserInput")
        # A relative path is a Hub repo id, which real vLLM downloads; the simulator takes it as there.
        problem = adapter_problem(path, limits.max_lora_rank) if path.startswith("/") else None
        if problem is not None:
            await asyncio.sleep(engine.timing.lora_load)
        if problem is not None and problem[0] == 404:
            return error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        if problem is not None:
            return error(500, problem[1], "InternalServerError")
        if engine.lora_cache is not None:
            await engine.lora_cache.load(name, path)
        engine.adapters[name] = path
        return _text(f"Success: LoRA adapter '{name}' added successfully.")

    async def remove(name: str) -> Response | None:
        if not name:
            return error(400, "'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput")
        if engine.adapters.pop(name, None) is None:
            return error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        if engine.lora_cache is not None:
            engine.lora_cache.forget(name)  # the name goes; the cached weights stay until evicted
        return None

    async def load(request: Request) -> Response:
        body = await parsed(request, LoadRequest)
        if isinstance(body, Response):
            return body
        return await add(body.lora_name, body.lora_path, body.load_inplace)

    async def unload(request: Request) -> Response:
        body = await parsed(request, UnloadRequest)
        if isinstance(body, Response):
            return body
        return await remove(body.lora_name) or _text(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")

    async def register(request: Request) -> Response:
        """The SageMaker-style POST /adapters {name, src} that vLLM 0.32 registers beside the /v1 routes."""
        body = await read_json(request)
        response = await add(str(body.get("name") or ""), str(body.get("src") or ""), bool(body.get("load_inplace")))
        return _text(f"Adapter {body.get('name')} registered") if response.status_code == 200 else response

    async def unregister(request: Request) -> Response:
        name = request.path_params["name"]
        return await remove(name) or _text(f"Adapter {name} unregistered")

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/completions", completion_handler(False, error, limits.max_model_len), methods=["POST"]),
        Route("/v1/chat/completions", completion_handler(True, error, limits.max_model_len), methods=["POST"]),
        Route("/metrics", metrics_handler(engine), methods=["GET"]),
    ]
    if allow_lora:
        routes += [
            Route("/v1/load_lora_adapter", load, methods=["POST"]),
            Route("/v1/unload_lora_adapter", unload, methods=["POST"]),
            Route("/adapters", register, methods=["POST"]),
            Route("/adapters/{name}", unregister, methods=["DELETE"]),
        ]
    return routes


def vllm_auth_exempt(path: str) -> bool:
    """vLLM's API-key middleware guards only /v1, /v2, /inference and /cohere (serve/middleware/authenticate.py):
    /health, /metrics, /version and the /adapters routes stay open."""
    return not path.startswith(("/v1", "/v2", "/inference", "/cohere"))
