"""Each runtime's own API key, found where its pod says it is.

A runtime's key is per pod: its ``aibrix-runtime`` container reads AIBRIX_RUNTIME_API_KEY, as a literal or from a
Secret of its namespace (the sidecar injection webhook wires ``aibrix-runtime-key``/``api-key``). The controller
sends a key only to a pod that declares one, and only the one that pod declares: no cluster-wide key goes to
whatever pod a selector happens to match.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aibrix.controller.pods import KeySource

KEY_SECRET = "aibrix-runtime-key"  # the Secret the webhook points injected sidecars at, per namespace
KEY_FIELD = "api-key"
CACHE_SECONDS = 30.0  # a rotated key is picked up within this long (and after the runtime's first 401)


class KeyUnavailable(Exception):
    """The pod declares a key the controller cannot read (Secret missing, key absent, access denied)."""


@dataclass
class RuntimeKeys:
    read_secret: Callable[[str, str], Awaitable[dict[str, str]]]  # (namespace, name) -> values

    def __post_init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = {}

    async def key_for(self, namespace: str, source: KeySource | None) -> str | None:
        """The key the pod's runtime holds, None when it declares none. Raises KeyUnavailable."""
        if source is None:
            return None
        if source.secret is None:
            return source.value or None
        values = await self._secret(namespace, source.secret)
        if values is None or source.key not in values:
            if source.optional:  # as the kubelet reads an optional reference: the runtime then has no key
                return None
            where = f"secret {namespace}/{source.secret}"
            raise KeyUnavailable(f"{where} does not exist" if values is None else f"{where} has no key {source.key!r}")
        return values[source.key] or None

    def forget(self, namespace: str, source: KeySource | None) -> None:
        """After the runtime refused the key (401): read the Secret again next time, it may have been rotated."""
        if source is not None and source.secret is not None:
            self._cache.pop((namespace, source.secret), None)

    async def _secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's values, None when it does not exist."""
        cached = self._cache.get((namespace, name))
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        values: dict[str, str] | None
        try:
            values = await self.read_secret(namespace, name)
        except Exception as exc:  # noqa: BLE001 - any other failure to read means: cannot authenticate now
            if getattr(getattr(exc, "status", None), "code", None) != 404:
                raise KeyUnavailable(f"cannot read the runtime key secret {namespace}/{name}: {exc}") from None
            values = None
        self._cache[(namespace, name)] = (time.monotonic(), values)
        return values
