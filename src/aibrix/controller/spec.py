"""What a ModelAdapter asks for, read from its object."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aibrix.controller.schedulers import POLICIES
from aibrix.storage.uri import SCHEMES as STORAGE_SCHEMES

SCHEDULERS = tuple(POLICIES)
SCHEMES = tuple(STORAGE_SCHEMES)
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_PRIORITY = 1_000_000  # the CRD's bounds
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # what a Service name must be


class SpecError(ValueError):
    """The ModelAdapter asks for something the controller cannot do; the message says what to change."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present


@dataclass(frozen=True)
class Selector:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions), evaluated against pods in the cache."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    namespace: str
    artifact_url: str
    selector: Selector
    replicas: int | None  # None: every matching pod
    scheduler: str
    base_model: str | None
    secret_name: str | None
    additional_config: dict[str, str] = field(default_factory=dict)
    artifact_digest: str | None = None  # sha256:<hex> the runtime checks before the engine load
    priority: int = 0  # when adapter slots are short, a higher priority takes the slot of a lower one

    @property
    def api_key(self) -> str | None:
        return self.additional_config.get("api-key") or None


def parse_selector(raw: Any) -> Selector:
    if not isinstance(raw, dict) or not (raw.get("matchLabels") or raw.get("matchExpressions")):
        raise SpecError(
            "spec.podSelector needs matchLabels or matchExpressions (an empty selector would match every pod)"
        )
    requirements = []
    for key, value in (raw.get("matchLabels") or {}).items():
        requirements.append(Requirement(str(key), "In", frozenset({str(value)})))
    for expression in raw.get("matchExpressions") or []:
        operator = expression.get("operator") if isinstance(expression, dict) else None
        if operator not in OPERATORS or not expression.get("key"):
            raise SpecError(
                f"spec.podSelector.matchExpressions: {expression!r} needs a key and an operator in {OPERATORS}"
            )
        values = frozenset(str(v) for v in expression.get("values") or [])
        if operator in ("In", "NotIn") and not values:
            raise SpecError(f"spec.podSelector.matchExpressions: operator {operator} needs values")
        requirements.append(Requirement(str(expression["key"]), operator, values))
    return Selector(tuple(requirements))


def parse_spec(obj: dict[str, Any]) -> AdapterSpec:
    """The adapter's spec, checked again here: a CRD installed without its schema must not crash the controller."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    name = meta.get("name", "")
    if len(name) > 63 or not _DNS1035_LABEL.fullmatch(name):
        raise SpecError(
            f"name {name!r} must be a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a "
            "letter (it names the adapter's Service)"
        )
    url = spec.get("artifactURL")
    if not isinstance(url, str) or not url or any(ch.isspace() for ch in url):
        raise SpecError("spec.artifactURL is required")
    scheme = url.split("://", 1)[0] if "://" in url else None
    if scheme is None and not url.startswith("/"):
        raise SpecError(f"spec.artifactURL {url!r} must be an absolute path or a URL of {', '.join(SCHEMES)}")
    if scheme is not None and scheme not in SCHEMES:
        raise SpecError(f"spec.artifactURL scheme {scheme!r} is not supported; use one of {', '.join(SCHEMES)}")
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1):
        raise SpecError(f"spec.replicas must be at least 1 (or omitted for every matching pod), not {replicas!r}")
    scheduler = spec.get("schedulerName") or "default"
    if scheduler not in SCHEDULERS:
        raise SpecError(f"spec.schedulerName {scheduler!r} is unknown; use one of {', '.join(SCHEDULERS)}")
    digest = spec.get("artifactDigest") or None
    if digest is not None and (not isinstance(digest, str) or not _DIGEST.fullmatch(digest)):
        raise SpecError(f"spec.artifactDigest {digest!r} must be sha256: and 64 lowercase hex digits")
    priority = spec.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > MAX_PRIORITY:
        raise SpecError(
            f"spec.priority must be a whole number between -{MAX_PRIORITY} and {MAX_PRIORITY}, not {priority!r}"
        )
    secret = (spec.get("credentialsSecretRef") or {}).get("name") or None
    config = {str(k): str(v) for k, v in (spec.get("additionalConfig") or {}).items()}
    return AdapterSpec(
        name=name,
        namespace=meta.get("namespace", "default"),
        artifact_url=url,
        selector=parse_selector(spec.get("podSelector")),
        replicas=replicas,
        scheduler=scheduler,
        base_model=spec.get("baseModel"),
        secret_name=secret,
        additional_config=config,
        artifact_digest=digest,
        priority=priority,
    )
