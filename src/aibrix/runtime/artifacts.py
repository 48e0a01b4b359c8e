"""Adapter artifacts: where they come from (URL + credentials), where they may go, and what may be fetched."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from aibrix.storage.base import AccessDenied, BadURI

# Kubernetes object names, as the controller names adapters and secrets.
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

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
}


def credential_env(credentials: Mapping[str, str]) -> dict[str, str]:
    """Environment-style settings for a download from the controller's credential keys; unknown keys are refused
    so a typo does not silently fall back to the runtime's own identity."""
    unknown = sorted(set(credentials) - set(CREDENTIAL_ENV))
    if unknown:
        raise BadURI(f"unknown credential keys {unknown}; known: {sorted(CREDENTIAL_ENV)}")
    return {CREDENTIAL_ENV[key]: str(value) for key, value in credentials.items() if value}


def read_secret(root: Path, name: str) -> dict[str, str]:
    """A Kubernetes secret mounted as files under ``root/name/`` (one file per key)."""
    if not _DNS1123.fullmatch(name) or len(name) > 253:
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
    if not _DNS1123.fullmatch(name) or name in (".", ".."):
        raise BadURI(f"adapter name {name!r} is not a Kubernetes object name")
    folder = root / name
    if folder.is_symlink() or not folder.resolve().is_relative_to(root.resolve()):
        raise BadURI(f"adapter directory for {name!r} resolves outside {root}")
    return folder


_BLOCKED_NETWORKS = [
    ipaddress.ip_network(net)
    for net in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "0.0.0.0/8")
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are an IPv4 address


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and reaches: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    NAT64 (64:ff9b::a.b.c.d), 6to4 (2002:AABB:CCDD::) and Teredo; so no spelling hides a blocked address."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # IPv4-compatible (deprecated, still routed by some stacks)
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def is_blocked(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Link-local and cloud metadata addresses, however they are spelled."""
    return any(candidate in network for candidate in (address, *embedded_ipv4(address)) for network in _BLOCKED_NETWORKS
               if candidate.version == network.version)  # fmt: skip


def check_url_target(url: str, *, allow_metadata: bool) -> None:
    """Refuse http(s) URLs whose host resolves to link-local or cloud metadata addresses (SSRF)."""
    if allow_metadata:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return
    host = (parts.hostname or "").rstrip(".")  # "169.254.169.254." is the same address to most clients
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise BadURI(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if is_blocked(address):
            raise AccessDenied(f"refusing to fetch from {host} ({address}): link-local or cloud metadata address")


def is_local_path(url: str) -> bool:
    return url.startswith("/") or url.startswith("file://")


def local_path_of(url: str) -> str:
    path = url[len("file://") :] if url.startswith("file://") else url
    if not os.path.isabs(path):
        raise BadURI(f"local artifact paths must be absolute, not {url!r}")
    return os.path.normpath(path)
