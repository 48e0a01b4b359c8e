"""The admission checks before a direct load (no runtime sidecar in the pod).

An engine given a Hub repository id downloads it itself, so the controller reads what it can of the repository
first, its file listing and ``adapter_config.json``, and judges them with the runtime's rules (``aibrix.peft``):
a repository vLLM would refuse, or one whose weights are pickles, is refused with the same words before any engine
is asked, and a rank above a pod's limit sends the adapter to another pod. A path on the engine's own disk cannot
be read from here: the engine judges it, and its refusal is translated (``loader.py``). When the Hub cannot be read
from the controller's network, the engine judges too: the check only ever refuses on what it has read.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from aibrix.peft import CONFIG, MAX_CONFIG_BYTES, AdapterFacts, InvalidAdapter, Limits, judge
from aibrix.storage.base import StorageError, redact
from aibrix.storage.fetch import AnswerTooLarge, request
from aibrix.storage.policy import OutboundPolicy
from aibrix.storage.retry import RetryPolicy
from aibrix.storage.uri import SchemeKind, open_source, schemes_of

log = logging.getLogger("aibrix.controller")
ONCE = RetryPolicy(attempts=1, deadline=15.0)
FACTS_SECONDS = 600.0  # a repository's listing read once per artifact and this long, not once per pod


class Repository(NamedTuple):
    files: list[tuple[str, int]]
    config: bytes | None  # None: the repository has no adapter_config.json, or one too large to read


@dataclass
class HubFacts:
    """What the controller could read of each Hub artifact (None: nothing, the engine judges), kept a while."""

    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    allow_pickle: bool = field(
        default_factory=lambda: os.environ.get("AIBRIX_ALLOW_PICKLE_ADAPTERS", "") in ("1", "true")
    )
    _known: dict[str, tuple[float, Repository | None]] = field(default_factory=dict)

    def check(self, url: str, max_rank: int | None) -> AdapterFacts | None:
        """Blocking (run it in a thread). InvalidAdapter (RankTooHigh for the rank) when the repository's files
        break a rule; the facts when they pass; None when ``url`` is no Hub repository or it could not be read."""
        if not url.startswith(schemes_of(SchemeKind.HUB)):
            return None
        now = time.monotonic()
        known = self._known.get(url)
        if known is None or known[0] < now:
            self._known = {k: v for k, v in self._known.items() if v[0] >= now}
            known = self._known[url] = (now + FACTS_SECONDS, self._read(url))
        repository = known[1]
        if repository is None:
            return None
        if repository.config is None:
            raise InvalidAdapter(f"no readable {CONFIG} (at most {MAX_CONFIG_BYTES} bytes): not a PEFT adapter")
        limits = Limits(max_rank=max_rank, allow_pickle=self.allow_pickle, max_files=max(len(repository.files), 1))
        return judge(repository.files, repository.config, limits)

    def _read(self, url: str) -> Repository | None:
        try:
            listing = open_source(url, os.environ, policy=self.policy).list_files()
            files = [(f.path, f.size or 0) for f in listing]
            config = next((f for f in listing if f.path == CONFIG), None)
            if config is None or (config.size or 0) > MAX_CONFIG_BYTES:
                return Repository(files, None)
            # read no more than a config may hold: the controller has little memory, and the listing may lie
            _, _, raw = request(
                config.url, headers=config.headers, policy=self.policy, retries=ONCE, max_body=MAX_CONFIG_BYTES + 1
            )
        except AnswerTooLarge:
            return Repository(files, None)  # refused as too large to read, as when the listing says so
        except StorageError as exc:
            log.info("cannot read %s to check it before a direct load (the engine will): %s", redact(url), exc)
            return None
        return Repository(files, raw)
