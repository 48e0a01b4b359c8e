"""The writes (and the one point read) the controller makes: status and finalizer patches, applying the objects it
owns, reading a Secret. Events are in ``events.py``."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType

from aibrix.controller.events import EventRecorder
from aibrix.controller.resources import ModelAdapter, Obj, Secret


def merge_patch(old: Obj, new: Obj) -> Obj:
    """The JSON merge patch (RFC 7396) that turns ``old`` into ``new``: changed keys only, null for a removed one,
    nested maps patched key by key (a merge patch that sent a whole map would keep the keys it no longer has)."""
    patch: Obj = {}
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            patch[key] = merge_patch(before, after)
        else:
            patch[key] = after
    return patch


class Kube:
    """The writes and point reads the controller makes."""

    def __init__(self, client: AsyncClient, component: str = "aibrix-controller") -> None:
        self.client = client
        self.events = EventRecorder(client, component)
        self._applied: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def patch_status(self, namespace: str, name: str, status: Obj) -> Obj:
        result = await self.client.patch(
            ModelAdapter.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
        )
        return dict(result)

    async def set_finalizers(self, obj: Obj, finalizers: list[str]) -> Obj:
        """Replace the finalizer list, refused with 409/422 if the object changed since we read it."""
        meta = obj["metadata"]
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]
        result = await self.client.patch(
            ModelAdapter, meta["name"], ops, namespace=meta["namespace"], patch_type=PatchType.JSON
        )
        return dict(result)

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The secret's values as text; ValueError names a key whose value is not UTF-8 text (never the value)."""
        secret = await self.client.get(Secret, name, namespace=namespace)
        values = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                values[key] = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                raise ValueError(f"secret {name}: the value of {key!r} is not UTF-8 text") from None
        return values

    async def ensure(self, resource: Any, desired: Obj, exists: bool = False) -> None:
        """Create ``desired`` or merge it into what exists (only the fields we own change); one request when
        ``exists`` is right (it was written before), two when not."""
        if exists:
            try:
                await self._merge(resource, desired)
                return
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
        try:
            await self.client.create(resource.from_dict(desired))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            await self._merge(resource, desired)

    async def _merge(self, resource: Any, desired: Obj) -> None:
        meta = desired["metadata"]
        await self.client.patch(
            resource, meta["name"], desired, namespace=meta["namespace"], patch_type=PatchType.MERGE
        )

    async def apply_once(self, resource: Any, desired: Obj, *, memory: float = 300.0) -> None:
        """``ensure``, skipped when this exact object was applied in the last ``memory`` seconds."""
        meta = desired["metadata"]
        key = (resource.__name__, meta["namespace"], meta["name"])
        fingerprint = json.dumps(desired, sort_keys=True)
        applied = self._applied.get(key)
        if applied is not None and applied[0] == fingerprint and time.monotonic() - applied[1] < memory:
            return
        await self.ensure(resource, desired, exists=applied is not None)
        self._applied[key] = (fingerprint, time.monotonic())

    def forget_applied(self, resource: Any, namespace: str, name: str) -> None:
        """The object is gone: the next ``apply_once`` writes it again at once."""
        self._applied.pop((resource.__name__, namespace, name), None)

    def event(self, adapter: Obj, type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes event in the background (``EventRecorder.record``)."""
        self.events.record(adapter, type_, reason, message)
