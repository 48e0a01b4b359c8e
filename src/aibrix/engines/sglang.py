"""SGLang: runtime LoRA through /load_lora_adapter and /unload_lora_adapter.

Facts (sgl-project/sglang, python/sglang/srt/entrypoints/http_server.py and managers/io_struct.py): both routes
answer ``{"success", "error_message", "loaded_adapters"}``, 200 on success and 400 on every failure. Duplicate
loads say "... already loaded" (lora_manager.py) or "LoRA with name <n> already exists" (lora_registry.py);
unknown unloads say "LoRA with name <n> does not exist"; a server without --enable-lora says "LoRA is not enabled".
"""

from __future__ import annotations

from aibrix.engines.base import Engine, engine_error, error_message
from aibrix.engines.client import Response
from aibrix.engines.errors import AdapterAlreadyLoaded, AdapterNotFound, NotSupported


class SGLangEngine(Engine):
    name = "sglang"
    # /health runs a one-token generation and polls for it once a second (entrypoints/http_server.py,
    # health_generate; SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION defaults on in environ.py): at least a second, up to
    # SGLANG_HEALTH_CHECK_TIMEOUT (20 s). /ready answers at once from TokenizerManager.is_ready() (not paused and
    # healthy). Releases without /ready fall back to /health, given 3 s.
    ready_path = "/ready"
    ready_timeout = 3.0
    # --max-loaded-loras evicts the least recently used adapter on a load (tokenizer_control_mixin.py,
    # load_lora_adapter), and a request naming an evicted or unloaded adapter loads it back from lora_ref_cache
    # (tokenizer_manager.py, _resolve_lora_path): SGLang keeps every adapter it ever loaded until it restarts.
    restores_evicted = True

    async def load_adapter(self, lora_name: str, lora_path: str, *, auth: str | None = None) -> str:
        response = await self.client.request(
            "POST", "/load_lora_adapter", json={"lora_name": lora_name, "lora_path": lora_path}, auth=auth
        )
        message = self._check(response)
        if "already loaded" in message or "already exists" in message:
            raise AdapterAlreadyLoaded(message)
        if message:
            raise engine_error(response)
        return f"LoRA adapter '{lora_name}' loaded"

    async def unload_adapter(self, lora_name: str, *, auth: str | None = None) -> str:
        response = await self.client.request("POST", "/unload_lora_adapter", json={"lora_name": lora_name}, auth=auth)
        message = self._check(response)
        if "does not exist" in message:
            raise AdapterNotFound(message)
        if message:
            raise engine_error(response)
        return f"LoRA adapter '{lora_name}' unloaded"

    @staticmethod
    def _check(response: Response) -> str:
        """The failure message of a reply ("" on success); raises where the API itself is unavailable."""
        if response.status_code == 404:
            raise NotSupported(
                "sglang does not expose /load_lora_adapter: upgrade SGLang or start it with --enable-lora"
            )
        if response.is_success:
            return ""
        message = error_message(response) or f"sglang answered {response.status_code}"
        if "LoRA is not enabled" in message:
            raise NotSupported(f"sglang: {message}")
        return message
