"""Turn a model URI and the documented environment variables into a storage source."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from aibrix.storage.base import BadURI, RemoteFile
from aibrix.storage.base import redact as redact  # re-exported: callers import it from here
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy

HF_REPO = re.compile(r"[\w.-]+/[\w.-]+")
# Schemes open_source knows besides local paths and bare HuggingFace repository ids.
REMOTE_SCHEMES = ("s3://", "tos://", "gs://", "gcs://", "huggingface://", "hf://", "http://", "https://")


class Source(Protocol):
    model_name: str

    def describe(self) -> str: ...

    def list_files(self, suffixes: tuple[str, ...] = ()) -> list[RemoteFile]: ...


def open_source(uri: str, env: Mapping[str, str] | None = None, *, policy: OutboundPolicy = DEFAULT_POLICY) -> Source:
    """The source for ``uri``: s3://, tos://, gs:// (gcs://), http(s)://, huggingface:// (hf://), file:// or a
    local path, or a bare HuggingFace repository id ``organization/name``."""
    env = os.environ if env is None else env
    uri = uri.strip()
    if not uri:
        raise BadURI("the model URI is empty")
    scheme, _, rest = uri.partition("://") if "://" in uri else ("", "", uri)
    scheme = scheme.lower()
    if scheme in ("s3", "tos", "gs", "gcs"):
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise BadURI(f"{uri!r} has no bucket")
        opener = _gcs if scheme in ("gs", "gcs") else _s3 if scheme == "s3" else _tos
        return opener(bucket, key, env, policy)
    if scheme in ("http", "https"):
        from aibrix.storage.web import WebSource

        return WebSource(uri, policy=policy)
    if scheme in ("huggingface", "hf") or (not scheme and HF_REPO.fullmatch(uri) and not os.path.exists(uri)):
        from aibrix.storage.huggingface import HuggingFaceSource

        token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None
        return HuggingFaceSource(rest.strip("/"), revision=env.get("HF_REVISION") or None,
                                 endpoint=env.get("HF_ENDPOINT") or None, token=token, policy=policy)  # fmt: skip
    if scheme == "file" or not scheme:
        from aibrix.storage.local import LocalSource

        return LocalSource(os.path.expanduser(rest))
    raise BadURI(f"unsupported model URI scheme {scheme!r} in {uri!r}")


def _page_size(env: Mapping[str, str]) -> int:
    return int(env.get("DOWNLOADER_LIST_PAGE_SIZE") or 1000)


def _s3(bucket: str, key: str, env: Mapping[str, str], policy: OutboundPolicy) -> Source:
    from aibrix.storage.s3 import S3Source

    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    return S3Source(
        bucket,
        key,
        scheme="s3",
        endpoint=endpoint,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        access_key=env.get("AWS_ACCESS_KEY_ID"),
        secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        session_token=env.get("AWS_SESSION_TOKEN"),
        addressing_style=env.get("DOWNLOADER_S3_ADDRESSING_STYLE") or ("path" if endpoint else None),
        page_size=_page_size(env),
        policy=policy,
    )


def _tos(bucket: str, key: str, env: Mapping[str, str], policy: OutboundPolicy) -> Source:
    from aibrix.storage.s3 import S3Source

    endpoint = env.get("TOS_ENDPOINT") or None
    if endpoint and "://" not in endpoint:
        endpoint = "https://" + endpoint
    return S3Source(
        bucket,
        key,
        scheme="tos",
        endpoint=endpoint,
        region=env.get("TOS_REGION") or None,
        access_key=env.get("TOS_ACCESS_KEY"),
        secret_key=env.get("TOS_SECRET_KEY"),
        # TOS' S3 endpoints want virtual-hosted buckets; a test server on an IP address cannot do that.
        addressing_style=env.get("DOWNLOADER_S3_ADDRESSING_STYLE") or _tos_style(endpoint),
        page_size=_page_size(env),
        policy=policy,
    )


def _gcs(bucket: str, key: str, env: Mapping[str, str], policy: OutboundPolicy) -> Source:
    from aibrix.storage.gcs import GCSSource

    emulator = env.get("STORAGE_EMULATOR_HOST")
    if emulator and "://" not in emulator:
        emulator = "http://" + emulator
    return GCSSource(
        bucket,
        key,
        base=emulator or env.get("GCS_ENDPOINT") or None,
        service_account_json=env.get("GCP_SERVICE_ACCOUNT_JSON") or None,
        credentials_file=env.get("GOOGLE_APPLICATION_CREDENTIALS") or None,
        page_size=_page_size(env),
        policy=policy,
    )


def _tos_style(endpoint: str | None) -> str:
    host = urlsplit(endpoint).hostname if endpoint else None
    if host is None:
        return "virtual"
    try:
        ipaddress.ip_address(host)
        return "path"
    except ValueError:
        return "path" if host == "localhost" else "virtual"
