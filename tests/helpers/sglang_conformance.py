"""SGLang's answers as its 0.5.23 source gives them, case by case, each with where the source says so: the column
a real engine fills for vLLM (tests/helpers/conformance.py), for an engine that cannot run here. The simulator is
held to this table (tests/engines/test_sglang.py); docs/simulator.md prints it.

Paths are in the sglang==0.5.23 wheel, under python/sglang/srt/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BASE = "base-model"
# How the table's server is started: a deployment with LoRA and metrics on, a small pool to evict from.
FLAGS = (
    "--enable-lora",
    "--max-lora-rank",
    "16",
    "--lora-target-modules",
    "q_proj",
    "v_proj",
    "--max-loras-per-batch",
    "2",
    "--max-loaded-loras",
    "3",
    "--enable-metrics",
)
PLAIN_FLAGS = ("--max-lora-rank", "16", "--lora-target-modules", "all")  # LoRA and metrics left off, as by default


@dataclass(frozen=True)
class Row:
    """One request and what SGLang answers: the status, text the body holds (and must not hold), the adapters
    /v1/models lists after it (when given), and the source that says so."""

    name: str
    method: str
    path: str
    body: Any
    status: int
    holds: tuple[str, ...]
    source: str
    lacks: tuple[str, ...] = ()
    listed: tuple[str, ...] | None = None


def load(name: str, adapter: str, **extra: Any) -> dict[str, Any]:
    return {"lora_name": name, "lora_path": "{adapters}/" + adapter, **extra}


def complete(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "prompt": "Hello", "max_tokens": 2, **extra}


MIX = "managers/tokenizer_control_mixin.py load_lora_adapter"
VALIDATE = "lora/lora_manager.py validate_new_adapter"
RESOLVE = "managers/tokenizer_manager.py _resolve_lora_path"
PARSE = "entrypoints/openai/serving_base.py _parse_model_parameter"
# fmt: off
ROWS = [
    Row("readiness answers at once", "GET", "/ready", None, 200, (), "entrypoints/http_server.py ready"),
    Row("load an adapter (rank 8)", "POST", "/load_lora_adapter", load("a", "r8"), 200, ('"success":true', '"a"'),
        MIX, listed=("a",)),
    Row("load the same name again", "POST", "/load_lora_adapter", load("a", "r8"), 400,
        ("Failed to load LoRA adapter a because it is already loaded",), VALIDATE),
    Row("rank above --max-lora-rank", "POST", "/load_lora_adapter", load("big", "r64"), 400,
        ("LoRA adapter big with rank 64 is incompatible with the current LoRA memory pool configuration",),
        f"{VALIDATE}; lora/mem_pool.py can_support"),
    Row("a target module outside --lora-target-modules", "POST", "/load_lora_adapter", load("mlp", "r8-mlp"), 400,
        ("LoRA adapter mlp with rank 8 is incompatible with the current LoRA memory pool configuration",),
        f"{VALIDATE}; lora/mem_pool.py can_support"),
    Row("pin one adapter (max_loras_per_batch - 1 = 1 allowed)", "POST", "/load_lora_adapter",
        load("p", "r8", pinned=True), 200, ('"success":true',), VALIDATE),
    Row("pin a second", "POST", "/load_lora_adapter", load("p2", "r8", pinned=True), 400,
        ("It is not allowed to pin all slots in the LoRA memory pool",), VALIDATE),
    Row("load up to --max-loaded-loras", "POST", "/load_lora_adapter", load("b", "r8"), 200, ('"success":true',),
        MIX, listed=("a", "b", "p")),
    Row("one more evicts the least recently used unpinned one, and succeeds", "POST", "/load_lora_adapter",
        load("c", "r8"), 200, ('"success":true', '"c"'), MIX, lacks=('"a"',), listed=("b", "c", "p")),
    Row("a request naming the evicted adapter loads it back (and evicts the next)", "POST", "/v1/completions",
        complete(f"{BASE}:a"), 200, ('"text_completion"',), RESOLVE, listed=("a", "c", "p")),
    Row("an adapter never loaded", "POST", "/v1/completions", complete(f"{BASE}:never"), 400,
        ("Got LoRA adapter that has never been loaded: never",), RESOLVE),
    Row("a bare adapter name runs the base model", "POST", "/v1/completions", complete("b"), 200,
        ('"text_completion"',), PARSE, listed=("a", "c", "p")),
    Row("lora_path names the adapter", "POST", "/v1/completions", complete(BASE, lora_path="b"), 200,
        ('"text_completion"',), "entrypoints/openai/serving_base.py _resolve_lora_path", listed=("a", "b", "p")),
    Row("an empty prompt", "POST", "/v1/completions", complete(BASE, prompt=""), 400, ("Prompt cannot be empty",),
        "entrypoints/openai/serving_completions.py _validate_request"),
    Row("unload", "POST", "/unload_lora_adapter", {"lora_name": "b"}, 200, ('"success":true',),
        "managers/tokenizer_control_mixin.py unload_lora_adapter", listed=("a", "p")),
    Row("unload it again", "POST", "/unload_lora_adapter", {"lora_name": "b"}, 400,
        ("LoRA with name b does not exist",), "lora/lora_registry.py unregister"),
    Row("an unloaded adapter is not forgotten: a request loads it back", "POST", "/v1/completions",
        complete(f"{BASE}:b"), 200, ('"text_completion"',), RESOLVE, listed=("a", "b", "p")),
    Row("metrics: no *_created series, the LoRA pool, e2e buckets to 2400 s, SGLang's labels", "GET", "/metrics",
        None, 200, ("sglang:lora_pool_slots_total", "sglang:lora_pool_utilization", "sglang:utilization",
                    "sglang:queue_time_seconds", 'le="2400.0"', 'engine_type="unified"', 'tp_rank="0"',
                    'sglang:gen_throughput{engine_type="unified",model_name="base-model",moe_ep_rank="0",'
                    'pp_rank="0",tp_rank="0"} 0.0'),
        "observability/metrics_collector.py (multiprocess collector: no _created)", lacks=("_created",)),
]
# The same engine started without --enable-lora and --enable-metrics.
PLAIN_ROWS = [
    Row("load with LoRA off", "POST", "/load_lora_adapter", load("a", "r8"), 400,
        ("LoRA is not enabled. Please set `--enable-lora` to enable LoRA.",), MIX),
    Row("a request naming an adapter with LoRA off", "POST", "/v1/completions", complete(f"{BASE}:a"), 400,
        ("LoRA adapter 'a' was requested, but LoRA is not enabled",),
        "managers/tokenizer_manager.py _validate_and_resolve_lora (the enable_lora check)"),
    Row("no /metrics without --enable-metrics", "GET", "/metrics", None, 404, (),
        "entrypoints/http_server.py (add_prometheus_middleware only with enable_metrics)"),
]
# fmt: on
