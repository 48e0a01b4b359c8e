"""Engines without a run-time LoRA API: they still get health, model listing and metric scraping.

Scrape paths: xLLM serves brpc variables at /brpc_metrics (jd-opensource/xllm); trtllm-serve serves
/prometheus/metrics (NVIDIA/TensorRT-LLM, tensorrt_llm/serve/openai_server.py); TGI and llama.cpp's server
(with --metrics) serve /metrics.
"""

from __future__ import annotations

from aibrix.engines.base import Engine


class XLLMEngine(Engine):
    name = "xllm"
    metrics_path = "/brpc_metrics"


class TRTLLMEngine(Engine):
    name = "trtllm"
    metrics_path = "/prometheus/metrics"


class TGIEngine(Engine):
    name = "tgi"
    lora_hint = "TGI loads LoRA adapters only at start-up (--lora-adapters); it has no API to load them at run time"


class LlamaCppEngine(Engine):
    name = "llamacpp"
    lora_hint = (
        "llama.cpp's server only rescales adapters given at start-up (--lora, POST /lora-adapters); "
        "it cannot load new ones at run time"
    )
