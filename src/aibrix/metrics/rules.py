"""Which engine metric feeds each standard name, per engine, in priority order.

A source names the engine's metric as it appears on the wire: the sample name for gauges and counters
(``vllm:prompt_tokens_total``, TGI's suffix-less ``tgi_request_success``), the family name for histograms (its
``_bucket``/``_sum``/``_count`` samples follow). When several sources feed one standard name, the first one
present in a scrape wins, so an engine that exposes both an old and a new name is counted once.

Sources:
- vLLM V1: vllm/v1/metrics/loggers.py; V0: vllm/engine/metrics.py (gpu_cache_usage_perc, num_requests_swapped,
  cpu_cache_usage_perc, time_per_output_token_seconds, avg_*_throughput_toks_per_s).
- SGLang: python/sglang/srt/observability/metrics_collector.py (0.5.23; srt/metrics/collector.py before).
- xLLM: xllm/core/common/metrics.h (DECLARE_GAUGE / DECLARE_COUNTER), served by brpc at /brpc_metrics.
- TensorRT-LLM: tensorrt_llm/metrics/collector.py (``trtllm_`` prefix; older releases had none).
- TGI: docs/source/reference/metrics.md (router metrics; counters have no ``_total``).
- llama.cpp: tools/server/server.cpp (``llamacpp:`` metrics with --metrics).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    standard: str
    metric: str


@dataclass(frozen=True)
class HitRatio:
    """A ratio of two counters' increases between scrapes (e.g. prefix-cache hits over queries)."""

    standard: str
    numerator: str
    denominator: str


def _sources(pairs: list[tuple[str, str]]) -> tuple[Source, ...]:
    return tuple(Source("aibrix:" + standard, metric) for standard, metric in pairs)


def _latency(prefix: str) -> list[tuple[str, str]]:
    """Histograms that several engines name alike (vLLM and TensorRT-LLM share vLLM's names)."""
    names = ["time_to_first_token_seconds", "e2e_request_latency_seconds", "request_queue_time_seconds"] + [
        f"request_{phase}_time_seconds" for phase in ("inference", "prefill", "decode")
    ]
    return [(name, prefix + name) for name in names]


VLLM = _sources(
    [
        ("num_requests_running", "vllm:num_requests_running"),
        ("num_requests_waiting", "vllm:num_requests_waiting"),
        ("queue_size", "vllm:num_requests_waiting"),
        ("num_requests_swapped", "vllm:num_requests_swapped"),
        ("kv_cache_usage_perc", "vllm:kv_cache_usage_perc"),
        ("kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        ("gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"),
        ("gpu_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        ("cpu_cache_usage_perc", "vllm:cpu_cache_usage_perc"),
        ("avg_prompt_throughput_toks_per_s", "vllm:avg_prompt_throughput_toks_per_s"),
        ("avg_generation_throughput_toks_per_s", "vllm:avg_generation_throughput_toks_per_s"),
        ("prompt_tokens_total", "vllm:prompt_tokens_total"),
        ("generation_tokens_total", "vllm:generation_tokens_total"),
        ("request_success_total", "vllm:request_success_total"),
        ("num_preemptions_total", "vllm:num_preemptions_total"),
        ("iteration_tokens_total", "vllm:iteration_tokens_total"),
        ("time_per_output_token_seconds", "vllm:inter_token_latency_seconds"),
        ("time_per_output_token_seconds", "vllm:time_per_output_token_seconds"),
        *_latency("vllm:"),
        ("request_prompt_tokens", "vllm:request_prompt_tokens"),
        ("request_generation_tokens", "vllm:request_generation_tokens"),
    ]
)

SGLANG = _sources(
    [
        ("num_requests_running", "sglang:num_running_reqs"),
        ("num_requests_waiting", "sglang:num_queue_reqs"),
        ("queue_size", "sglang:num_queue_reqs"),
        ("kv_cache_usage_perc", "sglang:token_usage"),
        ("gpu_cache_usage_perc", "sglang:token_usage"),
        ("engine_utilization", "sglang:utilization"),
        ("prefix_cache_hit_rate", "sglang:cache_hit_rate"),
        ("avg_generation_throughput_toks_per_s", "sglang:gen_throughput"),
        ("prompt_tokens_total", "sglang:prompt_tokens_total"),
        ("generation_tokens_total", "sglang:generation_tokens_total"),
        ("time_to_first_token_seconds", "sglang:time_to_first_token_seconds"),
        ("time_per_output_token_seconds", "sglang:inter_token_latency_seconds"),
        ("time_per_output_token_seconds", "sglang:time_per_output_token_seconds"),
        ("e2e_request_latency_seconds", "sglang:e2e_request_latency_seconds"),
        ("request_queue_time_seconds", "sglang:queue_time_seconds"),
    ]
)

XLLM = _sources(
    [
        ("num_requests_running", "num_running_requests"),
        ("num_requests_waiting", "num_waiting_requests"),
        ("queue_size", "num_waiting_requests"),
        ("kv_cache_usage_perc", "kv_cache_utilization_perc"),
        ("gpu_cache_usage_perc", "kv_cache_utilization_perc"),
        ("engine_utilization", "engine_utilization"),
        ("prompt_tokens_total", "num_processing_tokens_total_prompt"),
        ("generation_tokens_total", "num_processing_tokens_total_generated"),
    ]
)

TRTLLM = _sources(
    [
        *[
            (standard, prefix + name)
            for standard, name in [
                ("num_requests_running", "num_requests_running"),
                ("num_requests_waiting", "num_requests_waiting"),
                ("queue_size", "num_requests_waiting"),
                ("kv_cache_usage_perc", "kv_cache_utilization"),
                ("gpu_cache_usage_perc", "kv_cache_utilization"),
                ("prefix_cache_hit_rate", "kv_cache_hit_rate"),
                ("prompt_tokens_total", "prompt_tokens_total"),
                ("generation_tokens_total", "generation_tokens_total"),
                ("request_success_total", "request_success_total"),
                ("time_per_output_token_seconds", "time_per_output_token_seconds"),
                *_latency(""),
            ]
            for prefix in ("trtllm_", "")
        ],
    ]
)

TGI = _sources(
    [
        ("num_requests_running", "tgi_batch_current_size"),
        ("num_requests_waiting", "tgi_queue_size"),
        ("queue_size", "tgi_queue_size"),
        ("request_success_total", "tgi_request_success"),
        ("e2e_request_latency_seconds", "tgi_request_duration"),
        ("request_queue_time_seconds", "tgi_request_queue_duration"),
        ("request_inference_time_seconds", "tgi_request_inference_duration"),
        ("time_per_output_token_seconds", "tgi_request_mean_time_per_token_duration"),
        ("request_prompt_tokens", "tgi_request_input_length"),
        ("request_generation_tokens", "tgi_request_generated_tokens"),
    ]
)

LLAMACPP = _sources(
    [
        ("num_requests_running", "llamacpp:requests_processing"),
        ("num_requests_waiting", "llamacpp:requests_deferred"),
        ("queue_size", "llamacpp:requests_deferred"),
        ("kv_cache_usage_perc", "llamacpp:kv_cache_usage_ratio"),
        ("gpu_cache_usage_perc", "llamacpp:kv_cache_usage_ratio"),
        ("avg_prompt_throughput_toks_per_s", "llamacpp:prompt_tokens_seconds"),
        ("avg_generation_throughput_toks_per_s", "llamacpp:predicted_tokens_seconds"),
        ("prompt_tokens_total", "llamacpp:prompt_tokens_total"),
        ("generation_tokens_total", "llamacpp:tokens_predicted_total"),
    ]
)

RULES: dict[str, tuple[Source, ...]] = {
    "vllm": VLLM,
    "sglang": SGLANG,
    "xllm": XLLM,
    "trtllm": TRTLLM,
    "tgi": TGI,
    "llamacpp": LLAMACPP,
}

# Ratios derived from counters where the engine has no gauge (vLLM V1 replaced its hit-rate gauge by counters).
HIT_RATIOS: dict[str, tuple[HitRatio, ...]] = {
    "vllm": (
        HitRatio("aibrix:prefix_cache_hit_rate", "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
        # vLLM 0.7-0.10 V1: deprecated names of the same counters (blocks before 0.8, tokens after).
        HitRatio(
            "aibrix:prefix_cache_hit_rate", "vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"
        ),
    ),
}

# Throughput gauges derived from the rate of a standard counter where no engine gauge feeds them.
RATE_DERIVED: dict[str, str] = {
    "aibrix:avg_prompt_throughput_toks_per_s": "aibrix:prompt_tokens_total",
    "aibrix:avg_generation_throughput_toks_per_s": "aibrix:generation_tokens_total",
}
