"""Admission: an adapter is checked before the engine is asked to load it (``aibrix.peft`` holds the rules), so a
bad one gets one precise 422 and the engine never sees it. The rank limit comes from ``AIBRIX_ENGINE_MAX_LORA_RANK``
(the injection webhook sets it from the engine's arguments) or is learned from the engine's first refusal."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from aibrix.engines import Engine
from aibrix.engines.errors import EngineError
from aibrix.peft import (
    AdapterFacts,
    BaseModelCheck,
    InvalidAdapter,
    Limits,
    inspect,
    rank_limit_in,
    same_base,
    verify_digest,
)

log = logging.getLogger("aibrix.runtime")


class Verdict(NamedTuple):
    warnings: list[str]
    size_bytes: int | None  # None when the runtime cannot see the files
    rank: int | None = None  # the largest of r and rank_pattern, when the files say


Judge = Callable[[], Verdict]


class AdapterAdmission:
    def __init__(
        self,
        engine: Engine,
        *,
        max_rank: int | None,
        base_model_check: BaseModelCheck,
        allow_pickle: bool,
        max_files: int,
        max_bytes: int | None,
    ) -> None:
        self.engine, self.base_model_check = engine, base_model_check
        self.limits = Limits(max_rank, allow_pickle, max_files, max_bytes)
        self._base_names: tuple[str, ...] | None = None  # the engine's base model: served names and paths

    async def judge(
        self, name: str, path: str, *, auth: str | None = None, downloaded: bool = False, digest: str | None = None
    ) -> Judge:
        """The check of the adapter at ``path``, to run in a worker thread (with whatever else the load does
        there: each trip to a thread costs ~150 µs on a small machine). It raises InvalidAdapter (DigestMismatch
        when the files are not the ones ``digest`` names) or returns the warnings, the adapter's size and its rank.
        A path the runtime cannot see (the engine's own filesystem) is left to the engine, unless the runtime
        downloaded it or a digest asks for a check. The engine's base model is asked here, once per engine."""
        served = await self._served(auth) if self.base_model_check is not BaseModelCheck.OFF else ()
        return functools.partial(self._judge, name, Path(path), downloaded, digest, served)

    def _judge(self, name: str, folder: Path, downloaded: bool, digest: str | None, served: tuple[str, ...]) -> Verdict:
        if not downloaded and not os.path.exists(folder):
            if digest is not None:
                raise InvalidAdapter(f"artifact_digest cannot be checked: the runtime cannot read {folder}")
            return Verdict([], None)
        if digest is not None:
            verify_digest(folder, digest, self.limits.max_files)
        facts = inspect(folder, self.limits)
        return Verdict(self._base_model(name, facts, served), facts.size_bytes, facts.rank)

    def _base_model(self, name: str, facts: AdapterFacts, served: tuple[str, ...]) -> list[str]:
        if self.base_model_check is BaseModelCheck.OFF or facts.base_model is None:
            return []
        if not served or same_base(facts.base_model, served):
            return []
        problem = (
            f"adapter {name!r} was trained for base model {facts.base_model!r}; this engine serves "
            f"{', '.join(sorted(set(served)))}"
        )
        if self.base_model_check is BaseModelCheck.REFUSE:
            raise InvalidAdapter(problem + " (AIBRIX_BASE_MODEL_CHECK=refuse)")
        log.warning("%s", problem)
        return [problem]

    async def _served(self, auth: str | None) -> tuple[str, ...]:
        """The engine's base model names, asked once: the base model does not change while the engine runs."""
        if self._base_names is None:
            try:
                cards = await self.engine.list_models(auth=auth)
            except EngineError:
                return ()  # cannot tell now: the engine will judge, and the next load asks again
            bases = [card for card in cards if not card.get("parent")]
            self._base_names = tuple(str(card[key]) for card in bases for key in ("id", "root") if card.get(key))
        return self._base_names

    def learn(self, message: str) -> None:
        """Take the rank limit from an engine's refusal, when it names one and none was configured."""
        limit = rank_limit_in(message)
        if limit is not None and self.limits.max_rank is None:
            self.limits = dataclasses.replace(self.limits, max_rank=limit)
            log.info("learned the engine's max_lora_rank %d from its refusal", limit)
