"""AdmissionReview in, AdmissionReview out, for the sidecar injection webhook. Never an error status: a review that
cannot be read is allowed with a warning saying what was wrong, so a bad request (or a bug here) never blocks a pod."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from aibrix.controller.injection import Plan, plan_injection, wants_sidecar

log = logging.getLogger("aibrix.controller.webhook")

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
# Where the pod spec sits in each kind the webhook mutates. Upstream annotates Deployments; pods are what the lora
# document describes (and what a Deployment's annotated template produces).
SPECS = {("", "Pod"): "/spec", ("apps", "Deployment"): "/spec/template/spec"}
MAX_WARNING = 256  # the API server may truncate longer warnings
MAX_BODY = 4 * 1024 * 1024  # a pod is at most ~1.5 MiB in etcd; a review wraps it once (twice for an UPDATE)


def review(body: bytes, default_image: str) -> tuple[dict[str, Any], str]:
    """The AdmissionReview to answer and what happened (``injected``, ``unchanged``, ``malformed``, ``error``)."""
    if len(body) > MAX_BODY:
        plan = Plan(warnings=[f"aibrix webhook: the AdmissionReview is larger than {MAX_BODY} bytes"])
        return _answer(API_VERSIONS[0], "", plan), "malformed"
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        plan = Plan(warnings=["aibrix webhook: the AdmissionReview is not JSON"])
        return _answer(API_VERSIONS[0], "", plan), "malformed"
    version = request.get("apiVersion") if isinstance(request, dict) else None
    version = version if version in API_VERSIONS else API_VERSIONS[0]
    inner = request.get("request") if isinstance(request, dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("uid"), str):
        plan = Plan(warnings=["aibrix webhook: the AdmissionReview has no request with a uid"])
        return _answer(version, "", plan), "malformed"
    try:
        plan, outcome = _decide(inner, default_image)
    except Exception:  # a bug here must not block the pod; the log has the trace
        log.exception("sidecar injection failed for %s", _describe(inner))
        plan, outcome = Plan(warnings=["aibrix webhook: internal error, sidecar not injected"]), "error"
    if plan.warnings:
        log.warning("%s: %s", _describe(inner), "; ".join(plan.warnings))
    return _answer(version, inner["uid"], plan), outcome


def _decide(request: dict[str, Any], default_image: str) -> tuple[Plan, str]:
    kind = _mapping(request.get("kind"))
    prefix = SPECS.get((kind.get("group", ""), kind.get("kind", "")))
    obj = _mapping(request.get("object"))
    if prefix is None:
        what = kind.get("kind") or "no kind"
        return Plan(warnings=[f"aibrix webhook: handles Pods and Deployments, was sent {what!s:.40}"]), "malformed"
    if not obj:
        return Plan(warnings=["aibrix webhook: the AdmissionReview has no object"]), "malformed"
    meta = _mapping(obj.get("metadata"))
    labels, annotations, spec = _strings(meta.get("labels")), _strings(meta.get("annotations")), obj.get("spec")
    if prefix != "/spec":  # a Deployment: its pods' labels and annotations count as much as its own
        template = _mapping(_mapping(spec).get("template"))
        template_meta = _mapping(template.get("metadata"))
        labels = {**labels, **_strings(template_meta.get("labels"))}
        annotations = {**annotations, **_strings(template_meta.get("annotations"))}
        spec = template.get("spec")
    if not wants_sidecar(annotations):
        return Plan(), "unchanged"
    if prefix == "/spec" and request.get("operation", "CREATE") != "CREATE":
        return Plan(), "unchanged"  # a pod's containers are fixed once it exists: a patch would fail the update
    if not isinstance(spec, dict):
        return Plan(warnings=["aibrix sidecar not injected: the object has no pod spec"]), "malformed"
    plan = plan_injection(spec, labels, annotations, default_image, prefix)
    return plan, "injected" if plan.patch else "unchanged"


def _answer(version: str, uid: str, plan: Plan) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if plan.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(plan.patch).encode()).decode()
    if plan.warnings:
        response["warnings"] = [w[:MAX_WARNING] for w in plan.warnings]
    return {"apiVersion": version, "kind": "AdmissionReview", "response": response}


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value).items()}


def _describe(request: dict[str, Any]) -> str:
    kind = _mapping(request.get("kind")).get("kind", "object")
    name = request.get("name") or _mapping(_mapping(request.get("object")).get("metadata")).get("generateName", "")
    return f"{kind} {request.get('namespace', '')}/{name}"
