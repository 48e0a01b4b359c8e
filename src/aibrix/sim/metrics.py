"""Engine metrics in each engine's own names, types, labels and buckets (vLLM's are in vllm_metrics.py).

SGLang 0.5.23: python/sglang/srt/observability/metrics_collector.py. Scheduler families (SchedulerMetricsCollector)
carry ``model_name, engine_type, tp_rank, pp_rank, moe_ep_rank`` (``scheduler_metric_labels``; ``engine_type`` is
"unified" without disaggregation, disaggregation/utils.py); tokenizer families (TokenizerMetricsCollector) carry
``model_name, engine_type`` (``tokenizer_metric_labels``). Counters are declared with ``_total``. SGLang serves them
through prometheus_client's multiprocess collector, which has no ``*_created`` series. The LoRA pool gauges exist
only with ``--enable-lora``; ``gen_throughput`` is logged per decode batch and reads 0 when nothing runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Bucket boundaries as SGLang declares them.
# fmt: off
SGLANG_TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
SGLANG_ITL_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080,
                      0.100, 0.200, 0.400, 0.600, 0.800, 1.0, 2.0, 4.0, 6.0, 8.0)
SGLANG_E2E_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800,
                      2400)
SGLANG_QUEUE_BUCKETS = (0.0, 0.001, 0.005, 0.010, 0.050, 0.100, 0.200, 0.500, 1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 50,
                        60, 70, 80, 90, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800,
                        2000, 2500, 3000)
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

    def gauge(self, name: str, doc: str, labels: dict[str, str] | None = None) -> Gauge:
        labels = self.labels if labels is None else labels
        return Gauge(name, doc, list(labels), registry=self.registry).labels(**labels)

    def counter(self, name: str, doc: str, labels: dict[str, str] | None = None) -> Counter:
        labels = self.labels if labels is None else labels
        return Counter(name, doc, list(labels), registry=self.registry).labels(**labels)

    def histogram(
        self, name: str, doc: str, buckets: tuple[float, ...], labels: dict[str, str] | None = None
    ) -> Histogram:
        labels = self.labels if labels is None else labels
        return Histogram(name, doc, list(labels), registry=self.registry, buckets=buckets).labels(**labels)

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
    def __init__(self, model: str, *, max_total_tokens: int, lora_slots: int | None = None) -> None:
        tokenizer = {"model_name": model, "engine_type": "unified"}
        super().__init__({**tokenizer, "tp_rank": "0", "pp_rank": "0", "moe_ep_rank": "0"})
        self.max_total_tokens = max_total_tokens
        self.busy = False
        self.running = self.gauge("sglang:num_running_reqs", "The number of running requests.")
        self.queue_reqs = self.gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.")
        self.used_tokens = self.gauge("sglang:num_used_tokens", "The number of used tokens.")
        self.token_usage = self.gauge("sglang:token_usage", "The token usage.")
        self.gen_throughput = self.gauge("sglang:gen_throughput", "The generation throughput (token/s).")
        self.cache_hit_rate = self.gauge("sglang:cache_hit_rate", "The prefix cache hit rate.")
        self.utilization = self.gauge("sglang:utilization", "The utilization.")
        self.queue_time = self.histogram(
            "sglang:queue_time_seconds", "Histogram of queueing time in seconds.", SGLANG_QUEUE_BUCKETS
        )
        self.lora_slots = None
        if lora_slots is not None:  # only with --enable-lora, as SGLang creates them
            self.lora_used = self.gauge(
                "sglang:lora_pool_slots_used", "Number of LoRA adapter slots currently occupied in GPU memory."
            )
            self.lora_total = self.gauge(
                "sglang:lora_pool_slots_total", "Total number of LoRA adapter slots available (max_loras_per_batch)."
            )
            self.lora_utilization = self.gauge(
                "sglang:lora_pool_utilization", "LoRA pool utilization ratio (used/total). 1.0 means pool is full."
            )
            self.lora_total.set(lora_slots)
            self.lora_slots = lora_slots
        self.prompt = self.counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", tokenizer)
        self.generation = self.counter(
            "sglang:generation_tokens_total", "Number of generation tokens processed.", tokenizer
        )
        self.cached = self.counter("sglang:cached_tokens_total", "Number of cached prompt tokens.", tokenizer)
        self.requests = self.counter("sglang:num_requests_total", "Number of requests processed.", tokenizer)
        ttft_doc = "Histogram of time to first token in seconds."
        self.ttft = self.histogram("sglang:time_to_first_token_seconds", ttft_doc, SGLANG_TTFT_BUCKETS, tokenizer)
        itl_doc = "Histogram of inter-token latency in seconds."
        self.itl = self.histogram("sglang:inter_token_latency_seconds", itl_doc, SGLANG_ITL_BUCKETS, tokenizer)
        e2e_doc = "Histogram of End-to-end request latency in seconds"
        self.e2e = self.histogram("sglang:e2e_request_latency_seconds", e2e_doc, SGLANG_E2E_BUCKETS, tokenizer)

    def set_load(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.queue_reqs.set(waiting)
        self.token_usage.set(kv_usage)
        self.utilization.set(kv_usage)
        self.used_tokens.set(int(kv_usage * self.max_total_tokens))
        self.busy = running > 0
        if not self.busy:
            self.gen_throughput.set(0)

    def set_lora_pool(self, used: int) -> None:
        if self.lora_slots is not None:
            self.lora_used.set(used)
            self.lora_utilization.set(used / self.lora_slots)

    def finished(self, r: FinishedRequest) -> None:
        super().finished(r)
        self.cached.inc(r.prompt_tokens // 2)
        self.requests.inc()
        self.queue_time.observe(r.queued)
        self.cache_hit_rate.set(0.5)
        if r.itls and self.busy:  # a decode batch still runs: its rate; idle, SGLang logs none and reads 0
            self.gen_throughput.set(len(r.itls) / max(sum(r.itls), 1e-9))
