"""Engine metrics in each engine's own names, types, labels and buckets (vLLM's are in vllm_metrics.py).

SGLang: python/sglang/srt/metrics/collector.py (SchedulerMetricsCollector, TokenizerMetricsCollector): label
``model_name``; counters declared with ``_total`` (exposed the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Bucket boundaries as SGLang declares them.
# fmt: off
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

    def request_started(self, adapter: str | None) -> None:
        """A request begins running (on ``adapter``, or the base model when None)."""

    def request_ended(self, adapter: str | None) -> None:
        """A request stops running."""

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
