"""Engine metrics in each engine's own names, types, labels and buckets.

vLLM V1: vllm/v1/metrics/loggers.py (PrometheusStatLogger): labels ``model_name`` and ``engine``; counters are
declared without ``_total`` (prometheus_client appends it and adds ``_created``).
SGLang: python/sglang/srt/metrics/collector.py (SchedulerMetricsCollector, TokenizerMetricsCollector): label
``model_name``; counters declared with ``_total``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Bucket boundaries as declared by each engine.
VLLM_TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
VLLM_ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
VLLM_LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
VLLM_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SGLANG_TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
SGLANG_ITL_BUCKETS = (
    0.002,
    0.004,
    0.006,
    0.008,
    0.010,
    0.015,
    0.020,
    0.025,
    0.030,
    0.035,
    0.040,
    0.060,
    0.080,
    0.100,
    0.200,
    0.400,
    0.600,
    0.800,
    1.0,
    2.0,
    4.0,
    6.0,
    8.0,
)
SGLANG_E2E_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 800)


class EngineMetrics:
    """What the simulator reports as requests flow; subclasses name things as their engine does."""

    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        self.model = model

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def set_load(self, running: int, waiting: int, kv_usage: float) -> None:
        raise NotImplementedError

    def finished(
        self,
        *,
        prompt_tokens: int,
        generated: int,
        ttft: float,
        itls: list[float],
        e2e: float,
        queued: float,
        reason: str,
    ) -> None:
        raise NotImplementedError


class VLLMMetrics(EngineMetrics):
    def __init__(self, model: str, *, max_lora: int = 8) -> None:
        super().__init__(model)
        r, names = self.registry, ["model_name", "engine"]
        self.labels = {"model_name": model, "engine": "0"}
        Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            registry=r,
            labelnames=[
                "block_size",
                "cache_dtype",
                "enable_prefix_caching",
                "gpu_memory_utilization",
                "num_gpu_blocks",
                "engine",
            ],
        ).labels("16", "auto", "True", "0.9", "81767", "0").set(1)
        self.lora_info = Gauge(
            "vllm:lora_requests_info",
            "Running stats on lora requests.",
            registry=r,
            labelnames=["max_lora", "waiting_lora_adapters", "running_lora_adapters"],
        )
        self.max_lora = str(max_lora)
        self.running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", names, registry=r
        ).labels(**self.labels)
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", names, registry=r
        ).labels(**self.labels)
        self.kv = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", names, registry=r
        ).labels(**self.labels)
        self.preemptions = Counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.", names, registry=r
        ).labels(**self.labels)
        self.prompt = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", names, registry=r).labels(
            **self.labels
        )
        self.generation = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", names, registry=r
        ).labels(**self.labels)
        self.success = Counter(
            "vllm:request_success", "Count of successfully processed requests.", names + ["finished_reason"], registry=r
        )
        self.prefix_queries = Counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            names,
            registry=r,
        ).labels(**self.labels)
        self.prefix_hits = Counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", names, registry=r
        ).labels(**self.labels)
        self.iteration = Histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            names,
            registry=r,
            buckets=(1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
        ).labels(**self.labels)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            names,
            registry=r,
            buckets=VLLM_TTFT_BUCKETS,
        ).labels(**self.labels)
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            names,
            registry=r,
            buckets=VLLM_ITL_BUCKETS,
        ).labels(**self.labels)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            names,
            registry=r,
            buckets=VLLM_LATENCY_BUCKETS,
        ).labels(**self.labels)
        self.queue = Histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            names,
            registry=r,
            buckets=VLLM_LATENCY_BUCKETS,
        ).labels(**self.labels)
        self.prompt_hist = Histogram(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            names,
            registry=r,
            buckets=VLLM_TOKEN_BUCKETS,
        ).labels(**self.labels)
        self.gen_hist = Histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            names,
            registry=r,
            buckets=VLLM_TOKEN_BUCKETS,
        ).labels(**self.labels)
        self.set_lora([], [])

    def set_lora(self, running: list[str], waiting: list[str]) -> None:
        self.lora_info.clear()
        self.lora_info.labels(self.max_lora, ",".join(waiting), ",".join(running)).set_to_current_time()

    def set_load(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv.set(kv_usage)

    def finished(
        self,
        *,
        prompt_tokens: int,
        generated: int,
        ttft: float,
        itls: list[float],
        e2e: float,
        queued: float,
        reason: str,
    ) -> None:
        self.prompt.inc(prompt_tokens)
        self.generation.inc(generated)
        self.prefix_queries.inc(prompt_tokens)
        self.prefix_hits.inc(prompt_tokens // 2)
        self.success.labels(model_name=self.model, engine="0", finished_reason=reason).inc()
        self.iteration.observe(prompt_tokens)
        for _ in range(generated):
            self.iteration.observe(1)
        self.ttft.observe(ttft)
        for value in itls:
            self.itl.observe(value)
        self.e2e.observe(e2e)
        self.queue.observe(queued)
        self.prompt_hist.observe(prompt_tokens)
        self.gen_hist.observe(generated)


class SGLangMetrics(EngineMetrics):
    def __init__(self, model: str, *, max_total_tokens: int) -> None:
        super().__init__(model)
        r, names = self.registry, ["model_name"]
        self.labels = {"model_name": model}
        self.max_total_tokens = max_total_tokens
        self.running = Gauge("sglang:num_running_reqs", "The number of running requests.", names, registry=r).labels(
            **self.labels
        )
        self.queue_reqs = Gauge(
            "sglang:num_queue_reqs", "The number of requests in the waiting queue.", names, registry=r
        ).labels(**self.labels)
        self.used_tokens = Gauge("sglang:num_used_tokens", "The number of used tokens.", names, registry=r).labels(
            **self.labels
        )
        self.token_usage = Gauge("sglang:token_usage", "The token usage.", names, registry=r).labels(**self.labels)
        self.gen_throughput = Gauge(
            "sglang:gen_throughput", "The generation throughput (token/s).", names, registry=r
        ).labels(**self.labels)
        self.cache_hit_rate = Gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", names, registry=r).labels(
            **self.labels
        )
        self.prompt = Counter(
            "sglang:prompt_tokens_total", "Number of prefill tokens processed.", names, registry=r
        ).labels(**self.labels)
        self.generation = Counter(
            "sglang:generation_tokens_total", "Number of generation tokens processed.", names, registry=r
        ).labels(**self.labels)
        self.cached = Counter(
            "sglang:cached_tokens_total", "Number of cached prompt tokens.", names, registry=r
        ).labels(**self.labels)
        self.requests = Counter("sglang:num_requests_total", "Number of requests processed.", names, registry=r).labels(
            **self.labels
        )
        self.ttft = Histogram(
            "sglang:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            names,
            registry=r,
            buckets=SGLANG_TTFT_BUCKETS,
        ).labels(**self.labels)
        self.itl = Histogram(
            "sglang:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            names,
            registry=r,
            buckets=SGLANG_ITL_BUCKETS,
        ).labels(**self.labels)
        self.e2e = Histogram(
            "sglang:e2e_request_latency_seconds",
            "Histogram of End-to-end request latency in seconds",
            names,
            registry=r,
            buckets=SGLANG_E2E_BUCKETS,
        ).labels(**self.labels)

    def set_load(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.queue_reqs.set(waiting)
        self.token_usage.set(kv_usage)
        self.used_tokens.set(int(kv_usage * self.max_total_tokens))

    def finished(
        self,
        *,
        prompt_tokens: int,
        generated: int,
        ttft: float,
        itls: list[float],
        e2e: float,
        queued: float,
        reason: str,
    ) -> None:
        self.prompt.inc(prompt_tokens)
        self.generation.inc(generated)
        self.cached.inc(prompt_tokens // 2)
        self.requests.inc()
        self.cache_hit_rate.set(0.5)
        if itls:
            self.gen_throughput.set(len(itls) / max(sum(itls), 1e-9))
        self.ttft.observe(ttft)
        for value in itls:
            self.itl.observe(value)
        self.e2e.observe(e2e)
