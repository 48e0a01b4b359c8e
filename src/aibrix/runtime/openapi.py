"""OpenAPI schema and a docs page, built only when --enable-docs asks for them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from aibrix import __version__
from aibrix.runtime.fields import json_schema
from aibrix.runtime.models import DownloadModelRequest, LoadAdapterRequest, ResolveAdapterRequest, UnloadAdapterRequest

_BODIES = (LoadAdapterRequest, UnloadAdapterRequest, ResolveAdapterRequest, DownloadModelRequest)

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}},
            "required": ["message", "type", "code"],
        }
    },
}


def _op(summary: str, ok: str, errors: dict[str, str], body: type | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok}}
    for code, text in errors.items():
        responses[code] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}},
        }
    return op


ENGINE_ERRORS = {"502": "engine unreachable or failed", "504": "engine timed out"}


def openapi_schema() -> dict[str, Any]:
    adapter_errors = {
        "400": "body is not JSON",
        "422": "invalid field",
        "501": "engine has no LoRA API",
        **ENGINE_ERRORS,
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "AIBrix AI Engine Runtime", "version": __version__},
        "paths": {
            "/healthz": {"get": _op("Liveness of the runtime process", "alive", {})},
            "/ready": {
                "get": _op("Readiness: the engine answers its health check", "ready", {"503": "engine not ready"})
            },
            "/v1/models": {"get": _op("Engine models and adapters as OpenAI model cards", "model list", ENGINE_ERRORS)},
            "/v1/lora_adapter/load": {
                "post": _op(
                    "Load a LoRA adapter (idempotent)",
                    "loaded, or already loaded from the same path",
                    {**adapter_errors, "409": "already loaded from another path"},
                    LoadAdapterRequest,
                )
            },
            "/v1/lora_adapter/unload": {
                "post": _op(
                    "Unload a LoRA adapter", "unloaded", {**adapter_errors, "404": "not loaded"}, UnloadAdapterRequest
                )
            },
            "/v1/lora_adapter/resolve": {
                "post": _op(
                    "Fetch an adapter nobody loaded from AIBRIX_LORA_SOURCE, for vLLM's resolver to load",
                    "the adapter's folder",
                    {"400": "body is not JSON", "422": "invalid field", "404": "no such adapter, or it failed"},
                    ResolveAdapterRequest,
                )
            },
            "/v1/lora_adapter": {"get": _op("Adapters this runtime manages, with their state", "adapter list", {})},
            "/v1/model/download": {
                "post": _op(
                    "Start a model download in the background",
                    "download status",
                    {"400": "bad request", "422": "invalid field"},
                    DownloadModelRequest,
                )
            },
            "/v1/model/list": {
                "get": _op("Model downloads and models on disk", "model list", {"400": "bad local_dir"})
            },
            "/metrics": {"get": _op("Engine metrics in Prometheus text format", "metrics", {})},
        },
        "components": {
            "schemas": {
                "Error": _ERROR,
                **{body.__name__: json_schema(body) for body in _BODIES},
            }
        },
    }


_DOCS_PAGE = """<!doctype html><html><head><title>AIBrix runtime API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div><script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>"""


async def _schema(request: Request) -> Response:
    return JSONResponse(openapi_schema())


async def _docs(request: Request) -> Response:
    return HTMLResponse(_DOCS_PAGE)


def docs_routes() -> list[Route]:
    return [Route("/openapi.json", _schema, methods=["GET"]), Route("/docs", _docs, methods=["GET"])]
