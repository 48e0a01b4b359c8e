"""The status one pass keeps and writes: conditions, the phase it settles in, and the patch that carries only what
changed. ``AdapterPass`` acts; this part says so."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable
from typing import TypeVar

from lightkube import ApiError

from aibrix.controller.fleet import Fleet
from aibrix.controller.observation import Observation
from aibrix.controller.pods import Pod
from aibrix.controller.resources import Obj, key_of, timestamp
from aibrix.controller.spec import AdapterSpec
from aibrix.controller.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    Phase,
    Retry,
    condition,
    messages_only,
    set_condition,
)
from aibrix.controller.transitions import Verdict
from aibrix.controller.writes import merge_patch
from aibrix.storage.uri import redact

log = logging.getLogger("aibrix.controller")

T = TypeVar("T")
SHOWN_AFTER = 0.25  # seconds a step (a load, creating the Service) runs before the status names its phase


class StatusKeeper:
    """The status to write, and what it reports: the instances, their versions and the retry entries."""

    def __init__(self, fleet: Fleet, obj: Obj) -> None:
        self.fleet, self.obj, self.key = fleet, obj, key_of(obj)
        self.name = f"{self.key[0]}/{self.key[1]}"
        self.old_status: Obj = obj.get("status") or {}
        self.status: Obj = copy.deepcopy(self.old_status)
        self.conditions: list[Condition] = self.status.setdefault("conditions", [])
        self.generation = int(obj["metadata"].get("generation") or 1)
        self.instances: list[Pod] = []
        self.retries: dict[str, Retry] = {}
        self.version = ""  # the version the spec asks for (rollout.version_of)
        self.versions: dict[str, str] = {}  # instance -> the version it holds

    def condition(self, type_: ConditionType, status: ConditionStatus, reason: str, message: str) -> None:
        set_condition(self.conditions, type_, status, reason, message, self.generation)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.fleet.event(self.obj, type_, reason, message)

    def unschedulable(self, reason: str, message: str) -> None:
        """Scheduled=False with the counts ("2 of 5 placeable: 3 pods lack rank >= 64"), and an Event when the
        reason is new: counts that move as the fleet fills update the condition, not the adapter's Events."""
        before = condition(self.conditions, ConditionType.SCHEDULED)
        if before is None or (before["status"], before["reason"]) != (ConditionStatus.FALSE, reason):
            self.event("Warning", reason, message)
        self.condition(ConditionType.SCHEDULED, ConditionStatus.FALSE, reason, message)

    def apply(self, verdict: Verdict, spec: AdapterSpec) -> None:
        """The phase and conditions the pass settles in."""
        self.condition(ConditionType.INITIALIZED, ConditionStatus.TRUE, "Initialized", "Configuration is valid")
        self.status["phase"] = verdict.phase
        self.status["nextAttemptTime"] = None if verdict.hold_until is None else timestamp(verdict.hold_until)
        if self.instances and all(self.versions.get(p.name) == self.version for p in self.instances):
            self.status["artifactURL"] = redact(spec.artifact_url)
            self.status["artifactDigest"] = spec.artifact_digest
        if verdict.unbound and condition(self.conditions, ConditionType.BOUND) is not None:
            self.condition(ConditionType.BOUND, ConditionStatus.FALSE, "NoInstances", "No pod holds the adapter")
        self.condition(ConditionType.READY, *verdict.ready)
        if verdict.event is not None:
            self.event("Warning", verdict.event, verdict.ready[2])

    def record(self) -> None:
        """Put the instances, their versions and the retries into the status to write."""
        self.status["instances"] = sorted(p.name for p in self.instances)
        versions = {p.name: self.versions.get(p.name, self.version) for p in self.instances}
        self.status["instanceVersions"] = versions or None
        self.status["readyReplicas"] = len(self.instances)
        self.status["retries"] = [self.retries[n].to_status() for n in sorted(self.retries)]

    async def write_phase(self, phase: Phase, seen: Observation) -> None:
        """Write the status with ``phase`` (while no pod serves the adapter; afterwards it stays Running)."""
        self.status["phase"] = Phase.RUNNING if self.instances and phase in (Phase.SCHEDULED, Phase.LOADING) else phase
        self.record()
        self.status["desiredReplicas"] = seen.desired
        self.status["candidates"] = len(seen.candidates)
        await self.write()

    async def shown_while(self, phase: Phase, seen: Observation, step: Awaitable[T]) -> T:
        """Run ``step``, saying ``phase`` once it has run for ``SHOWN_AFTER``. A quick step goes unsaid: with
        1000 adapters, each such write is a thousand writes nobody could see."""
        task = asyncio.ensure_future(step)
        done, _ = await asyncio.wait([task], timeout=SHOWN_AFTER)
        if not done:
            try:
                await self.write_phase(phase, seen)
            except Exception as exc:  # noqa: BLE001 - only progress: the step goes on, the pass's last write says it
                message = exc.status.message if isinstance(exc, ApiError) else str(exc)
                log.info("could not say adapter %s is %s: %s", self.name, phase, message)
        return await task

    async def write(self) -> None:
        """Write the status if it changed (a resync with nothing to do writes nothing). A change in counts alone (the
        candidates, the numbers in a condition's message) waits for the next other change, or a resync interval: as
        pods fill, every adapter's counts move, and writing each move would cost a write per adapter per pod that
        fills."""
        self.status["observedGeneration"] = self.generation
        self.fleet.placements.set_phase(self.key, self.status.get("phase"))
        self.status = {k: v for k, v in self.status.items() if v is not None}
        patch = merge_patch(self.old_status, self.status)
        counts = patch.keys() <= {"candidates", "conditions"} and messages_only(
            self.old_status.get("conditions") or [], self.conditions
        )
        if not patch or (counts and not self.fleet.written_long_ago(self.key)):
            return
        old_phase, phase = self.old_status.get("phase"), self.status.get("phase")
        if phase != old_phase:
            log.info(
                "adapter %s phase %s -> %s", self.name, old_phase, phase, extra={"adapter": self.name, "phase": phase}
            )
        sent = copy.deepcopy(self.status)  # a load finishing during the write changes the status: not sent yet
        try:
            stored = await self.fleet.kube.patch_status(self.key[0], self.key[1], patch)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise
        self.fleet.adapters.store(stored)
        self.fleet.wrote(self.key)
        self.old_status = sent
