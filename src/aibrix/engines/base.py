"""The small interface every engine adapter implements, plus shared reply handling."""

from __future__ import annotations

import json
import posixpath
from typing import Any, ClassVar

from aibrix.engines.client import EngineClient, Response
from aibrix.engines.errors import EngineError, EngineRejected, NotSupported
from aibrix.errors import capped

ModelCard = dict[str, Any]


class Engine:
    """An inference engine seen through its management API.

    Subclasses set the class attributes and override the adapter calls their engine supports.
    """

    name: ClassVar[str]
    metrics_path: ClassVar[str] = "/metrics"
    health_path: ClassVar[str] = "/health"
    # A cheap readiness route, asked first where the engine has one (a 404 falls back to ``health_path`` for good),
    # and the seconds a readiness probe is given unless RUNTIME_READY_TIMEOUT says otherwise.
    ready_path: ClassVar[str | None] = None
    ready_timeout: ClassVar[float] = 1.0
    models_path: ClassVar[str] = "/v1/models"
    lists_adapters: ClassVar[bool] = False  # /v1/models names loaded adapters (with ``parent``)
    # The engine evicts adapters on its own and loads them back on their next request (SGLang): one missing from
    # its list is not lost, and loading it again would only evict another.
    restores_evicted: ClassVar[bool] = False
    lora_hint: ClassVar[str] = "this engine has no API to load LoRA adapters at run time"

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self._ready_route = self.ready_path

    async def ready(self, *, timeout: float) -> None:
        """Return when the engine says it is ready (its readiness route, else its health check) with 2xx; raise
        EngineError otherwise."""
        path = self._ready_route or self.health_path
        response = await self.client.request("GET", path, timeout=timeout)
        if response.status_code == 404 and self._ready_route is not None:
            self._ready_route = None  # an older release without the route: its health check from now on
            return await self.ready(timeout=timeout)
        if not response.is_success:
            raise EngineError(
                f"engine readiness check {path} answered {response.status_code}: {error_message(response)}",
                status=503,
                type="EngineNotReady",
            )
        return None

    async def list_models(self, *, auth: str | None = None) -> list[ModelCard]:
        """The engine's OpenAI model cards, as the engine reports them."""
        response = await self.client.request("GET", self.models_path, auth=auth)
        raise_for_engine_error(response)
        try:
            data = response.json()["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError(
                f"engine answered {self.models_path} with an unexpected body: {response.text[:200]!r}"
            ) from exc
        return [card for card in data if isinstance(card, dict) and "id" in card]

    async def adapter_path(self, lora_name: str, *, auth: str | None = None) -> str | None:
        """The path the engine reports for a loaded adapter (an adapter card's ``root``), if it lists one."""
        for card in await self.list_models(auth=auth):
            if card.get("id") == lora_name and card.get("parent"):
                return card.get("root")
        return None

    async def load_adapter(self, lora_name: str, lora_path: str, *, auth: str | None = None) -> str:
        """Load an adapter; return the engine's success message."""
        raise NotSupported(f"{self.name}: {self.lora_hint}")

    async def unload_adapter(self, lora_name: str, *, auth: str | None = None) -> str:
        """Unload an adapter; return the engine's success message."""
        raise NotSupported(f"{self.name}: {self.lora_hint}")

    # Whether replace_adapter swaps the weights with no moment in which the name is unknown (vLLM's load_inplace).
    replaces_in_place = False

    async def replace_adapter(self, lora_name: str, new_path: str, old_path: str, *, auth: str | None = None) -> str:
        """Serve ``lora_name`` from ``new_path`` instead of ``old_path``. Without an in-place load this unloads first
        (requests naming it fail meanwhile); when the new load fails, the old one is loaded back before the error."""
        await self.unload_adapter(lora_name, auth=auth)
        try:
            return await self.load_adapter(lora_name, new_path, auth=auth)
        except BaseException:
            await self.load_adapter(lora_name, old_path, auth=auth)
            raise

    async def aclose(self) -> None:
        await self.client.aclose()


def same_path(a: str | None, b: str) -> bool:
    """Whether an adapter path an engine reports is the one asked for (normalized when absolute; a Hub id as is)."""
    if a is None:
        return False
    if a.startswith("/") and b.startswith("/"):
        return posixpath.normpath(a) == posixpath.normpath(b)
    return a.rstrip("/") == b.rstrip("/")


def error_message(response: Response) -> str:
    """The human message inside an engine error body, whatever shape the engine uses; capped, since it travels on
    into replies, records and status conditions."""
    return capped(_error_message(response))


def _error_message(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "error_message", "detail", "error"):
            if body.get(key):
                return body[key] if isinstance(body[key], str) else json.dumps(body[key])
    return response.text.strip()


def error_type(response: Response) -> str | None:
    """The error ``type`` inside a vLLM-style error body (flat or nested), if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    nested = body.get("error")
    if isinstance(nested, dict):
        return nested.get("type")
    value = body.get("type")
    return value if isinstance(value, str) else None


def engine_error(response: Response) -> EngineError:
    """The fitting EngineError for a non-2xx reply: 4xx pass through, 5xx become 502."""
    message = error_message(response)
    if response.status_code < 500:
        return EngineRejected(message, status=response.status_code, type=error_type(response) or "EngineRejected")
    return EngineError(f"engine failed with {response.status_code}: {message}", status=502, type="EngineError")


def raise_for_engine_error(response: Response) -> None:
    if not response.is_success:
        raise engine_error(response)
