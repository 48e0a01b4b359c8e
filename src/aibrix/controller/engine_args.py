"""What an engine pod can hold, read from its engine container's arguments and the pod's annotations: for placement
(a pod never gets an adapter above its rank limit, nor more adapters than its slots), for the injected runtime's
environment (``AIBRIX_ENGINE_MAX_LORA_RANK``, ``AIBRIX_ENGINE_MAX_ADAPTERS``), and the metrics port a label names.

Defaults are the engines' own: vLLM 0.32 ``config/lora.py`` (``max_lora_rank`` 16, ``max_loras`` 1,
``max_cpu_loras`` defaults to ``max_loras``); SGLang 0.5.23 ``server_args.py`` has no default rank (it takes the
largest of ``--lora-paths``) and ``--max-loaded-loras`` unset means no limit, so nothing is set without the flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aibrix.controller.vocabulary import (
    MAX_ADAPTERS_ANNOTATION,
    MAX_RANK_ANNOTATION,
    METRIC_PORT_LABEL,
    RUNTIME_CONTAINER,
)

VLLM_DEFAULT_RANK = 16
VLLM_DEFAULT_LORAS = 1


def flag(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name N`` or ``--name=N`` (the last one wins, as argparse reads it)."""
    found = None
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            found = args[index + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def _number(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None


def engine_arguments(containers: list[dict[str, Any]]) -> list[str]:
    """Command and arguments of the engine container: the first one that is not the runtime."""
    engine = next((c for c in containers if c.get("name") != RUNTIME_CONTAINER), {})
    return [str(a) for a in [*(engine.get("command") or []), *(engine.get("args") or [])]]


@dataclass(frozen=True)
class PodLimits:
    """What one engine pod can hold; None where it cannot be known (no limit is assumed then)."""

    max_rank: int | None = None
    max_adapters: int | None = None
    max_loras: int | None = None  # vLLM's --max-loras as its arguments say (what lora_requests_info reports back)


def pod_limits(engine: str, containers: list[dict[str, Any]], annotations: dict[str, str] | None = None) -> PodLimits:
    """The engine's rank and adapter limits from its arguments (vLLM's default rank where the flag is absent), the
    pod's annotations ``adapter.model.aibrix.ai/max-lora-rank`` and ``.../max-adapters`` overriding them.

    Slots count only when declared (a flag or the annotation): vLLM's default of one (``max_cpu_loras`` defaults to
    ``max_loras``, 1) is its cache, not a cap on what its API keeps registered, and most deployments (the seed's
    examples among them) load many adapters without either flag; placement must not refuse them."""
    args = engine_arguments(containers)
    rank = _number(flag(args, "--max-lora-rank"))
    slots: int | None = None
    loras: int | None = None
    if engine == "vllm":
        rank = rank or VLLM_DEFAULT_RANK
        loras = _number(flag(args, "--max-loras"))
        slots = _number(flag(args, "--max-cpu-loras")) or loras
        loras = loras or VLLM_DEFAULT_LORAS
    elif engine == "sglang":
        slots = _number(flag(args, "--max-loaded-loras"))
    notes = annotations or {}
    rank = _number(notes.get(MAX_RANK_ANNOTATION, "").strip()) or rank
    slots = _number(notes.get(MAX_ADAPTERS_ANNOTATION, "").strip()) or slots
    return PodLimits(rank, slots, loras)


def limits_env(
    engine: str, containers: list[dict[str, Any]], annotations: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """The runtime's environment for the engine's rank and adapter limits, where they can be known (vLLM's
    default of one slot included: the runtime's slots gauge says what the engine's cache holds)."""
    limits = pod_limits(engine, containers, annotations)
    slots = limits.max_adapters or (VLLM_DEFAULT_LORAS if engine == "vllm" else None)
    env = [{"name": "AIBRIX_ENGINE_MAX_LORA_RANK", "value": str(limits.max_rank)}] if limits.max_rank else []
    return env + ([{"name": "AIBRIX_ENGINE_MAX_ADAPTERS", "value": str(slots)}] if slots else [])


def metrics_port(labels: dict[str, str]) -> int | None:
    """The ``model.aibrix.ai/metric-port`` label: where the engine serves metrics when not on its API port."""
    return _number(labels.get(METRIC_PORT_LABEL, "").strip())
