"""Engine adapters: one module per engine behind the small ``Engine`` interface."""

from __future__ import annotations

from aibrix.engines.base import Engine, ModelCard
from aibrix.engines.client import EngineClient
from aibrix.engines.others import LlamaCppEngine, TGIEngine, TRTLLMEngine, XLLMEngine
from aibrix.engines.sglang import SGLangEngine
from aibrix.engines.vllm import VLLMEngine

ENGINES: dict[str, type[Engine]] = {
    cls.name: cls for cls in (VLLMEngine, SGLangEngine, XLLMEngine, TRTLLMEngine, TGIEngine, LlamaCppEngine)
}


def create_engine(name: str, client: EngineClient) -> Engine:
    """The adapter for engine ``name`` (one of ``ENGINES``), talking through ``client``."""
    try:
        return ENGINES[name](client)
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}") from None


__all__ = ["ENGINES", "Engine", "EngineClient", "ModelCard", "create_engine"]
