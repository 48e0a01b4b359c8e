"""vLLM 0.32's /metrics, family by family, as the simulator serves them.

Taken from a capture of real vLLM 0.32.0 (CPU build) and its source: v1/metrics/loggers.py (PrometheusStatLogger:
labels ``model_name`` and ``engine``, counters declared without ``_total``; token histograms bucketed 1-2-5 up to
``--max-model-len``; every ``finished_reason`` series exists at 0 from the start; ``lora_requests_info`` carries
``max_lora`` from ``--max-loras`` and, in both its running and waiting lists, every adapter with a request in flight:
v1/metrics/stats.py ``LoRARequestStates`` fills both dicts for each such adapter), and the API server's prometheus-fastapi-instrumentator
(``http_*``). tests/e2e/test_vllm_conformance.py compares the families, types, labels and buckets with a live vLLM.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, GCCollector, Histogram, PlatformCollector, ProcessCollector, Summary

from aibrix.sim.metrics import EngineMetrics, FinishedRequest

# fmt: off
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)
ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
PARAM_N_BUCKETS = (1, 2, 5, 10, 20)
PREEMPTION_BUCKETS = (1, 2, 3, 4, 5, 10, 20)
HTTP_HIGHR_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 7.5,
                      10.0, 30.0, 60.0)
# Counters and gauges vLLM keeps at 0 here (no KV connector, no multi-modal input, no admission limits).
IDLE_COUNTERS = {
    "vllm:estimated_flops_per_gpu": "Estimated number of floating point operations per GPU (for Model Flops Utilization calculations).",
    "vllm:estimated_read_bytes_per_gpu": "Estimated number of bytes read from memory per GPU (for Model Flops Utilization calculations).",
    "vllm:estimated_write_bytes_per_gpu": "Estimated number of bytes written to memory per GPU (for Model Flops Utilization calculations).",
    "vllm:external_prefix_cache_queries": "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
    "vllm:external_prefix_cache_hits": "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
    "vllm:mm_cache_queries": "Multi-modal cache queries, in terms of number of queried items.",
    "vllm:mm_cache_hits": "Multi-modal cache hits, in terms of number of cached items.",
    "vllm:num_preemptions": "Cumulative number of preemption from the engine.",
}
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
CACHE_CONFIG = {
    "_block_size_resolved": "True", "block_size": "128", "cache_dtype": "auto", "cache_hit_alignment_tokens": "None",
    "effective_attention_block_size": "128", "enable_mamba_shared_prefix_checkpoint": "False",
    "enable_prefix_caching": "True", "engine": "0", "gpu_memory_utilization": "0.92", "hash_block_size": "None",
    "is_attention_free": "False", "kv_cache_dtype_skip_layers": "[]", "kv_cache_layout": "None",
    "kv_cache_max_concurrency": "8192.0", "kv_cache_memory_bytes": "1073741824", "kv_cache_size_tokens": "2097152",
    "kv_offloading_backend": "native", "kv_offloading_size": "None", "kv_sharing_fast_prefill": "False",
    "mamba_block_size": "None", "mamba_cache_dtype": "auto", "mamba_cache_mode": "none",
    "mamba_page_size_padded": "None", "mamba_ssm_cache_dtype": "float32", "num_cpu_blocks": "None",
    "num_gpu_blocks": "16384", "num_gpu_blocks_override": "None", "prefix_cache_retention_interval": "0",
    "prefix_caching_hash_algo": "sha256", "prefix_match_unit": "None", "replayssm_buffer_len": "16",
    "skip_page_size_padded": "None", "sliding_window": "None", "swa_bounded_replay": "True",
    "use_kda_recoverssm": "False", "use_replayssm": "False", "user_specified_block_size": "False",
}
# fmt: on


def buckets_1_2_5(max_value: int) -> tuple[int, ...]:
    """1, 2, 5, 10, 20, 50, ... up to ``max_value`` (vllm/v1/metrics/loggers.py build_1_2_5_buckets)."""
    buckets: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(buckets)
            buckets.append(value)
        exponent += 1


class VLLMMetrics(EngineMetrics):
    def __init__(self, model: str, *, max_lora: int = 1, max_model_len: int = 32768) -> None:
        super().__init__({"model_name": model, "engine": "0"})
        self.max_lora = str(max_lora)
        self._engine_families(model, buckets_1_2_5(max_model_len))
        self._server_families()

    def _labelled(
        self, name: str, doc: str, label: str, values: tuple[str, ...], kind: type = Counter
    ) -> dict[str, Any]:
        family = kind(name, doc, [*self.labels, label], registry=self.registry)
        return {value: family.labels(**self.labels, **{label: value}) for value in values}

    def _engine_families(self, model: str, tokens: tuple[int, ...]) -> None:
        g, c, h = self.gauge, self.counter, self.histogram
        self.idle = {name: c(name, doc) for name, doc in IDLE_COUNTERS.items()}
        self.running = g("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = g("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self._labelled(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
            "reason",
            ("capacity", "deferred"),
            Gauge,
        )
        sleep = self._labelled(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            "sleep_state",
            ("awake", "weights_offloaded", "discard_all"),
            Gauge,
        )
        sleep["awake"].set(1)
        self.kv = g("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prefix_queries = c(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."
        )
        self.prefix_hits = c("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.")
        self.prompt = c("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.by_source = self._labelled(
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source.",
            "source",
            ("local_compute", "local_cache_hit", "external_kv_transfer"),
        )
        self.cached = c("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).")
        self.cached_by_source = self._labelled(
            "vllm:prompt_tokens_cached_by_source",
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
            "source",
            ("device", "host", "p2p", "disk", "external_unspecified"),
        )
        self.generation = c("vllm:generation_tokens", "Number of generation tokens processed.")
        self.success = self._labelled(
            "vllm:request_success", "Count of successfully processed requests.", "finished_reason", FINISHED_REASONS
        )
        rejections = Counter(
            "vllm:admission_rejections",
            "Number of admission attempts rejected by a queue limit, by reason.",
            ["model_name", "reason"],
            registry=self.registry,
        )
        for reason in ("max_num_queued_reqs", "max_num_queued_tokens"):
            rejections.labels(model, reason)
        self.prompt_hist = h("vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens)
        self.gen_hist = h("vllm:request_generation_tokens", "Number of generation tokens processed.", tokens)
        self.iteration = h(
            "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_BUCKETS
        )
        self.max_generation = h(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            tokens,
        )
        self.params_n = h("vllm:request_params_n", "Histogram of the n request parameter.", PARAM_N_BUCKETS)
        self.params_max_tokens = h(
            "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", tokens
        )
        self.ttft = h("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS)
        self.itl = h("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = h(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS,
        )
        self.e2e = h(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", LATENCY_BUCKETS
        )
        self.queue = h(
            "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", LATENCY_BUCKETS
        )
        self.phases = {
            phase: h(
                f"vllm:request_{phase}_time_seconds",
                f"Histogram of time spent in {phase.upper() if phase != 'inference' else 'RUNNING'} phase for request.",
                LATENCY_BUCKETS,
            )
            for phase in ("inference", "prefill", "decode")
        }
        self.preempted = h(
            "vllm:request_num_preemptions",
            "Histogram of the number of times a request was preempted.",
            PREEMPTION_BUCKETS,
        )
        self.prefill_kv = h(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            tokens,
        )
        self.lora_info = Gauge(
            "vllm:lora_requests_info",
            "Running stats on lora requests.",
            ["max_lora", "waiting_lora_adapters", "running_lora_adapters"],
            registry=self.registry,
        )
        self.lora_info.labels(self.max_lora, "", "").set_to_current_time()
        Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            list(CACHE_CONFIG),
            registry=self.registry,
        ).labels(**CACHE_CONFIG).set(1)
        self._running_adapters: dict[str, int] = {}

    def _server_families(self) -> None:
        """What vLLM's API server adds beside the engine: process and Python collectors, and
        prometheus-fastapi-instrumentator's http_* families."""
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        http, r = ["handler", "method", "status"], self.registry
        self.http_requests = Counter(
            "http_requests", "Total number of requests by method, status and handler.", http, registry=r
        )
        self.http_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations.",
            buckets=HTTP_HIGHR_BUCKETS,
            registry=r,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important.",
            ["handler", "method"],
            buckets=(0.1, 0.5, 1.0),
            registry=r,
        )
        self.http_request_size = Summary(
            "http_request_size_bytes", "Content length of incoming requests by handler.", ["handler"], registry=r
        )
        self.http_response_size = Summary(
            "http_response_size_bytes", "Content length of outgoing responses by handler.", ["handler"], registry=r
        )

    def http_request(self, handler: str, method: str, status: int, seconds: float, sizes: tuple[int, int]) -> None:
        self.http_requests.labels(handler, method, f"{status // 100}xx").inc()
        self.http_highr.observe(seconds)
        self.http_duration.labels(handler, method).observe(seconds)
        self.http_request_size.labels(handler).observe(sizes[0])
        self.http_response_size.labels(handler).observe(sizes[1])

    def set_load(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv.set(kv_usage)

    def request_started(self, adapter: str | None) -> None:
        if adapter:
            self._running_adapters[adapter] = self._running_adapters.get(adapter, 0) + 1
        self._publish_lora()

    def request_ended(self, adapter: str | None) -> None:
        if adapter and self._running_adapters.get(adapter):
            self._running_adapters[adapter] -= 1
            if not self._running_adapters[adapter]:
                del self._running_adapters[adapter]
        self._publish_lora()

    def _publish_lora(self) -> None:
        active = ",".join(sorted(self._running_adapters))
        self.lora_info.labels(self.max_lora, active, active).set_to_current_time()

    def finished(self, r: FinishedRequest) -> None:
        super().finished(r)
        hits = r.prompt_tokens // 2  # a plausible prefix-cache hit rate, so derived hit-rate metrics have data
        self.prefix_queries.inc(r.prompt_tokens)
        self.prefix_hits.inc(hits)
        self.cached.inc(hits)
        self.cached_by_source["device"].inc(hits)
        self.by_source["local_compute"].inc(r.prompt_tokens - hits)
        self.by_source["local_cache_hit"].inc(hits)
        self.success[r.reason if r.reason in self.success else "abort"].inc()
        self.iteration.observe(r.prompt_tokens)
        for _ in range(r.generated):
            self.iteration.observe(1)
        self.queue.observe(r.queued)
        self.prompt_hist.observe(r.prompt_tokens)
        self.prefill_kv.observe(r.prompt_tokens)
        self.phases["inference"].observe(r.e2e - r.queued)
        self.phases["prefill"].observe(max(0.0, r.ttft - r.queued))
        self.phases["decode"].observe(sum(r.itls))
        if r.itls:
            self.tpot.observe(sum(r.itls) / len(r.itls))
        self.preempted.observe(0)
        self.params_n.observe(1)
        self.params_max_tokens.observe(r.generated)
        self.max_generation.observe(r.generated)
        self.gen_hist.observe(r.generated)
