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
older releases. /health runs a one-token generation and polls for it once a second, so it takes about a second;
/ready answers at once (the health handlers in http_server.py). /metrics exists only with ``--enable-metrics``.
Adapters are named in requests as ``base:adapter`` or by ``lora_path``; a bare adapter name runs the base model
(entrypoints/openai/serving_base.py ``_parse_model_parameter``, ``_resolve_lora_path``); an empty prompt is 400
"Prompt cannot be empty" (serving_completions.py ``_validate_request``). LoRA bookkeeping: sglang_lora.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aibrix.sim.engine import SimEngine
from aibrix.sim.http import metrics_handler, read_json
from aibrix.sim.metrics import SGLangMetrics
from aibrix.sim.openai import completion_handler
from aibrix.sim.sglang_lora import SGLangLoRA, parse_model


@dataclass(frozen=True)
class SGLangServing:
    """How the simulated server was started: what SGLang's flags (and the simulator's pacing) decide."""

    list_adapters: bool = True
    enable_metrics: bool = True
    health_seconds: float = 1.0  # /health's generation and its one-second poll
    ready_route: bool = True  # False: a release before /ready


class SGLangRequests:
    """Which adapter a completion runs on, as SGLang picks it, and SGLang's own 400s for the request."""

    def __init__(self, engine: SimEngine, lora: SGLangLoRA) -> None:
        self.engine, self.lora = engine, lora

    def checks(self, body: dict[str, Any], chat: bool) -> tuple[int, str, str] | None:
        prompt = body.get("prompt")
        if not chat and (not prompt or (isinstance(prompt, list) and all(not p for p in prompt))):
            return 400, "Prompt cannot be empty", "BadRequestError"
        return None

    async def acquire(self, body: dict[str, Any]) -> str | None:
        _, adapter = parse_model(str(body.get("model") or self.engine.model), self.engine.model)
        path = body.get("lora_path")
        adapter = adapter or (path if isinstance(path, str) and path else None)
        if adapter is not None:
            await self.lora.acquire(adapter)
            self._publish()
        return adapter

    async def release(self, adapter: str) -> None:
        await self.lora.release(adapter)
        self._publish()

    def _publish(self) -> None:
        metrics = self.engine.metrics
        if isinstance(metrics, SGLangMetrics):
            metrics.set_lora_pool(self.lora.pool()[0])


def sglang_error(code: int, message: str, type: str) -> Response:
    """SGLang's OpenAI-route error body (python/sglang/srt/entrypoints/openai/protocol.py ErrorResponse)."""
    return JSONResponse(
        {"object": "error", "message": message, "type": type, "param": None, "code": code}, status_code=code
    )


def sglang_routes(engine: SimEngine, lora: SGLangLoRA, serving: SGLangServing) -> list[Route]:
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
        await asyncio.sleep(serving.health_seconds)
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
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
        if serving.list_adapters:
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
        await asyncio.sleep(engine.timing.lora_load)
        ok, message, _ = await lora.load(str(name), str(path), body.get("pinned") is True)
        # refusals raised before the backend answers (ValueError in load_lora_adapter) carry no loaded_adapters
        return update_result(ok, message, with_adapters=not message.startswith(("LoRA is not", "Didn't find")))

    async def unload(request: Request) -> Response:
        body = await read_json(request)
        message = await lora.unload(str(body.get("lora_name")))
        return update_result(not message, message, with_adapters=not message.startswith(("LoRA with name", "LoRA is")))

    requests = SGLangRequests(engine, lora)
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/health_generate", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/completions", completion_handler(False, sglang_error, sglang=requests), methods=["POST"]),
        Route("/v1/chat/completions", completion_handler(True, sglang_error, sglang=requests), methods=["POST"]),
        Route("/load_lora_adapter", load, methods=["POST"]),
        Route("/unload_lora_adapter", unload, methods=["POST"]),
    ]
    if serving.ready_route:
        routes.append(Route("/ready", ready, methods=["GET"]))
    if serving.enable_metrics:
        routes.append(Route("/metrics", metrics_handler(engine), methods=["GET"]))
    return routes


def sglang_auth_exempt(path: str) -> bool:
    """utils/auth.py: health, readiness and metrics paths stay open (matched by prefix)."""
    return path.startswith(("/health", "/ready", "/metrics"))
