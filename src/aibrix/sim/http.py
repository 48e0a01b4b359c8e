"""Small request/response helpers shared by the simulated engines."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from aibrix.sim.engine import SimEngine

# vLLM answers prometheus_client's CONTENT_TYPE_LATEST whatever the Accept header asks for.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object, or {} when the body is not one (engines then report missing fields)."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def metrics_handler(engine: SimEngine) -> Callable[[Request], Awaitable[Response]]:
    """Serves the engine's live metrics, or the replayed payload given with --metrics-payload."""

    async def metrics(request: Request) -> Response:
        body = engine.metrics_payload if engine.metrics_payload is not None else engine.metrics.render()
        return Response(body, headers={"content-type": METRICS_CONTENT_TYPE})

    return metrics
