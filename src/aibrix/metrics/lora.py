"""Which adapters an engine is serving requests for right now, read from a metrics page: vLLM's own
``vllm:lora_requests_info`` or the runtime's standardized ``aibrix:lora_adapter_requests_active``.

vLLM (v1/metrics/loggers.py, v1/metrics/stats.py ``LoRARequestStates``) keeps one series per combination the adapter
lists have been in, never removing old ones; each is set to the time it was last current, so the newest is now. Both
lists name every adapter with a request in flight (running or waiting), joined by commas: names only, no counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from aibrix.metrics.standardize import split_sample

LORA_INFO = "vllm:lora_requests_info{"
ACTIVE = "aibrix:lora_adapter_requests_active{"
SGLANG_POOL = "sglang:lora_pool_slots_used"
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def lines_starting(text: str, prefix: str) -> Iterator[str]:
    """The lines of ``text`` that start with ``prefix``, found by searching: a scrape never splits the whole page
    (vLLM's is ~60 KB; splitting it cost ~100 µs per scrape, searching ~15 µs)."""
    marker = "\n" + prefix
    found = text.find(marker)
    start = 0 if text.startswith(prefix) else (-1 if found == -1 else found + 1)
    while start != -1:
        end = text.find("\n", start)
        yield text[start:] if end == -1 else text[start:end]
        found = -1 if end == -1 else text.find(marker, end)
        start = -1 if found == -1 else found + 1


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def stamp(line: str) -> float:
    """The value of one ``vllm:lora_requests_info`` sample (the time its series was last current), an exposition
    timestamp after it ignored."""
    return number(line.rpartition("} ")[2].split(" ")[0])


def newest_lora_info(payload: bytes) -> bytes:
    """The page with only the newest ``vllm:lora_requests_info`` series. vLLM never drops the others: after a
    thousand requests over 30 adapters a simulator's page held 1,510 of them (300 KB), and a real engine's grows as
    long as it serves, so every consumer (the runtime, Prometheus, the controller) would parse a page that only
    grows. The newest says everything the others did: they are moments that have passed."""
    marker = LORA_INFO.encode()
    if payload.count(b"\n" + marker) + payload.startswith(marker) <= 1:
        return payload
    lines = payload.split(b"\n")
    found = [(stamp(line.decode("latin-1")), i) for i, line in enumerate(lines) if line.startswith(marker)]
    keep = max(found)[1]  # the newest; among equal stamps the last, as vllm_lora_activity reads it
    drop = {i for _, i in found if i != keep}
    return b"\n".join(line for i, line in enumerate(lines) if i not in drop)


def vllm_lora_activity(text: str) -> dict[str, frozenset[str]] | None:
    """{"running": names, "waiting": names} from the newest ``vllm:lora_requests_info`` series, with its
    ``max_lora`` under the key "max_lora" when present; None when the page has no such series."""
    newest: tuple[float, str] | None = None
    for line in lines_starting(text, LORA_INFO):
        when = stamp(line)
        if newest is None or when >= newest[0]:
            newest = (when, line)
    if newest is None:
        return None
    found = dict(_LABEL.findall(newest[1][len(LORA_INFO) :].rpartition("} ")[0]))
    activity = {
        state: frozenset(filter(None, (n.strip() for n in found.get(f"{state}_lora_adapters", "").split(","))))
        for state in ("running", "waiting")
    }
    if found.get("max_lora"):
        activity["max_lora"] = frozenset({found["max_lora"]})
    return activity


def active_adapters(text: str) -> frozenset[str] | None:
    """Adapters with requests in flight on the page's engine (the runtime's gauge, else vLLM's own series), or None
    when the page says nothing about adapters."""
    names = {dict(_LABEL.findall(line))["lora_name"] for line in lines_starting(text, ACTIVE) if "lora_name=" in line}
    if names or ACTIVE[:-1] in text:
        return frozenset(names)
    activity = vllm_lora_activity(text)
    return None if activity is None else activity["running"] | activity["waiting"]


def sglang_pool_used(text: str) -> int | None:
    """How many adapters SGLang's running batch holds (``sglang:lora_pool_slots_used``, summed over its series), or
    None when the page has no such gauge (not SGLang, or LoRA off)."""
    found, total = False, 0.0
    for line in lines_starting(text, SGLANG_POOL):
        rest = line[len(SGLANG_POOL) :]
        if rest[:1] not in ("{", " "):
            continue  # another family whose name starts the same
        try:
            total += split_sample(rest)[1]  # labels, value, and an optional timestamp after it
        except (ValueError, IndexError):
            continue
        found = True
    return round(total) if found else None
