"""Credentials the runtime holds go only to the endpoint they were configured for.

The runtime serves remote callers, and a load or a model download may name its own endpoint (``endpoint``,
``hf_endpoint``, an http(s) URL). Starting from the runtime's environment and replacing only the endpoint would send
the runtime's HF token, or sign with its AWS keys, wherever the caller pointed. So a request that names another
endpoint than the one the runtime was configured with brings its own credentials, or goes without any: the held
ones are dropped, and for S3 the SDK's own chain (shared files, web identity, container and instance roles) is
switched off too (``ANONYMOUS``). A request that brings some credentials for a store gets none of the held ones
mixed in (no key id of ours beside a secret of theirs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aibrix.storage.uri import ANONYMOUS, scheme_of, tos_s3_endpoint


@dataclass(frozen=True)
class _Store:
    endpoint: Callable[[Mapping[str, str]], str] | None  # None: the caller always names it (an http(s) URL)
    secrets: tuple[str, ...]


def _s3_endpoint(env: Mapping[str, str]) -> str:
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""


def _tos_endpoint(env: Mapping[str, str]) -> str:
    return tos_s3_endpoint(env.get("TOS_ENDPOINT") or f"tos-{env.get('TOS_REGION') or 'cn-beijing'}.volces.com")


_AWS_SECRETS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)  # fmt: skip
_STORES = {
    "s3": _Store(_s3_endpoint, _AWS_SECRETS),
    "tos": _Store(_tos_endpoint, ("TOS_ACCESS_KEY", "TOS_SECRET_KEY", "TOS_SESSION_TOKEN", "TOS_SESSION_KEY")),
    "gs": _Store(lambda env: env.get("STORAGE_EMULATOR_HOST") or env.get("GCS_ENDPOINT") or "",
                 ("GCP_SERVICE_ACCOUNT_JSON", "GOOGLE_APPLICATION_CREDENTIALS")),
    "hf": _Store(lambda env: env.get("HF_ENDPOINT") or "", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")),
    "http": _Store(None, ("AIBRIX_HTTP_HEADERS",)),
}  # fmt: skip
_BY_SCHEME = {"s3": "s3", "tos": "tos", "gs": "gs", "gcs": "gs", "hf": "hf", "huggingface": "hf", "": "hf",
              "http": "http", "https": "http"}  # fmt: skip


def confine(held: Mapping[str, str], given: Mapping[str, str], uri: str) -> dict[str, str]:
    """The settings for fetching ``uri``: ``held`` (the runtime's own, already resolved) with ``given`` (the
    request's) on top, minus the held credentials wherever the request moved the endpoint or brought its own."""
    merged = {**held, **given}
    store = _STORES.get(_BY_SCHEME.get(scheme_of(uri), ""))
    if store is None:
        return merged
    brings_own = any(given.get(name) for name in store.secrets)
    moved = store.endpoint is None or store.endpoint(merged) != store.endpoint(held)
    if not (brings_own or moved):
        return merged
    for name in store.secrets:
        if name not in given:
            merged.pop(name, None)
    if not brings_own:
        merged[ANONYMOUS] = "1"
    return merged
