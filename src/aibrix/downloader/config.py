"""The downloader's settings as upstream users give them: environment variables (with upstream's ``DOWNLOADER_``
-prefixed spellings of the AWS/TOS/HF ones), ``DOWNLOADER_EXTRA_CONFIG`` and ``--download-extra-config`` JSON, and
``download_extra_config`` dicts. Everything becomes one environment mapping; what we do not act on is said, once,
never silently dropped."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aibrix.storage.base import BadSetting

# download_extra_config key -> variable (by scheme where the key means different things for S3 and TOS)
_BY_SCHEME = {
    "ak": {"tos": "TOS_ACCESS_KEY", "": "AWS_ACCESS_KEY_ID"},
    "sk": {"tos": "TOS_SECRET_KEY", "": "AWS_SECRET_ACCESS_KEY"},
    "endpoint": {"tos": "TOS_ENDPOINT", "": "AWS_ENDPOINT_URL"},
    "region": {"tos": "TOS_REGION", "": "AWS_REGION"},
}
_PLAIN = {
    "hf_endpoint": "HF_ENDPOINT",
    "hf_token": "HF_TOKEN",
    "hf_revision": "HF_REVISION",
    "num_threads": "DOWNLOADER_NUM_THREADS",
    "max_io_queue": "DOWNLOADER_S3_MAX_IO_QUEUE",
    "io_chunksize": "DOWNLOADER_S3_IO_CHUNKSIZE",
    "part_threshold": "DOWNLOADER_PART_THRESHOLD",
    "part_chunksize": "DOWNLOADER_PART_CHUNKSIZE",
    "allow_file_suffix": "DOWNLOADER_ALLOW_FILE_SUFFIX",
    "force_download": "DOWNLOADER_FORCE_DOWNLOAD",
}
EXTRA_CONFIG_KEYS = tuple(sorted({*_BY_SCHEME, *_PLAIN}))

# Upstream documents these variables with a DOWNLOADER_ prefix too; the plain spelling wins when both are set.
_ALIASED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION",
            "TOS_ACCESS_KEY", "TOS_SECRET_KEY", "TOS_SESSION_TOKEN", "TOS_ENDPOINT", "TOS_REGION",
            "HF_TOKEN", "HF_ENDPOINT", "HF_REVISION")  # fmt: skip

# Set, but not acted on: why, in one line each.
IGNORED = {
    "DOWNLOADER_S3_MAX_IO_QUEUE": "a boto3 transfer-manager queue; parts are written in place as they arrive",
    "DOWNLOADER_S3_IO_CHUNKSIZE": "a boto3 transfer-manager write size; reads and writes are 4 MiB",
    "TOS_ENABLE_CRC": "TOS CRC64 is not checked; objects whose ETag is an MD5 are verified byte for byte",
}


def settings_env(env: Mapping[str, str], extra: Mapping[str, Any] | None = None, *, scheme: str = "") -> dict[str, str]:
    """``env`` with the DOWNLOADER_-prefixed aliases, DOWNLOADER_EXTRA_CONFIG and ``extra`` applied (``extra`` wins,
    then DOWNLOADER_EXTRA_CONFIG, then the environment)."""
    merged = dict(env)
    for name in _ALIASED:
        if not merged.get(name) and merged.get(f"DOWNLOADER_{name}"):
            merged[name] = merged[f"DOWNLOADER_{name}"]
    from_env = parse_extra_config(merged.pop("DOWNLOADER_EXTRA_CONFIG", None), "DOWNLOADER_EXTRA_CONFIG")
    for source in (from_env, extra or {}):
        merged.update(extra_config_env(source, scheme))
    return merged  # applied once: the result can be passed through here again without changing


def resolved_env(env: Mapping[str, str], scheme: str = "") -> dict[str, str]:
    """``settings_env`` with the DOWNLOADER_ spellings gone once applied, so that dropping a variable from the
    result (a credential confined to its endpoint) cannot bring it back through its alias."""
    merged = settings_env(env, scheme=scheme)
    for name in _ALIASED:
        merged.pop(f"DOWNLOADER_{name}", None)
    return merged


def parse_extra_config(text: str | None, origin: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadSetting(f"{origin} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadSetting(f"{origin} must be a JSON object with keys among {', '.join(EXTRA_CONFIG_KEYS)}")
    return value


def extra_config_env(extra: Mapping[str, Any], scheme: str) -> dict[str, str]:
    """Variables for upstream's download_extra_config keys; an unknown key is refused, not ignored."""
    unknown = sorted(set(extra) - set(EXTRA_CONFIG_KEYS))
    if unknown:
        raise BadSetting(f"unknown download_extra_config keys {unknown}; known: {', '.join(EXTRA_CONFIG_KEYS)}")
    out: dict[str, str] = {}
    for key, value in extra.items():
        if value is None:
            continue
        name = _PLAIN.get(key) or scheme_variable(key, scheme)
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "1" if value else "0"
        out[name] = str(value)
    return out


def scheme_variable(key: str, scheme: str) -> str:
    """The variable an upstream key whose meaning depends on the store (ak, sk, endpoint, region) sets for
    ``scheme``: TOS's for tos://, else the S3 one (S3-compatible stores read those)."""
    by_scheme = _BY_SCHEME[key]
    return by_scheme.get(scheme, by_scheme[""])


def ignored_settings(env: Mapping[str, str]) -> list[str]:
    """One line per variable that is set but not acted on, saying why."""
    lines = [f"{name} is ignored: {why}" for name, why in IGNORED.items() if env.get(name)]
    if (env.get("DOWNLOADER_TOS_VERSION") or "v2").lower() == "v1":
        lines.append(
            "DOWNLOADER_TOS_VERSION=v1 is ignored: TOS is spoken through its S3-compatible API "
            "(tos-s3-<region>.volces.com), which serves the same buckets"
        )
    return lines


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "t", "y")
