"""vLLM: runtime LoRA through /v1/load_lora_adapter and /v1/unload_lora_adapter.

Facts (vllm-project/vllm): the routes exist only with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; success is a
plain-text 200 ("Success: LoRA adapter '<name>' added successfully."); errors are an ErrorResponse, flat
``{"object":"error","message","type","code"}`` up to ~0.9 and nested ``{"error":{...}}`` after
(vllm/entrypoints/openai/serving_models.py, vllm/entrypoints/openai/models/serving.py). A duplicate load is 400
"... has already been loaded"; unloading an unknown name is 404 NotFoundError (400 InvalidUserInput in 0.6.x).
"""

from __future__ import annotations

from aibrix.engines.base import Engine, engine_error, error_message
from aibrix.engines.client import Response
from aibrix.engines.errors import AdapterAlreadyLoaded, AdapterNotFound, NotSupported

ROUTE_MISSING = {"detail": "Not Found"}


class VLLMEngine(Engine):
    name = "vllm"
    lists_adapters = True

    async def load_adapter(self, lora_name: str, lora_path: str, *, auth: str | None = None) -> str:
        response = await self.client.request(
            "POST", "/v1/load_lora_adapter", json={"lora_name": lora_name, "lora_path": lora_path}, auth=auth
        )
        if response.is_success:
            return response.text
        self._raise_if_route_missing(response)
        message = error_message(response)
        if response.status_code == 400 and "has already been" in message:
            raise AdapterAlreadyLoaded(message)
        raise engine_error(response)

    async def unload_adapter(self, lora_name: str, *, auth: str | None = None) -> str:
        response = await self.client.request(
            "POST", "/v1/unload_lora_adapter", json={"lora_name": lora_name}, auth=auth
        )
        if response.is_success:
            return response.text
        self._raise_if_route_missing(response)
        message = error_message(response)
        if response.status_code in (400, 404) and "cannot be found" in message:
            raise AdapterNotFound(message)
        raise engine_error(response)

    @staticmethod
    def _raise_if_route_missing(response: Response) -> None:
        if response.status_code == 404 and _json_or_none(response) == ROUTE_MISSING:
            raise NotSupported(
                "vllm does not expose the LoRA adapter API: start it with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
                "and --enable-lora"
            )


def _json_or_none(response: Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
