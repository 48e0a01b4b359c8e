"""One adapter's side of a move the balancer planned (controller/balancer.py, controller/demand.py).

A plain move loads the adapter on the target, then leaves the source (make before break). A swap trades places
between two full pods: the busy adapter may take the target's slot only once the quiet one has left it, and the
quiet one may take the source's slot only once the busy one has left that. So the quiet side leaves first
(``vacate``: the less used adapter, held on another pod too or never seen used, is the one a replica short for a
moment) and hands its slot to the busy side, which moves as a plain move does and hands the slot it leaves to the
quiet side. A slot handed over counts for the side it is handed to at once, so no other adapter's pass takes it in
between. Either side that cannot go on drops its move and wakes the other, which then drops its own unless it can
still go: nothing waits on a move that will not come, and the balancer forgets any move older than its settle time.
"""

from __future__ import annotations

from collections.abc import Sequence

from aibrix.controller.capacity import Unfit, room
from aibrix.controller.demand import Move
from aibrix.controller.observation import Observation
from aibrix.controller.pass_status import StatusKeeper
from aibrix.controller.pods import Pod
from aibrix.controller.spec import AdapterSpec


class MoveSteps(StatusKeeper):
    def occupancy(self, pod: str) -> tuple[int, int]:
        return self.fleet.placements.occupancy(self.key[0], pod)

    def drop_move(self, move: Move) -> None:
        self.fleet.moves.pop(self.key, None)
        self.wake_partner(move)

    def wake_partner(self, move: Move) -> None:
        if move.partner is not None:
            self.fleet.wake((self.key[0], move.partner))

    def hand_over(self, move: Move, pod: str) -> None:
        """Give the slot this adapter left on ``pod`` to the other side of its swap, before any other pass can take
        it: the other side's placements count it from now on (its next pass keeps it, or gives it up)."""
        placements = self.fleet.placements
        placements.assign(self.key, placements.pods_of(self.key) - {pod})
        if move.partner is not None:
            partner = (self.key[0], move.partner)
            placements.assign(partner, placements.pods_of(partner) | {pod})
            self.fleet.wake(partner)

    def owed(self) -> int:
        """1 while this adapter is the quiet side of a swap on its way to the source: that replica is not chosen
        elsewhere meanwhile."""
        move = self.fleet.moves.get(self.key)
        return 1 if move is not None and move.vacate else 0

    async def vacate(self, spec: AdapterSpec) -> None:
        """The quiet side of a swap leaves its pod, freeing the slot the busy side comes to take."""
        move = self.fleet.moves.get(self.key)
        if move is None or not move.vacate:
            return
        source = next((p for p in self.instances if p.name == move.source), None)
        if source is None:
            return
        if not await self.fleet.unload(self.obj, spec, source):
            self.drop_move(move)
            return
        self.instances.remove(source)
        self.hand_over(move, source.name)

    def move_target(self, seen: Observation, chosen: Sequence[Pod], priority: int) -> list[Pod]:
        """The pod the balancer asked this adapter to move to, when the move still makes sense and the pod has a
        slot for it now (a move frees the one it leaves: it may take a slot kept for first replicas)."""
        move = self.fleet.moves.get(self.key)
        if move is None:
            return []
        held = {p.name for p in self.instances} | {p.name for p in chosen} | set(self.retries)
        target = seen.by_name.get(move.target)
        if (
            target is None
            or (target not in seen.candidates and move.target not in seen.unfit)  # not eligible now
            or seen.unfit.get(move.target) == Unfit.RANK_TOO_HIGH
            or move.target in held
            or not (move.vacate or move.source in held)
        ):
            self.drop_move(move)
            return []
        if move.target in self.fleet.placements.pods_of(self.key) or room(target, priority, self.occupancy):
            return [target]  # the slot handed over by the other side of a swap, or a free one
        if not self.partner_pending(move):
            self.drop_move(move)
        return []

    def partner_pending(self, move: Move) -> bool:
        """Whether the other side of a swap may still make room: its move stands, and the busy side waiting for
        the target's slot still has a quiet side there to leave it."""
        if move.partner is None:
            return False
        other = (self.key[0], move.partner)
        theirs = self.fleet.moves.get(other)
        if theirs is None:
            return False
        return move.vacate or move.target in self.fleet.placements.pods_of(other)

    async def finish_move(self, spec: AdapterSpec, pending: Sequence[Pod]) -> None:
        """Once the target was tried: leave the source when the target holds the adapter (the quiet side of a swap
        left it already), then wake the other side of a swap. A move still waiting for its slot stays."""
        move = self.fleet.moves.get(self.key)
        if move is None or move.target not in {p.name for p in pending}:
            return
        del self.fleet.moves[self.key]
        held = {p.name: p for p in self.instances}
        source = held.get(move.source)
        moved = move.target in held and (source is not None or move.vacate)
        if moved and source is not None:
            moved = await self.fleet.unload(self.obj, spec, source)
        if moved and source is not None:
            self.instances.remove(source)
            self.hand_over(move, source.name)
        else:
            self.wake_partner(move)
        if moved:
            self.event("Normal", "Moved", f"moved from pod {move.source} to pod {move.target} to even out demand")
