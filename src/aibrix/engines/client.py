"""The engine's HTTP client: the transport, with failures to talk told as the engine's errors."""

from __future__ import annotations

from typing import Any

from aibrix.engines.errors import EngineTimeout, EngineUnavailable
from aibrix.engines.transport import HTTPClient, Response, TransportError, TransportTimeout

__all__ = ["EngineClient", "Response"]


class EngineClient(HTTPClient):
    """Transport failures become EngineUnavailable (502) and EngineTimeout (504), naming the engine."""

    async def request(
        self, method: str, path: str, *, json: Any = None, auth: str | None = None, timeout: float | None = None
    ) -> Response:
        try:
            return await super().request(method, path, json=json, auth=auth, timeout=timeout)
        except TransportTimeout as exc:
            raise EngineTimeout(f"engine at {exc.message}") from None
        except TransportError as exc:
            raise EngineUnavailable(f"engine at {exc.message}") from exc.__cause__
