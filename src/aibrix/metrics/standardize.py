"""Turn an engine's Prometheus text into the standard ``aibrix:`` families, at wire speed.

Works on the exposition text line by line instead of parsing it into objects: a sample that feeds a standard
name is copied with its name replaced and everything after the name (labels, value, timestamp) kept byte for
byte, so types, labels, values and every histogram sample survive exactly. Counters are matched by their
``_total`` sample names, so no counter rule can be silently lost to a parser that strips the suffix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aibrix.metrics.rates import IncreaseTracker
from aibrix.metrics.rules import HIT_RATIOS, RATE_DERIVED, RULES
from aibrix.metrics.vocabulary import BY_NAME, VOCABULARY, Standard

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def split_sample(rest: str) -> tuple[str, float]:
    """Labels text (``{...}`` or empty) and value of a sample line after its name."""
    close = rest.rfind("}") + 1 if rest.startswith("{") else 0
    return rest[:close], float(rest[close:].split()[0])


class Standardizer:
    """Standard families for one engine's payloads; keeps counter history for the derived rates."""

    def __init__(self, engine: str, *, rate_window: float = 10.0) -> None:
        if engine not in RULES:
            raise ValueError(f"no metric rules for engine {engine!r}; known: {', '.join(RULES)}")
        self.engine = engine
        self.tracker = IncreaseTracker(rate_window)
        # One slot per (standard, source) in priority order, plus one per counter a ratio needs.
        self._slots: list[str] = []
        self._slot_source: list[str] = []
        self._by_standard: dict[str, list[int]] = {}
        self._lookup: dict[str, list[tuple[int, str]]] = {}
        for source in RULES[engine]:
            standard = BY_NAME[source.standard]
            slot = self._new_slot(standard.name, source.metric)
            suffixes = HISTOGRAM_SUFFIXES if standard.kind == "histogram" else ("",)
            for suffix in suffixes:
                self._lookup.setdefault(source.metric + suffix, []).append((slot, standard.name + suffix))
        self._ratios = HIT_RATIOS.get(engine, ())
        self._ratio_slots: dict[str, int] = {}
        for ratio in self._ratios:
            for metric in (ratio.numerator, ratio.denominator):
                if metric not in self._ratio_slots:
                    self._ratio_slots[metric] = self._new_slot(metric, metric)
                    self._lookup.setdefault(metric, []).append((self._ratio_slots[metric], metric))

    def _new_slot(self, standard: str, source: str) -> int:
        self._slots.append(standard)
        self._slot_source.append(source)
        self._by_standard.setdefault(standard, []).append(len(self._slots) - 1)
        return len(self._slots) - 1

    def _collect(self, payload: str) -> tuple[list[list[str]], dict[str, str]]:
        """Renamed sample lines per slot, and the declared type of every family."""
        found: list[list[str]] = [[] for _ in self._slots]
        types: dict[str, str] = {}
        lookup = self._lookup
        for line in payload.split("\n"):
            if not line:
                continue
            if line[0] == "#":
                if line.startswith("# TYPE "):
                    parts = line.split()
                    if len(parts) >= 4:
                        types[parts[2]] = parts[3]
                continue
            end = line.find("{")
            if end < 0:
                end = line.find(" ")
            actions = lookup.get(line[:end])
            if actions is not None:
                rest = line[end:]
                for slot, name in actions:
                    found[slot].append(name + rest)
        return found, types

    def _chosen(self, found: list[list[str]], types: dict[str, str], standard: str) -> list[str]:
        """Samples of the first source present; a histogram source must be declared a histogram (a summary's
        _sum/_count alone would make an invalid histogram)."""
        histogram = BY_NAME[standard].kind == "histogram"
        for slot in self._by_standard.get(standard, ()):
            if found[slot] and (not histogram or types.get(self._slot_source[slot]) == "histogram"):
                return found[slot]
        return []

    def _derived(self, standard: Standard, found: list[list[str]], types: dict[str, str], now: float) -> list[str]:
        """Samples of a standard gauge computed from counters, as ``name{labels} value`` lines."""
        lines: list[str] = []
        counter = RATE_DERIVED.get(standard.name)
        if counter is not None:
            for sample in self._chosen(found, types, counter):
                labels, value = split_sample(sample[len(counter) :])
                seen = self.tracker.increase(f"{counter}{labels}", value, now)
                if seen is not None and seen[1] > 0:
                    lines.append(f"{standard.name}{labels} {seen[0] / seen[1]}")
        for ratio in self._ratios:
            if ratio.standard != standard.name or not found[self._ratio_slots[ratio.denominator]]:
                continue
            hits = {}
            for sample in found[self._ratio_slots[ratio.numerator]]:
                labels, value = split_sample(sample[len(ratio.numerator) :])
                hits[labels] = self.tracker.increase(ratio.numerator + labels, value, now)
            for sample in found[self._ratio_slots[ratio.denominator]]:
                labels, value = split_sample(sample[len(ratio.denominator) :])
                queries = self.tracker.increase(ratio.denominator + labels, value, now)
                got = hits.get(labels)
                if queries is not None and got is not None and queries[0] > 0:
                    lines.append(f"{standard.name}{labels} {min(1.0, got[0] / queries[0])}")
            break  # the first pair of counters the engine exposes is the one used
        return lines

    def families(self, payload: str, now: float | None = None) -> Iterable[tuple[Standard, list[str]]]:
        """Each standard family the payload can feed, with its sample lines, in vocabulary order."""
        now = time.monotonic() if now is None else now
        found, types = self._collect(payload)
        for standard in VOCABULARY:
            lines = self._chosen(found, types, standard.name) or self._derived(standard, found, types, now)
            if lines:
                yield standard, lines
        self.tracker.forget_stale(now)

    def render(self, payload: str, now: float | None = None) -> str:
        """The standard families as Prometheus text (HELP, TYPE, samples), skipping names the payload has."""
        existing = _declared_aibrix_names(payload)
        out: list[str] = []
        for standard, lines in self.families(payload, now):
            if standard.name in existing:
                continue
            out.append(f"# HELP {standard.name} {standard.help}")
            out.append(f"# TYPE {standard.name} {standard.kind}")
            out.extend(lines)
        return "\n".join(out) + "\n" if out else ""

    def read(self, payload: str, now: float | None = None) -> dict[str, float | None]:
        """Every standard name with one value for the pod, or None where the engine does not provide it.

        Counts, throughputs and counters are summed over series (data-parallel engines, label sets); ratios are
        averaged; histograms give their mean (sum over count), None before the first observation.
        """
        values: dict[str, float | None] = {standard.name: None for standard in VOCABULARY}
        for standard, lines in self.families(payload, now):
            values[standard.name] = _aggregate(standard, lines)
        return values


def _aggregate(standard: Standard, lines: list[str]) -> float | None:
    if standard.kind == "histogram":
        total = count = 0.0
        for line in lines:
            name_end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=len(line))
            name = line[:name_end]
            if name.endswith("_sum"):
                total += split_sample(line[name_end:])[1]
            elif name.endswith("_count"):
                count += split_sample(line[name_end:])[1]
        return total / count if count else None
    values = [split_sample(line[len(standard.name) :])[1] for line in lines]
    if standard.unit == "ratio":
        return sum(values) / len(values)
    return sum(values)


def _declared_aibrix_names(payload: str) -> set[str]:
    if "# TYPE aibrix:" not in payload:
        return set()
    return {line.split()[2] for line in payload.split("\n") if line.startswith("# TYPE aibrix:")}


def read_standard(engine: str, payload: str) -> dict[str, float | None]:
    """One-shot library call: the standard values in ``payload`` (rates need history, so they read None)."""
    return Standardizer(engine).read(payload)
