"""One pooled HTTP client per engine: keep-alive, timeouts on every call, errors typed."""

from __future__ import annotations

from typing import Any

import httpx

from aibrix.engines.errors import EngineTimeout, EngineUnavailable


class EngineClient:
    """Talks HTTP to the engine at ``endpoint``; maps transport failures to engine errors."""

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 2.0,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._default_auth = f"Bearer {api_key}" if api_key else None
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.endpoint,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            trust_env=False,
            # Loading the CA bundle costs ~2 MB of RSS; a plain-HTTP endpoint (the usual in-pod case) never uses it.
            verify=self.endpoint.startswith("https://"),
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        auth: str | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; ``auth`` is a full Authorization header value that wins over the default key."""
        headers = {}
        authorization = auth or self._default_auth
        if authorization:
            headers["Authorization"] = authorization
        try:
            return await self._http.request(
                method,
                path,
                json=json,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TimeoutException as exc:
            waited = timeout if timeout is not None else self._timeout
            raise EngineTimeout(f"engine at {self.endpoint} did not answer {method} {path} within {waited:g}s") from exc
        except httpx.TransportError as exc:
            raise EngineUnavailable(
                f"engine at {self.endpoint} is unreachable ({type(exc).__name__}: {exc or 'no detail'})"
            ) from exc

    async def aclose(self) -> None:
        await self._http.aclose()
