"""Standard ``aibrix:`` families from each engine's real payload shape."""

from __future__ import annotations

import pytest

from aibrix.metrics import Standardizer, read_standard
from tests.helpers.metric_pages import fixture, parsed


def standardized(engine: str, payload: str) -> dict[str, dict]:
    return parsed(payload + Standardizer(engine).render(payload, now=0.0))


def test_vllm_counters_survive_the_total_suffix():
    """The text format calls the family vllm:prompt_tokens and the sample ..._total: the rule must still fire."""
    families = standardized("vllm", fixture("vllm_v0_docs.txt"))
    assert families["aibrix:prompt_tokens"]["type"] == "counter"
    labels = (("model_name", "Qwen/Qwen2.5-Coder-1.5B-Instruct"),)
    assert families["aibrix:prompt_tokens"]["samples"][("aibrix:prompt_tokens_total", labels)] == 148.0
    assert families["aibrix:generation_tokens"]["samples"][("aibrix:generation_tokens_total", labels)] == 955.0
    success = families["aibrix:request_success"]["samples"]
    assert success[("aibrix:request_success_total", (("finished_reason", "stop"), *labels))] == 4.0
    assert families["aibrix:num_preemptions"]["type"] == "counter"


def test_vllm_v0_gauges_and_queue_size():
    families = standardized("vllm", fixture("vllm_v0_docs.txt"))
    labels = (("model_name", "Qwen/Qwen2.5-Coder-1.5B-Instruct"),)
    for name in (
        "aibrix:queue_size",
        "aibrix:num_requests_waiting",
        "aibrix:num_requests_running",
        "aibrix:num_requests_swapped",
        "aibrix:gpu_cache_usage_perc",
        "aibrix:kv_cache_usage_perc",
        "aibrix:cpu_cache_usage_perc",
    ):
        assert families[name]["type"] == "gauge"
        assert families[name]["samples"] == {(name, labels): 0.0}


def test_histograms_keep_every_sample():
    payload = fixture("vllm_v0_docs.txt")
    families = standardized("vllm", payload)
    source = families["vllm:iteration_tokens_total"]["samples"]
    target = families["aibrix:iteration_tokens_total"]
    assert target["type"] == "histogram"
    renamed = {(name.replace("vllm:", "aibrix:", 1), labels): value for (name, labels), value in source.items()}
    assert target["samples"] == renamed
    assert len(target["samples"]) == 16  # the 15 buckets and _sum the documented capture shows


def test_engine_payload_is_kept_unchanged_and_every_family_appears_once():
    payload = fixture("vllm_v0_docs.txt")
    out = payload + Standardizer("vllm").render(payload, now=0.0)
    assert out.startswith(payload)
    parsed(out)  # raises on a repeated family


def test_newer_name_wins_when_engine_exposes_both():
    payload = (
        '# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{engine="0"} 0.1\n'
        '# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine="0"} 0.7\n'
    )
    families = standardized("vllm", payload)
    assert families["aibrix:kv_cache_usage_perc"]["samples"] == {
        ("aibrix:kv_cache_usage_perc", (("engine", "0"),)): 0.7
    }


def test_v1_inter_token_latency_feeds_time_per_output_token():
    payload = (
        "# TYPE vllm:inter_token_latency_seconds histogram\n"
        'vllm:inter_token_latency_seconds_bucket{le="0.01"} 3.0\n'
        'vllm:inter_token_latency_seconds_bucket{le="+Inf"} 4.0\n'
        "vllm:inter_token_latency_seconds_sum 0.05\nvllm:inter_token_latency_seconds_count 4.0\n"
    )
    values = read_standard("vllm", payload)
    assert values["aibrix:time_per_output_token_seconds"] == pytest.approx(0.0125)


@pytest.mark.parametrize(
    "engine, name, expected",
    [
        ("vllm", "vllm_0_32_cpu.txt", {
            "aibrix:num_requests_running": 0.0, "aibrix:num_requests_waiting": 0.0, "aibrix:kv_cache_usage_perc": 0.0,
            "aibrix:prompt_tokens_total": 20.0, "aibrix:generation_tokens_total": 14.0,
            "aibrix:request_success_total": 3.0,
        }),
        ("sglang", "sglang.txt", {
            "aibrix:num_requests_running": 3.0, "aibrix:queue_size": 2.0, "aibrix:kv_cache_usage_perc": 0.25,
            "aibrix:avg_generation_throughput_toks_per_s": 812.5, "aibrix:prefix_cache_hit_rate": 0.4,
            "aibrix:prompt_tokens_total": 12800.0, "aibrix:engine_utilization": 0.3,
            "aibrix:time_to_first_token_seconds": 0.15, "aibrix:time_per_output_token_seconds": 0.01,
            "aibrix:e2e_request_latency_seconds": 1.5, "aibrix:request_success_total": None,
        }),
        ("xllm", "xllm_brpc.txt", {
            "aibrix:num_requests_running": 4.0, "aibrix:queue_size": 1.0, "aibrix:kv_cache_usage_perc": 0.42,
            "aibrix:prompt_tokens_total": 90000.0, "aibrix:generation_tokens_total": 30000.0,
            "aibrix:time_to_first_token_seconds": None,
        }),
        ("trtllm", "trtllm.txt", {
            "aibrix:num_requests_running": 2.0, "aibrix:queue_size": 1.0, "aibrix:kv_cache_usage_perc": 0.5,
            "aibrix:prefix_cache_hit_rate": 0.25, "aibrix:request_success_total": 20.0,
            "aibrix:time_to_first_token_seconds": 0.08,
        }),
        ("trtllm", "trtllm_legacy.txt", {
            "aibrix:kv_cache_usage_perc": 0.125, "aibrix:request_success_total": 7.0,
            "aibrix:e2e_request_latency_seconds": 0.6,
        }),
        ("tgi", "tgi.txt", {
            "aibrix:num_requests_running": 5.0, "aibrix:queue_size": 3.0, "aibrix:request_success_total": 11.0,
            "aibrix:e2e_request_latency_seconds": 0.9, "aibrix:request_queue_time_seconds": None,
        }),
        ("llamacpp", "llamacpp.txt", {
            "aibrix:num_requests_running": 1.0, "aibrix:queue_size": 2.0, "aibrix:prompt_tokens_total": 512.0,
            "aibrix:generation_tokens_total": 256.0, "aibrix:avg_prompt_throughput_toks_per_s": 640.0,
            "aibrix:avg_generation_throughput_toks_per_s": 42.5, "aibrix:kv_cache_usage_perc": None,
        }),
    ],
)  # fmt: skip
def test_each_engine_feeds_the_vocabulary(engine, name, expected):
    payload = fixture(name)
    values = read_standard(engine, payload)
    for standard, value in expected.items():
        assert values[standard] == (pytest.approx(value) if value is not None else None), standard
    parsed(payload + Standardizer(engine).render(payload, now=0.0))


def test_gauge_typed_counters_become_counters():
    """xLLM's brpc types its token counters as gauges; the standard family is a proper counter."""
    families = standardized("xllm", fixture("xllm_brpc.txt"))
    assert families["aibrix:prompt_tokens"]["type"] == "counter"
    assert families["aibrix:prompt_tokens"]["samples"] == {("aibrix:prompt_tokens_total", ()): 90000.0}


def test_counters_without_total_suffix_become_total():
    families = standardized("tgi", fixture("tgi.txt"))
    assert families["aibrix:request_success"]["samples"] == {("aibrix:request_success_total", ()): 11.0}


def test_summary_is_never_passed_off_as_histogram():
    families = standardized("tgi", fixture("tgi.txt"))
    assert "aibrix:request_queue_time_seconds" not in families
    assert families["aibrix:e2e_request_latency_seconds"]["type"] == "histogram"


def counters(prompt: float, generation: float, engine: str = "0") -> str:
    return (
        "# TYPE vllm:prompt_tokens_total counter\n"
        f'vllm:prompt_tokens_total{{engine="{engine}"}} {prompt}\n'
        "# TYPE vllm:generation_tokens_total counter\n"
        f'vllm:generation_tokens_total{{engine="{engine}"}} {generation}\n'
    )


def test_throughput_is_derived_from_counter_rates():
    standardizer = Standardizer("vllm", rate_window=10)
    first = standardizer.read(counters(100, 50), now=1000.0)
    assert first["aibrix:avg_prompt_throughput_toks_per_s"] is None  # no history yet
    second = standardizer.read(counters(600, 250), now=1010.0)
    assert second["aibrix:avg_prompt_throughput_toks_per_s"] == pytest.approx(50.0)
    assert second["aibrix:avg_generation_throughput_toks_per_s"] == pytest.approx(20.0)


def test_counter_reset_counts_the_new_value_as_increase():
    standardizer = Standardizer("vllm", rate_window=10)
    standardizer.read(counters(1000, 0), now=0.0)
    after_restart = standardizer.read(counters(200, 0), now=10.0)  # engine restarted, counter began again
    assert after_restart["aibrix:avg_prompt_throughput_toks_per_s"] == pytest.approx(20.0)


def test_rate_window_uses_the_newest_point_old_enough():
    standardizer = Standardizer("vllm", rate_window=10)
    standardizer.read(counters(0, 0), now=0.0)
    standardizer.read(counters(1000, 0), now=5.0)
    standardizer.read(counters(1100, 0), now=12.0)
    late = standardizer.read(counters(1300, 0), now=20.0)
    assert late["aibrix:avg_prompt_throughput_toks_per_s"] == pytest.approx((1300 - 1000) / 15)


def test_derived_throughput_is_per_engine_series_in_text():
    standardizer = Standardizer("vllm", rate_window=10)
    standardizer.render(counters(0, 0, "0") + counters(0, 0, "1").replace("# TYPE", "# X"), now=0.0)
    text = standardizer.render(counters(100, 0, "0") + counters(300, 0, "1").replace("# TYPE", "# X"), now=10.0)
    families = parsed(text)
    samples = families["aibrix:avg_prompt_throughput_toks_per_s"]["samples"]
    assert samples == {
        ("aibrix:avg_prompt_throughput_toks_per_s", (("engine", "0"),)): 10.0,
        ("aibrix:avg_prompt_throughput_toks_per_s", (("engine", "1"),)): 30.0,
    }


def hits(h: float, q: float, prefix: str = "vllm:prefix_cache") -> str:
    return (
        f'# TYPE {prefix}_hits_total counter\n{prefix}_hits_total{{engine="0"}} {h}\n'
        f'# TYPE {prefix}_queries_total counter\n{prefix}_queries_total{{engine="0"}} {q}\n'
    )


@pytest.mark.parametrize("prefix", ["vllm:prefix_cache", "vllm:gpu_prefix_cache"])
def test_prefix_cache_hit_rate_from_v1_counters(prefix):
    standardizer = Standardizer("vllm")
    assert standardizer.read(hits(0, 0, prefix), now=0.0)["aibrix:prefix_cache_hit_rate"] is None
    assert standardizer.read(hits(30, 100, prefix), now=10.0)["aibrix:prefix_cache_hit_rate"] == pytest.approx(0.3)


def test_both_hit_counter_generations_give_one_family():
    standardizer = Standardizer("vllm")
    standardizer.render(hits(0, 0) + hits(0, 0, "vllm:gpu_prefix_cache"), now=0.0)
    text = standardizer.render(hits(50, 100) + hits(1, 100, "vllm:gpu_prefix_cache"), now=10.0)
    assert text.count("# TYPE aibrix:prefix_cache_hit_rate") == 1
    assert 'aibrix:prefix_cache_hit_rate{engine="0"} 0.5' in text


def test_data_parallel_engines_are_summed_or_averaged():
    payload = (
        "# TYPE vllm:num_requests_running gauge\n"
        + "".join(f'vllm:num_requests_running{{engine="{i}"}} {i}\n' for i in range(8))
        + "# TYPE vllm:kv_cache_usage_perc gauge\n"
        + "".join(f'vllm:kv_cache_usage_perc{{engine="{i}"}} {i / 10}\n' for i in range(8))
    )
    values = read_standard("vllm", payload)
    assert values["aibrix:num_requests_running"] == 28.0
    assert values["aibrix:kv_cache_usage_perc"] == pytest.approx(0.35)
    assert values["aibrix:request_success_total"] is None


def test_existing_aibrix_family_is_not_duplicated():
    payload = "# TYPE aibrix:queue_size gauge\naibrix:queue_size 1\n# TYPE vllm:num_requests_waiting gauge\n"
    payload += "vllm:num_requests_waiting 4\n"
    parsed(payload + Standardizer("vllm").render(payload, now=0.0))


def test_malformed_value_raises_for_the_caller_to_fall_back():
    with pytest.raises(ValueError):
        Standardizer("vllm").render('vllm:prompt_tokens_total{engine="0"} not-a-number\n', now=0.0)


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="known"):
        Standardizer("nope")
