"""Adapter artifacts: where they come from (URL + credentials), where they may go, and what may be fetched."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from aibrix.downloader.config import scheme_variable
from aibrix.names import ADAPTER_NAME_RULE, is_adapter_name, is_kubernetes_name
from aibrix.storage.base import AccessDenied, BadURI

# Credential keys the controller sends (seed: lora-dynamic-loading, "Private Artifact Storage Support") -> the
# variables the storage sources read.
CREDENTIAL_ENV = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "aws_region": "AWS_REGION",
    "aws_endpoint_url": "AWS_ENDPOINT_URL",
    "tos_access_key": "TOS_ACCESS_KEY",
    "tos_secret_key": "TOS_SECRET_KEY",
    "tos_endpoint": "TOS_ENDPOINT",
    "tos_region": "TOS_REGION",
    "gcp_service_account_json": "GCP_SERVICE_ACCOUNT_JSON",
    "huggingface_token": "HF_TOKEN",
    # headers for an http(s) artifact, a JSON object ({"Authorization": "Bearer ...", "X-Api-Key": "..."}); secrets
    "http_headers": "AIBRIX_HTTP_HEADERS",
    # upstream aibrix's delegated TOS keys (runtime/downloaders.py)
    "TOS_ACCESS_KEY": "TOS_ACCESS_KEY",
    "TOS_SECRET_KEY": "TOS_SECRET_KEY",
    "TOS_SESSION_KEY": "TOS_SESSION_TOKEN",
}
# Upstream's scheme-neutral keys: their variable depends on the artifact's store, as for the downloader's
# download_extra_config (``scheme_variable``).
SCHEME_KEYS = ("endpoint", "region")
# Accepted for upstream's sake, and not acted on (said in the reply's log line, never silently).
IGNORED_KEYS = {"enable_crc": "TOS CRC64 is not checked", "tos_enable_crc": "TOS CRC64 is not checked"}
KNOWN_KEYS = frozenset({*CREDENTIAL_ENV, *SCHEME_KEYS, *IGNORED_KEYS})


def credential_env(credentials: Mapping[str, str], scheme: str = "") -> dict[str, str]:
    """Environment-style settings for a download from the controller's (and upstream's) credential keys; unknown
    keys are refused so a typo does not silently fall back to the runtime's own identity."""
    unknown = sorted(set(credentials) - KNOWN_KEYS)
    if unknown:
        raise BadURI(f"unknown credential keys {unknown}; known: {sorted(KNOWN_KEYS)}")
    env = {}
    for key, value in credentials.items():
        if not value or key in IGNORED_KEYS:
            continue
        name = CREDENTIAL_ENV.get(key) or scheme_variable(key, scheme)
        env[name] = str(value)
    return env


def read_secret(root: Path, name: str) -> dict[str, str]:
    """A Kubernetes secret mounted as files under ``root/name/`` (one file per key)."""
    if not is_kubernetes_name(name):
        raise BadURI(f"credentials_secret {name!r} is not a Kubernetes secret name")
    folder = (root / name).resolve()
    if not folder.is_relative_to(root.resolve()) or not folder.is_dir():
        raise AccessDenied(f"credentials secret {name!r} is not mounted under {root}")
    values = {}
    for entry in folder.iterdir():
        if entry.name.startswith(".") or not entry.is_file():
            continue  # the ..data symlinks Kubernetes adds
        if entry.resolve().is_relative_to(root.resolve()):  # Kubernetes' ..data symlinks stay inside the mount
            values[entry.name] = entry.read_text().strip()
    return values


def adapter_folder(root: Path, name: str) -> Path:
    """``root/name`` for an adapter name already validated as a Kubernetes name; refuses anything that would resolve
    elsewhere (a symlink planted in the adapter directory, for one)."""
    if not is_adapter_name(name):
        raise BadURI(f"adapter name {name!r} must be {ADAPTER_NAME_RULE}")
    folder = root / name
    if folder.is_symlink() or not folder.resolve().is_relative_to(root.resolve()):
        raise BadURI(f"adapter directory for {name!r} resolves outside {root}")
    return folder


SPARE_SUFFIX = "~b"  # "~" is in no adapter name: the spare folder can never be another adapter's


def adapter_folders(root: Path, name: str) -> tuple[Path, Path]:
    """The two folders an adapter's files may live in: ``root/name``, and ``root/name~b`` while a replacement
    downloads beside the version still serving (they take turns)."""
    primary = adapter_folder(root, name)
    spare = primary.with_name(name + SPARE_SUFFIX)
    if spare.is_symlink():
        raise BadURI(f"adapter directory for {name!r} resolves outside {root}")
    return primary, spare


def is_local_path(url: str) -> bool:
    return url.startswith("/") or url.startswith("file://")


def local_path_of(url: str) -> str:
    path = url[len("file://") :] if url.startswith("file://") else url
    if not os.path.isabs(path):
        raise BadURI(f"local artifact paths must be absolute, not {url!r}")
    return os.path.normpath(path)
