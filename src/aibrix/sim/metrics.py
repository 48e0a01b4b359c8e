"""Engine metrics in each engine's own names, types, labels and buckets.

vLLM V1: vllm/v1/metrics/loggers.py (PrometheusStatLogger): labels ``model_name`` and ``engine``; counters are
declared without ``_total`` (prometheus_client appends it and adds ``_created``).
SGLang: python/sglang/srt/metrics/collector.py (SchedulerMetricsCollector, TokenizerMetricsCollector): label
``model_name``; counters declared with ``_total`` (exposed the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    Summary,
    generate_latest,
)

# Bucket boundaries as each engine declares them.
# fmt: off
VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                     20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
VLLM_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                    40.0, 80.0)
VLLM_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                        240.0, 480.0, 960.0, 1920.0, 7680.0)
VLLM_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
VLLM_ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
PARAM_N_BUCKETS = (1, 2, 5, 10, 20)
HTTP_HIGHR_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 7.5,
                      10.0, 30.0, 60.0)
SGLANG_TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
SGLANG_ITL_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080,
                      0.100, 0.200, 0.400, 0.600, 0.800, 1.0, 2.0, 4.0, 6.0, 8.0)
SGLANG_E2E_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 800)
# fmt: on


@dataclass(frozen=True)
class FinishedRequest:
    prompt_tokens: int
    generated: int
    ttft: float
    itls: list[float]
    e2e: float
    queued: float
    reason: str


class EngineMetrics:
    """What the simulator reports as requests flow; subclasses name things as their engine does."""

    prompt: Counter
    generation: Counter
    ttft: Histogram
    itl: Histogram
    e2e: Histogram

    def __init__(self, labels: dict[str, str]) -> None:
        self.registry = CollectorRegistry()
        self.labels = labels

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def gauge(self, name: str, doc: str) -> Gauge:
        return Gauge(name, doc, list(self.labels), registry=self.registry).labels(**self.labels)

    def counter(self, name: str, doc: str) -> Counter:
        return Counter(name, doc, list(self.labels), registry=self.registry).labels(**self.labels)

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, doc, list(self.labels), registry=self.registry, buckets=buckets).labels(**self.labels)

    def set_load(self, running: int, waiting: int, kv_usage: float) -> None:
        raise NotImplementedError

    def finished(self, r: FinishedRequest) -> None:
        self.prompt.inc(r.prompt_tokens)
        self.generation.inc(r.generated)
        self.ttft.observe(r.ttft)
        for value in r.itls:
            self.itl.observe(value)
        self.e2e.observe(r.e2e)


class VLLMMetrics(EngineMetrics):
    def __init__(self, model: str, *, max_lora: int = 8) -> None:
        super().__init__({"model_name": model, "engine": "0"})
        cache_labels = [
            "block_size",
            "cache_dtype",
            "enable_prefix_caching",
            "gpu_memory_utilization",
            "num_gpu_blocks",
            "engine",
        ]
        Gauge(
            "vllm:cache_config_info", "Information of the LLMEngine CacheConfig", cache_labels, registry=self.registry
        ).labels("16", "auto", "True", "0.9", "81767", "0").set(1)
        self.lora_info = Gauge(
            "vllm:lora_requests_info",
            "Running stats on lora requests.",
            ["max_lora", "waiting_lora_adapters", "running_lora_adapters"],
            registry=self.registry,
        )
        self.max_lora = str(max_lora)
        self.running = self.gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = self.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv = self.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.preemptions = self.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        self.prompt = self.counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation = self.counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*self.labels, "finished_reason"],
            registry=self.registry,
        )
        self.prefix_queries = self.counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of tokens.")
        self.prefix_hits = self.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of tokens.")
        self.iteration = self.histogram(
            "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", VLLM_ITERATION_BUCKETS
        )
        self.ttft = self.histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", VLLM_TTFT_BUCKETS
        )
        self.itl = self.histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", VLLM_ITL_BUCKETS
        )
        self.e2e = self.histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", VLLM_LATENCY_BUCKETS
        )
        self.queue = self.histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            VLLM_LATENCY_BUCKETS,
        )
        self.prompt_hist = self.histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", VLLM_TOKEN_BUCKETS
        )
        self.gen_hist = self.histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", VLLM_TOKEN_BUCKETS
        )
        self.phases = {
            phase: self.histogram(f"vllm:request_{phase}_time_seconds", doc, VLLM_LATENCY_BUCKETS)
            for phase, doc in (
                ("inference", "Histogram of time spent in RUNNING phase for request."),
                ("prefill", "Histogram of time spent in PREFILL phase for request."),
                ("decode", "Histogram of time spent in DECODE phase for request."),
            )
        }
        self.params_n = self.histogram(
            "vllm:request_params_n", "Histogram of the n request parameter.", PARAM_N_BUCKETS
        )
        self.params_max_tokens = self.histogram(
            "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", VLLM_TOKEN_BUCKETS
        )
        self.max_generation = self.histogram(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            VLLM_TOKEN_BUCKETS,
        )
        self.lora_info.labels(self.max_lora, "", "").set_to_current_time()
        # What vLLM's API server adds beside the engine metrics: process and Python collectors, and
        # prometheus-fastapi-instrumentator's http_* families.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        http = ["handler", "method", "status"]
        self.http_requests = Counter(
            "http_requests", "Total number of requests by method, status and handler.", http, registry=self.registry
        )
        self.http_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations.",
            buckets=HTTP_HIGHR_BUCKETS,
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important.",
            ["handler", "method"],
            buckets=(0.1, 0.5, 1.0),
            registry=self.registry,
        )
        self.http_request_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler.",
            ["handler"],
            registry=self.registry,
        )
        self.http_response_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler.",
            ["handler"],
            registry=self.registry,
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

    def finished(self, r: FinishedRequest) -> None:
        super().finished(r)
        self.prefix_queries.inc(r.prompt_tokens)
        self.prefix_hits.inc(r.prompt_tokens // 2)
        self.success.labels(**self.labels, finished_reason=r.reason).inc()
        self.iteration.observe(r.prompt_tokens)
        for _ in range(r.generated):
            self.iteration.observe(1)
        self.queue.observe(r.queued)
        self.prompt_hist.observe(r.prompt_tokens)
        self.phases["inference"].observe(r.e2e - r.queued)
        self.phases["prefill"].observe(max(0.0, r.ttft - r.queued))
        self.phases["decode"].observe(sum(r.itls))
        self.params_n.observe(1)
        self.params_max_tokens.observe(r.generated)
        self.max_generation.observe(r.generated)
        self.gen_hist.observe(r.generated)


class SGLangMetrics(EngineMetrics):
    def __init__(self, model: str, *, max_total_tokens: int) -> None:
        super().__init__({"model_name": model})
        self.max_total_tokens = max_total_tokens
        self.running = self.gauge("sglang:num_running_reqs", "The number of running requests.")
        self.queue_reqs = self.gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.")
        self.used_tokens = self.gauge("sglang:num_used_tokens", "The number of used tokens.")
        self.token_usage = self.gauge("sglang:token_usage", "The token usage.")
        self.gen_throughput = self.gauge("sglang:gen_throughput", "The generation throughput (token/s).")
        self.cache_hit_rate = self.gauge("sglang:cache_hit_rate", "The prefix cache hit rate.")
        self.prompt = self.counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.")
        self.generation = self.counter("sglang:generation_tokens_total", "Number of generation tokens processed.")
        self.cached = self.counter("sglang:cached_tokens_total", "Number of cached prompt tokens.")
        self.requests = self.counter("sglang:num_requests_total", "Number of requests processed.")
        self.ttft = self.histogram(
            "sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", SGLANG_TTFT_BUCKETS
        )
        self.itl = self.histogram(
            "sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", SGLANG_ITL_BUCKETS
        )
        self.e2e = self.histogram(
            "sglang:e2e_request_latency_seconds",
            "Histogram of End-to-end request latency in seconds",
            SGLANG_E2E_BUCKETS,
        )

    def set_load(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.queue_reqs.set(waiting)
        self.token_usage.set(kv_usage)
        self.used_tokens.set(int(kv_usage * self.max_total_tokens))

    def finished(self, r: FinishedRequest) -> None:
        super().finished(r)
        self.cached.inc(r.prompt_tokens // 2)
        self.requests.inc()
        self.cache_hit_rate.set(0.5)
        if r.itls:
            self.gen_throughput.set(len(r.itls) / max(sum(r.itls), 1e-9))
