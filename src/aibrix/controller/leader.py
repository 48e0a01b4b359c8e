"""Leader election on a coordination.k8s.io Lease, so two controller replicas never act at once.

The same protocol as client-go's leaderelection: the holder renews ``renewTime`` every ``retry`` seconds; others
take the lease over once it has not changed for ``duration`` seconds, judged by when this process saw it change
(its own monotonic clock), never by the remote ``renewTime`` against the local clock: clocks of two machines
disagree. Every write carries the resourceVersion it read, so two candidates racing for an expired lease cannot
both win (one gets 409). A leader that cannot renew within ``renew_deadline`` (each attempt bounded by what is left
of it) stops leading before anyone else may start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from lightkube import ApiError, AsyncClient

from aibrix.controller.pods import parse_time
from aibrix.controller.resources import Lease, Obj, timestamp

log = logging.getLogger("aibrix.controller")


@dataclass
class LeaderElector:
    client: AsyncClient
    name: str
    namespace: str
    identity: str
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0

    def __post_init__(self) -> None:
        self._observed: object = None  # the lease record as last read
        self._observed_at = 0.0  # time.monotonic() when that record was first seen

    async def acquire(self) -> None:
        """Return once this process holds the lease."""
        logged = False
        while True:
            try:
                if await self._try():
                    break
                if not logged:
                    log.info("waiting to become leader (lease %s/%s)", self.namespace, self.name)
                    logged = True
            except Exception as exc:  # noqa: BLE001 - the API server is not reachable yet; keep asking
                log.warning("cannot read the lease %s/%s: %s", self.namespace, self.name, exc)
            await asyncio.sleep(self.retry)
        log.info("became leader as %s", self.identity)

    async def keep(self) -> None:
        """Renew the lease until renewing fails for ``renew_deadline``; then return (leadership is lost)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.retry)
            try:
                async with asyncio.timeout(max(0.1, self.renew_deadline - (time.monotonic() - last))):
                    renewed = await self._try()
                if renewed:
                    last = time.monotonic()
                    continue
                log.error("lease %s/%s was taken by another controller", self.namespace, self.name)
                return
            except Exception as exc:  # noqa: BLE001 - the API server is unreachable; the deadline decides
                log.warning("could not renew the lease: %s", exc)
            if time.monotonic() - last > self.renew_deadline:
                log.error("could not renew the lease for %.0fs; stopping", self.renew_deadline)
                return

    async def release(self) -> None:
        """Give the lease up on a clean shutdown so a standby takes over at once."""
        try:
            lease = dict(await self.client.get(Lease, self.name, namespace=self.namespace))
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
                await self.client.replace(Lease.from_dict(lease))
        except Exception as exc:  # noqa: BLE001
            log.debug("could not release the lease: %s", exc)

    async def _try(self) -> bool:
        now = time.time()
        try:
            lease: Obj = dict(await self.client.get(Lease, self.name, namespace=self.namespace))
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(now, now, 0)}
            return await self._write(self.client.create(Lease.from_dict(body)))
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("acquireTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        expired = time.monotonic() - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquired = parse_time(spec.get("acquireTime")) or now
        else:
            acquired, transitions = now, transitions + 1
        lease["spec"] = self._spec(acquired, now, transitions)
        return await self._write(self.client.replace(Lease.from_dict(lease)))

    def _spec(self, acquired: float, renewed: float, transitions: int) -> Obj:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": timestamp(acquired, micro=True),
            "renewTime": timestamp(renewed, micro=True),
            "leaseTransitions": transitions,
        }

    @staticmethod
    async def _write(call) -> bool:  # type: ignore[no-untyped-def]
        try:
            await call
            return True
        except ApiError as exc:
            if exc.status.code in (409, 422):  # another candidate wrote first
                return False
            raise
