"""The simulator's ASGI app: one engine's routes behind that engine's API-key rule and 404 body."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import disable_created_metrics
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aibrix.asgi import RecordingMiddleware, Seen
from aibrix.auth import bearer
from aibrix.sim import SIM_ENGINES
from aibrix.sim.engine import SimEngine, Timing
from aibrix.sim.lora_cache import LoadCost, LoRACache
from aibrix.sim.metrics import SGLangMetrics
from aibrix.sim.sglang import SGLangServing, sglang_auth_exempt, sglang_routes
from aibrix.sim.sglang_lora import SGLangLoRA, SGLangLoRAFlags
from aibrix.sim.vllm import VLLMLimits, vllm_auth_exempt, vllm_routes
from aibrix.sim.vllm_metrics import VLLMMetrics


class APIKeyMiddleware:
    """Answers 401 ``{"error": "Unauthorized"}`` without the right bearer key, as vLLM and SGLang do."""

    def __init__(self, app: ASGIApp, api_key: str, exempt: Callable[[str], bool]) -> None:
        self.app, self.expected, self.exempt = app, bearer(api_key), exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.exempt(scope["path"]):
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"").decode() != self.expected:
                await JSONResponse({"error": "Unauthorized"}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HTTPMetricsMiddleware(RecordingMiddleware):
    """Records each request as vLLM's prometheus-fastapi-instrumentator does (http_* families)."""

    def __init__(self, app: ASGIApp, metrics: VLLMMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    def record(self, scope: Scope, seen: Seen, seconds: float) -> None:
        received = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
        self.metrics.http_request(scope["path"], scope["method"], seen.status, seconds, (received, seen.body_bytes))


async def _not_found(request: Request, exc: Exception) -> Response:
    """FastAPI's default body for unknown routes, which both engines inherit."""
    if not isinstance(exc, HTTPException):
        raise exc
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


def build_sim_app(
    engine: str,
    model: str,
    *,
    api_key: str | None = None,
    allow_lora: bool = True,
    error_style: str = "nested",
    timing: Timing | None = None,
    max_running: int = 64,
    metrics_payload: bytes | None = None,
    vllm_limits: VLLMLimits | None = None,
    sglang_flags: SGLangLoRAFlags | None = None,
    sglang_serving: SGLangServing | None = None,
) -> Starlette:
    if engine == "vllm":
        limits = vllm_limits or VLLMLimits()
        vllm_metrics = VLLMMetrics(model, max_lora=limits.max_loras, max_model_len=limits.max_model_len)
        timing = timing or Timing()
        cost = LoadCost(timing.lora_load, timing.lora_load_per_rank, timing.lora_load_per_mb)
        cache = LoRACache(limits.max_cpu_loras or limits.max_loras, cost)
        state = SimEngine(model, vllm_metrics, timing, max_running=max_running, lora_cache=cache)
        routes = vllm_routes(state, error_style=error_style, allow_lora=allow_lora, limits=limits)
        exempt = vllm_auth_exempt
    elif engine == "sglang":
        flags = sglang_flags or SGLangLoRAFlags(enable_lora=True, max_lora_rank=64, target_modules=frozenset({"all"}))
        disable_created_metrics()  # type: ignore[no-untyped-call]  # SGLang has no *_created series; one engine a process
        lora_slots = flags.max_loras_per_batch if flags.enable_lora else None
        metrics = SGLangMetrics(model, max_total_tokens=65536, lora_slots=lora_slots)
        state = SimEngine(model, metrics, timing or Timing(), max_running=max_running, kv_capacity_tokens=65536)
        lora = SGLangLoRA(flags, state.adapters)
        lora.preload()
        routes, exempt = sglang_routes(state, lora, sglang_serving or SGLangServing()), sglang_auth_exempt
    else:
        raise ValueError(f"the simulator knows {', '.join(SIM_ENGINES)}, not {engine!r}")
    state.metrics_payload = metrics_payload
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_found})
    app.state.engine = state
    if api_key:
        app.add_middleware(APIKeyMiddleware, api_key=api_key, exempt=exempt)
    if engine == "vllm":
        app.add_middleware(HTTPMetricsMiddleware, metrics=vllm_metrics)
    return app
