"""Bearer credentials, written one way everywhere: engines, the runtime's own key, storage tokens."""

from __future__ import annotations


def bearer(token: str) -> str:
    """The Authorization header value for ``token``."""
    return f"Bearer {token}"
