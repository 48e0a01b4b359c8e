"""Names that become things: a folder on disk (adapters, models) or a Kubernetes object. One rule for each, shared
by every package (``docs/architecture.md``: top-level modules import nothing else of ours)."""

from __future__ import annotations

import re

# DNS-1123 subdomain: Secret and ModelAdapter names.
KUBERNETES_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# One path component that is safe anywhere: covers upstream's adapter rule ([A-Za-z0-9_-]), vLLM's examples
# (sql_lora) and Kubernetes names; no leading dot (hidden files, '.', '..') and no '..' inside.
PATH_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
MAX_NAME = 253
ADAPTER_NAME_RULE = "letters, digits, '.', '_' and '-' (at most 253), not starting with '.' and without '..'"


def is_kubernetes_name(name: str) -> bool:
    return len(name) <= MAX_NAME and KUBERNETES_NAME.fullmatch(name) is not None


def is_adapter_name(name: str) -> bool:
    """Whether ``name`` is safe as one folder name under the adapter directory."""
    return len(name) <= MAX_NAME and PATH_COMPONENT.fullmatch(name) is not None and ".." not in name


def model_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a model's folder (``name`` or ``organization/name``), or None when it can."""
    parts = name.split("/")
    if not name or len(parts) > 2 or any(p in ("", ".", "..") or "\x00" in p or "\\" in p for p in parts):
        return f"model name {name!r} must be one folder name or 'organization/name'"
    return None
