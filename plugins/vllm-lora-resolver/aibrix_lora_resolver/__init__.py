"""A vLLM ``LoRAResolver`` backed by the AIBrix runtime sidecar in the same pod.

vLLM consults resolvers when a request names a model it does not serve (and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``
is on). This one asks the sidecar (``POST /v1/lora_adapter/resolve``), which downloads the adapter with its own
credentials and outbound policy and answers with a local path; vLLM then loads that path itself. Credentials never
enter the engine container. Enabled by ``AIBRIX_LORA_RESOLVER=1``; without it, nothing is registered.

Settings (environment of the engine container):
  AIBRIX_LORA_RESOLVER          1 to register the resolver
  AIBRIX_LORA_RESOLVER_URL      the sidecar, default http://127.0.0.1:8080
  AIBRIX_LORA_RESOLVER_TIMEOUT  seconds to wait for a download and its checks, default 600
  AIBRIX_RUNTIME_API_KEY        sent as a bearer token when the sidecar requires one
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("vllm.aibrix_lora_resolver")  # under vLLM's logger, so its handlers show it

RESOLVER_NAME = "AIBrix Runtime"
DEFAULT_URL = "http://127.0.0.1:8080"
MAX_ANSWER = 64 * 1024  # the sidecar's answer is a small JSON object


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("AIBRIX_LORA_RESOLVER", "").strip().lower() in ("1", "true", "yes", "on")


def ask(url: str, lora_name: str, base_model: str, timeout: float, key: str | None) -> dict[str, Any] | None:
    """The sidecar's answer for ``lora_name``: its JSON on 200, None when it does not know the adapter or failed
    (the reason is in the sidecar's log and listing). Blocking; runs in a thread."""
    body = json.dumps({"lora_name": lora_name, "base_model": base_model}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/lora_adapter/resolve", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - a configured local URL
            return json.loads(response.read(MAX_ANSWER))
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            log.warning("AIBrix runtime could not resolve adapter %r: HTTP %d", lora_name, exc.code)
        return None
    except (OSError, ValueError) as exc:
        log.warning("AIBrix runtime unreachable while resolving adapter %r: %s", lora_name, exc)
        return None


def register() -> None:
    """The ``vllm.general_plugins`` entry point: register the resolver when enabled. vLLM may call this in several
    processes; registering twice replaces the first."""
    if not enabled():
        return
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

    url = os.environ.get("AIBRIX_LORA_RESOLVER_URL", DEFAULT_URL)
    timeout = float(os.environ.get("AIBRIX_LORA_RESOLVER_TIMEOUT", "600"))
    key = os.environ.get("AIBRIX_RUNTIME_API_KEY") or None

    class RuntimeResolver(LoRAResolver):
        async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
            answer = await asyncio.to_thread(ask, url, lora_name, base_model_name, timeout, key)
            if not answer or not isinstance(answer.get("lora_path"), str):
                return None
            # vLLM replaces the id with its own counter before loading
            return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=answer["lora_path"])

    LoRAResolverRegistry.register_resolver(RESOLVER_NAME, RuntimeResolver())
    log.info("AIBrix runtime LoRA resolver registered: unknown models are asked of %s", url)
