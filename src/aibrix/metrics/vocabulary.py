"""The standard ``aibrix:`` metric vocabulary: one name, type, unit and meaning whatever the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class Standard:
    name: str  # family name as exposed in text format (counters include _total)
    kind: Kind
    unit: str
    help: str


def _std(name: str, kind: Kind, unit: str, help: str) -> Standard:
    return Standard("aibrix:" + name, kind, unit, help)


VOCABULARY: tuple[Standard, ...] = (
    _std("num_requests_running", "gauge", "requests", "Requests currently being processed by the engine."),
    _std("num_requests_waiting", "gauge", "requests", "Requests queued and not yet scheduled."),
    _std("queue_size", "gauge", "requests", "Requests queued and not yet scheduled (same as num_requests_waiting)."),
    _std("num_requests_swapped", "gauge", "requests", "Requests swapped out to CPU memory."),
    _std("kv_cache_usage_perc", "gauge", "ratio", "Fraction of the KV cache in use, 0 to 1."),
    _std("gpu_cache_usage_perc", "gauge", "ratio", "Fraction of the GPU KV cache in use, 0 to 1."),
    _std("cpu_cache_usage_perc", "gauge", "ratio", "Fraction of the CPU (swap) KV cache in use, 0 to 1."),
    _std("engine_utilization", "gauge", "ratio", "Fraction of engine capacity in use, 0 to 1."),
    _std("prefix_cache_hit_rate", "gauge", "ratio", "Fraction of prompt tokens served from the prefix cache, 0 to 1."),
    _std("avg_prompt_throughput_toks_per_s", "gauge", "tokens/s", "Prompt (prefill) tokens processed per second."),
    _std("avg_generation_throughput_toks_per_s", "gauge", "tokens/s", "Generated tokens per second."),
    _std("prompt_tokens_total", "counter", "tokens", "Prompt (prefill) tokens processed."),
    _std("generation_tokens_total", "counter", "tokens", "Tokens generated."),
    _std("request_success_total", "counter", "requests", "Requests that finished successfully."),
    _std("num_preemptions_total", "counter", "preemptions", "Times the engine preempted a request."),
    _std("iteration_tokens_total", "histogram", "tokens", "Tokens processed per engine step."),
    _std("time_to_first_token_seconds", "histogram", "seconds", "Time from arrival to the first generated token."),
    _std(
        "time_per_output_token_seconds", "histogram", "seconds", "Time between generated tokens (inter-token latency)."
    ),
    _std("e2e_request_latency_seconds", "histogram", "seconds", "Time from arrival to the last token."),
    _std("request_queue_time_seconds", "histogram", "seconds", "Time a request waited before being scheduled."),
    _std("request_inference_time_seconds", "histogram", "seconds", "Time a request spent running (prefill + decode)."),
    _std("request_prefill_time_seconds", "histogram", "seconds", "Time a request spent in prefill."),
    _std("request_decode_time_seconds", "histogram", "seconds", "Time a request spent in decode."),
    _std("request_prompt_tokens", "histogram", "tokens", "Prompt length per request."),
    _std("request_generation_tokens", "histogram", "tokens", "Generated tokens per request."),
)

BY_NAME: dict[str, Standard] = {standard.name: standard for standard in VOCABULARY}
