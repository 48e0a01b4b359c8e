"""The runtime's own metric families render as valid Prometheus text that prometheus_client reads back."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from aibrix.metrics.registry import Counter, Gauge, Histogram, Registry


def read(registry: Registry) -> dict:
    return {
        family.name: (family.type, {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples})
        for family in text_string_to_metric_families(registry.render())
    }


def test_counter_gauge_and_histogram_round_trip():
    registry = Registry()
    ops = registry.add(Counter("ops", "Operations.", ["kind"]))
    level = registry.add(Gauge("level", "A level."))
    latency = registry.add(Histogram("latency_seconds", "Latency.", ["route"], buckets=[0.1, 1.0]))
    assert isinstance(ops, Counter) and isinstance(level, Gauge) and isinstance(latency, Histogram)
    ops.labels('we"ird\\name\n').inc(2)
    level.set(0.5)
    for value in (0.05, 0.1, 0.5, 7.0):
        latency.labels("/x").observe(value)
    families = read(registry)
    assert families["ops"] == ("counter", {("ops_total", (("kind", 'we"ird\\name\n'),)): 2.0})
    assert families["level"] == ("gauge", {("level", ()): 0.5})
    kind, samples = families["latency_seconds"]
    assert kind == "histogram"
    assert samples[("latency_seconds_bucket", (("le", "0.1"), ("route", "/x")))] == 2.0  # le is inclusive
    assert samples[("latency_seconds_bucket", (("le", "1.0"), ("route", "/x")))] == 3.0
    assert samples[("latency_seconds_bucket", (("le", "+Inf"), ("route", "/x")))] == 4.0
    assert samples[("latency_seconds_count", (("route", "/x"),))] == 4.0
    assert samples[("latency_seconds_sum", (("route", "/x"),))] == 7.65
