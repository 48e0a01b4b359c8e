"""Which version of the artifact each instance holds, and which instances a changed spec must move to the new one.

A version is the spec's ``artifactDigest`` when it has one, else its artifact URL (credentials and query removed).
Pods with a runtime sidecar are moved one at a time by the runtime's replace (the old version serves until the new
one is in); pods loaded straight into the engine are unloaded and loaded again."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aibrix.controller.pods import Pod
from aibrix.controller.resources import Obj


def version_of(artifact_url: str, digest: str | None) -> str:
    return digest or artifact_url


def instance_versions(status: Obj, instances: Sequence[Pod], current: str) -> dict[str, str]:
    """Each instance's version as the status records it. An instance recorded before versions were kept per pod
    holds what ``artifactDigest``/``artifactURL`` name; with neither, the current version."""
    recorded = status.get("instanceVersions") or {}
    if not isinstance(recorded, dict):
        recorded = {}
    legacy = status.get("artifactDigest") or status.get("artifactURL") or current
    return {pod.name: str(recorded.get(pod.name) or legacy) for pod in instances}


def stale_instances(
    instances: Sequence[Pod], versions: dict[str, str], current: str, via_runtime: Callable[[Pod], bool]
) -> tuple[list[Pod], list[Pod]]:
    """Instances on another version: (those to replace one at a time through their runtime, those to reload)."""
    stale = [pod for pod in instances if versions.get(pod.name) != current]
    return [p for p in stale if via_runtime(p)], [p for p in stale if not via_runtime(p)]
