"""SGLang's management routes as the real server answers them.

Checked line by line against SGLang 0.5.23's own source, read from its PyPI wheel (SGLang's CPU backend needs
sgl-kernel built from source, so no real SGLang runs here; see docs/simulator.md). Sources (sgl-project/sglang):
python/sglang/srt/entrypoints/http_server.py (routes; 200 on success and 400 on any failure for the LoRA routes;
a request missing fields is FastAPI's validation error, answered 400 ``Bad Request`` in the legacy ErrorResponse
shape by ``validation_exception_handler``); utils/auth.py (the API key leaves /health, /ready and /metrics open);
managers/io_struct.py (LoRAUpdateOutput ``{success, error_message, loaded_adapters}`` plus BaseReq's ``rid`` and
``http_worker_ipc``, all serialized by utils/msgspec_utils.py ``msgspec_to_builtins``); lora/lora_manager.py and
lora/lora_registry.py (messages). Since sgl-project/sglang PR #12229 (Oct 2025) /v1/models also lists loaded
adapters (``id`` the lora_name, ``root`` its path, ``parent`` the base model); ``list_adapters=False`` reproduces
older releases.
"""

from __future__ import annotations

import asyncio
import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aibrix.sim.engine import SimEngine
from aibrix.sim.http import metrics_handler, read_json
from aibrix.sim.openai import completion_handler


def sglang_error(code: int, message: str, type: str) -> Response:
    """SGLang's OpenAI-route error body (python/sglang/srt/entrypoints/openai/protocol.py ErrorResponse)."""
    return JSONResponse(
        {"object": "error", "message": message, "type": type, "param": None, "code": code}, status_code=code
    )


def sglang_routes(engine: SimEngine, *, list_adapters: bool = True) -> list[Route]:
    def update_result(success: bool, error_message: str = "", with_adapters: bool = True) -> Response:
        body = {
            "rid": None,
            "http_worker_ipc": None,
            "success": success,
            "error_message": error_message,
            "loaded_adapters": dict(engine.adapters) if with_adapters else None,
        }
        return JSONResponse(body, status_code=200 if success else 400)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        cards = [
            {
                "id": engine.model,
                "object": "model",
                "created": engine.created,
                "owned_by": "sglang",
                "root": engine.model,
                "parent": None,
                "max_model_len": 32768,
            }
        ]
        if list_adapters:
            cards += [
                {
                    "id": name,
                    "object": "model",
                    "created": engine.created,
                    "owned_by": "sglang",
                    "root": path,
                    "parent": engine.model,
                    "max_model_len": None,
                }
                for name, path in engine.adapters.items()
            ]
        return JSONResponse({"object": "list", "data": cards})

    async def load(request: Request) -> Response:
        body = await read_json(request)
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return sglang_error(400, "1 validation error: lora_name and lora_path are required", "Bad Request")
        if name in engine.adapters:
            return update_result(False, f"Failed to load LoRA adapter {name} because it is already loaded")
        await asyncio.sleep(engine.timing.lora_load)
        if path.startswith("/") and not os.path.isdir(path):
            return update_result(False, f"Can't find 'adapter_config.json' at '{path}'")
        engine.adapters[name] = path
        return update_result(True)

    async def unload(request: Request) -> Response:
        body = await read_json(request)
        name = body.get("lora_name")
        if name not in engine.adapters:
            loaded = ", ".join(repr(n) for n in engine.adapters)
            return update_result(
                False, f"LoRA with name {name} does not exist. Loaded LoRAs: dict_keys([{loaded}])", with_adapters=False
            )
        del engine.adapters[name]
        return update_result(True)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/health_generate", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/completions", completion_handler(False, sglang_error), methods=["POST"]),
        Route("/v1/chat/completions", completion_handler(True, sglang_error), methods=["POST"]),
        Route("/load_lora_adapter", load, methods=["POST"]),
        Route("/unload_lora_adapter", unload, methods=["POST"]),
        Route("/metrics", metrics_handler(engine), methods=["GET"]),
    ]


def sglang_auth_exempt(path: str) -> bool:
    """utils/auth.py: health, readiness and metrics paths stay open (matched by prefix)."""
    return path.startswith(("/health", "/ready", "/metrics"))
