"""Minimal counters, gauges and histograms rendered straight to Prometheus text.

The runtime renders its own metrics on every scrape; prometheus_client's generic renderer took ~1.4 ms for a
handful of labelled histograms, more than a scrape's whole budget. Children here keep their label text
pre-rendered, so rendering is string joins.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import Generic, TypeVar


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{name}="{_escape(str(value))}"' for name, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def number(value: float) -> str:
    """A sample value as the text format writes it."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Value:
    """One series of a counter or gauge."""

    __slots__ = ("label_text", "value")

    def __init__(self, label_text: str) -> None:
        self.label_text, self.value = label_text, 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def set(self, value: float) -> None:
        self.value = value


class Buckets:
    """One series of a histogram; counts are kept per bucket and made cumulative when rendered."""

    __slots__ = ("bounds", "bucket_labels", "counts", "label_text", "sum")

    def __init__(self, bounds: list[float], bucket_labels: list[str], label_text: str) -> None:
        self.bounds, self.bucket_labels, self.label_text = bounds, bucket_labels, label_text
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


Child = TypeVar("Child", Value, Buckets)


class Family(Generic[Child]):
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self.children: dict[tuple[str, ...], Child] = {}

    def labels(self, *values: str) -> Child:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self._new(values)
        return child

    def _new(self, values: tuple[str, ...]) -> Child:
        raise NotImplementedError

    def clear(self) -> None:
        """Drop every series (a gauge that mirrors a set which shrinks)."""
        self.children.clear()

    def render(self, lines: list[str]) -> None:
        lines.append(f"# HELP {self.exposed} {self.help}")
        lines.append(f"# TYPE {self.exposed} {self.kind}")

    @property
    def exposed(self) -> str:
        """The family name on the wire: text format 0.0.4 names a counter family after its ``_total`` sample."""
        return self.name + "_total" if self.kind == "counter" else self.name


class Counter(Family[Value]):
    kind = "counter"

    def _new(self, values: tuple[str, ...]) -> Value:
        return Value(_labels(self.labelnames, values))

    def inc(self, amount: float = 1.0) -> None:
        """For a family without labels."""
        self.labels().inc(amount)

    def set(self, value: float) -> None:
        """For a family without labels."""
        self.labels().set(value)

    def render(self, lines: list[str]) -> None:
        super().render(lines)
        lines.extend(f"{self.exposed}{child.label_text} {number(child.value)}" for child in self.children.values())


class Gauge(Counter):
    kind = "gauge"


class Histogram(Family[Buckets]):
    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float]) -> None:
        super().__init__(name, help, labelnames)
        self.bounds = sorted(float(b) for b in buckets) + [math.inf]

    def _new(self, values: tuple[str, ...]) -> Buckets:
        bucket_labels = [_labels(self.labelnames, values, f'le="{number(b)}"') for b in self.bounds]
        return Buckets(self.bounds, bucket_labels, _labels(self.labelnames, values))

    def observe(self, value: float) -> None:
        """For a family without labels."""
        self.labels().observe(value)

    def render(self, lines: list[str]) -> None:
        super().render(lines)
        for child in self.children.values():
            running = 0
            for count, label_text in zip(child.counts, child.bucket_labels, strict=True):
                running += count
                lines.append(f"{self.name}_bucket{label_text} {number(running)}")
            lines.append(f"{self.name}_sum{child.label_text} {number(child.sum)}")
            lines.append(f"{self.name}_count{child.label_text} {number(running)}")


AnyFamily = TypeVar("AnyFamily", bound=Counter | Histogram)


class Registry:
    def __init__(self) -> None:
        self.families: list[Counter | Histogram] = []

    def add(self, family: AnyFamily) -> AnyFamily:
        self.families.append(family)
        return family

    def render(self) -> str:
        lines: list[str] = []
        for family in self.families:
            family.render(lines)
        return "\n".join(lines) + "\n"
