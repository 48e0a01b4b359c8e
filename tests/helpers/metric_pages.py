"""Recorded engine metric pages (tests/fixtures/metrics), a strict reader for exposition text, and promtool."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metrics"
PROMTOOL = Path(__file__).resolve().parents[2] / ".tools" / "promtool"
# Lint remarks that follow from names fixed by the specification or by the engines themselves.
ACCEPTED_LINT = (
    "metric names should not contain ':'",  # aibrix:, vllm:, sglang:, llamacpp: namespaces
    "metric names should not contain abbreviated units",  # aibrix:avg_*_throughput_toks_per_s
    'non-counter metrics should not have "_total" suffix',  # vllm:iteration_tokens_total histogram
)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def parsed(text: str) -> dict[str, dict]:
    """Family name -> {type, samples: {(sample name, sorted labels): value}}; fails on a repeated family."""
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in out, f"family {family.name} appears twice"
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[family.name] = {"type": family.type, "samples": samples}
    return out
