"""Write the vocabulary and per-engine tables of docs/metrics.md from the rule tables (the code is the truth).

.venv/bin/python scripts/metrics_doc.py > docs/metrics.md      # tests/test_docs.py checks it is current
"""

from __future__ import annotations

from pathlib import Path

from aibrix.engines import ENGINES
from aibrix.metrics.rules import HIT_RATIOS, RATE_DERIVED, RULES
from aibrix.metrics.vocabulary import VOCABULARY

TITLES = {"vllm": "vLLM", "sglang": "SGLang", "xllm": "xLLM", "trtllm": "TensorRT-LLM", "tgi": "TGI",
          "llamacpp": "llama.cpp"}  # fmt: skip

INTRO = """# Metrics

`GET /metrics` on the runtime answers, in Prometheus text format 0.0.4:

1. the engine's own payload, byte for byte but for vLLM's superseded `vllm:lora_requests_info` series (below);
2. the standard `aibrix:` families below, each fed by the engine metric the tables name (same type, labels,
   values, and every `_bucket`/`_sum`/`_count` sample of a histogram) — unless `METRICS_RAW_PASSTHROUGH_MODE=1`
   or `METRICS_ENABLE_TRANSFORMATION=0` (the latter wins over everything);
3. the runtime's own metrics (last section).

If standardization fails on a payload, that scrape carries the raw payload and
`aibrix:runtime_metrics_transform_fallbacks_total` goes up. If the engine cannot be scraped within
`METRICS_SCRAPE_TIMEOUT` seconds (default 3), the answer still comes, with `aibrix:engine_up 0`.

Where an engine exposes several names for one meaning (vLLM V0 and V1, TensorRT-LLM with and without its
`trtllm_` prefix), the first one present in a scrape is used, so a value is never counted twice.

Library use (routers, the controller):

```python
from aibrix.metrics import Standardizer, read_standard

values = read_standard("sglang", payload)   # {"aibrix:queue_size": 2.0, ..., "aibrix:request_success_total": None}
reader = Standardizer("vllm")               # keeps counter history, so derived rates appear from the 2nd read
reader.read(payload)
```

`read` gives one value per pod: counts, throughputs and counters summed over series (data-parallel engines, label
sets), ratios averaged, histograms as their mean (`_sum / _count`). `None` means "not available" for this engine
(or not yet observed): fall back, do not read it as zero.
"""

DERIVED = """## Derived metrics

- `aibrix:avg_prompt_throughput_toks_per_s`, `aibrix:avg_generation_throughput_toks_per_s`: where the engine has no
  gauge (vLLM V1, SGLang's prompt side, TensorRT-LLM, xLLM), the increase of `aibrix:prompt_tokens_total` /
  `aibrix:generation_tokens_total` per second, per series, between the current scrape and the newest earlier scrape
  at least `METRICS_RATE_WINDOW_SECONDS` (default 10) old (or the oldest one kept, while none is that old). A lower
  value than before is a counter reset (engine restart): the new value counts as the increase, as PromQL's
  `rate()` does. The first scrape has no history, so these appear from the second scrape on.
- `aibrix:prefix_cache_hit_rate` for vLLM V1: increase of `vllm:prefix_cache_hits_total` over increase of
  `vllm:prefix_cache_queries_total` over the same window (the deprecated `vllm:gpu_prefix_cache_*` counters of
  vLLM 0.7–0.10 when the new ones are absent); absent while no query happened in the window. vLLM V0's
  `vllm:gpu_prefix_cache_hit_rate` gauge is not used: it reads -1 when it has no data.
"""

OWN_ROWS = [
    ("aibrix:engine_up", "gauge", "", "1 when the last engine scrape succeeded, else 0"),
    ("aibrix:runtime_info", "gauge",
     "`version`, `inference_engine` (the `INFERENCE_ENGINE` kind; not `engine`, which vLLM uses for its engine index)",
     "always 1"),  # fmt: skip
    ("aibrix:runtime_requests_total", "counter", "`method`, `route`, `status`",
     "requests to the runtime API (route template; `unmatched` for unknown paths)"),
    ("aibrix:runtime_request_duration_seconds", "histogram", "`method`, `route`", "time to answer them"),
    ("aibrix:runtime_adapter_operations_total", "counter", "`operation`, `outcome`",
     "adapter load/unload by outcome (`ok` or the error type)"),
    ("aibrix:runtime_adapter_operation_duration_seconds", "histogram", "`operation`",
     "their duration, engine call included"),
    ("aibrix:runtime_adapter_reloads_total", "counter", "", "adapters loaded again after the engine lost them"),
    ("aibrix:runtime_download_bytes_total", "counter", "", "bytes downloaded by the runtime"),
    ("aibrix:runtime_download_duration_seconds", "histogram", "", "download durations"),
    ("aibrix:lora_adapter_resolves_total", "counter", "`result`",
     "adapters vLLM's resolver asked for on first request, by `result`: `resolved` (fetched now, or waited for the "
     "fetch another request started), `already`, `not_found`, `failed`, `recent_miss` (answered from the miss cache)"),
    ("aibrix:lora_adapter_resolve_seconds", "histogram", "", "time to answer the resolver, download included"),
    ("aibrix:lora_adapter_loaded", "gauge", "`lora_name`", "1 for each adapter the runtime keeps loaded in the engine"),
    ("aibrix:lora_adapter_load_seconds", "histogram", "`phase`",
     "adapter load time by phase: `download` (the artifact) and `engine` (the engine's load call)"),
    ("aibrix:lora_adapter_load_failures_total", "counter", "`reason`",
     "failed adapter loads by reason (the error type: `AdapterRejected`, `RankTooHigh`, `NotFound`, "
     "`EngineUnavailable`, ...)"),
    ("aibrix:lora_adapter_reloads_total", "counter", "", "adapters loaded again after the engine lost them"),
    ("aibrix:lora_adapter_requests_active", "gauge", "`lora_name`, `state`",
     "1 for each adapter vLLM reports with requests `running` or `waiting` (the newest `vllm:lora_requests_info`)"),
    ("aibrix:lora_slots_used", "gauge", "", "adapters the runtime keeps loaded"),
    ("aibrix:lora_slots_total", "gauge", "",
     "adapters the engine can keep loaded, from `AIBRIX_ENGINE_MAX_ADAPTERS` (absent when not set)"),
    ("aibrix:runtime_metrics_scrape_duration_seconds", "histogram", "",
     "time to fetch and standardize the engine's metrics"),
    ("aibrix:runtime_metrics_transform_fallbacks_total", "counter", "",
     "scrapes served raw because standardization failed"),
]  # fmt: skip


def cell(engine: str, standard: str) -> str:
    sources = [f"`{source.metric}`" for source in RULES[engine] if source.standard == standard]
    derived = []
    if standard in RATE_DERIVED:
        derived.append(f"rate of `{RATE_DERIVED[standard]}`")
    derived += [f"Δ`{r.numerator}` / Δ`{r.denominator}`" for r in HIT_RATIOS.get(engine, ()) if r.standard == standard]
    if sources and derived:
        return " / ".join(sources) + "; else derived: " + "; ".join(derived)
    if sources:
        return " / ".join(sources)
    if derived and (standard not in RATE_DERIVED or _has_counter(engine, RATE_DERIVED[standard])):
        return "derived: " + "; ".join(derived)
    return "not available"


def _has_counter(engine: str, standard: str) -> bool:
    return any(source.standard == standard for source in RULES[engine])


def main() -> None:
    print(INTRO)
    print("## Vocabulary\n")
    print("| name | type | unit | meaning |")
    print("|---|---|---|---|")
    for standard in VOCABULARY:
        print(f"| `{standard.name}` | {standard.kind} | {standard.unit} | {standard.help} |")
    print("\n## Which engine metric feeds each name\n")
    print("Scrape paths: " + ", ".join(f"{TITLES[name]} `{cls.metrics_path}`" for name, cls in ENGINES.items()) + ".")
    print("Sources: see `src/aibrix/metrics/rules.py`, which cites each engine's metric definitions.\n")
    print("| name | " + " | ".join(TITLES[engine] for engine in RULES) + " |")
    print("|---|" + "---|" * len(RULES))
    for standard in VOCABULARY:
        print(f"| `{standard.name}` | " + " | ".join(cell(engine, standard.name) for engine in RULES) + " |")
    print()
    print(DERIVED)
    print("## The runtime's own metrics\n")
    print("| name | type | labels | meaning |")
    print("|---|---|---|---|")
    for name, kind, labels, meaning in OWN_ROWS:
        print(f"| `{name}` | {kind} | {labels} | {meaning} |")
    print()
    print((Path(__file__).parent / "metrics_doc_routers.md").read_text())  # prose with tables: kept as Markdown


if __name__ == "__main__":
    main()
