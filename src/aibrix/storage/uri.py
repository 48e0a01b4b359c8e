"""Turn a model URI and the documented environment variables into a storage source."""

from __future__ import annotations

import ipaddress
import json
import os
import posixpath
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from aibrix.storage.base import BadSetting, BadURI, RemoteFile
from aibrix.storage.base import redact as redact  # re-exported: callers import it from here
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy

HF_REPO = re.compile(r"[\w.-]+/[\w.-]+")


class SchemeKind(StrEnum):
    OBJECT_STORE = "object-store"  # needs credentials and a listing: only the runtime (or the downloader) fetches it
    HUB = "hub"  # a HuggingFace repository: an engine can resolve the id itself
    WEB = "web"  # one file at a URL


# The one table of URI schemes, besides local paths and bare HuggingFace repository ids: open_source opens them, the
# runtime and the controller accept them (tests/test_registries.py checks every other list against this one).
SCHEMES: dict[str, SchemeKind] = {
    "s3": SchemeKind.OBJECT_STORE,
    "tos": SchemeKind.OBJECT_STORE,
    "gs": SchemeKind.OBJECT_STORE,
    "gcs": SchemeKind.OBJECT_STORE,
    "huggingface": SchemeKind.HUB,
    "hf": SchemeKind.HUB,
    "http": SchemeKind.WEB,
    "https": SchemeKind.WEB,
}
REMOTE_SCHEMES = tuple(f"{scheme}://" for scheme in SCHEMES)
ANONYMOUS = "AIBRIX_STORAGE_ANONYMOUS"  # "1": S3 requests unsigned, botocore's credential chain not asked


def schemes_of(kind: SchemeKind) -> tuple[str, ...]:
    """The ``scheme://`` prefixes of one kind."""
    return tuple(f"{scheme}://" for scheme, of in SCHEMES.items() if of is kind)


class Source(Protocol):
    def describe(self) -> str: ...

    def list_files(self, suffixes: tuple[str, ...] = ()) -> list[RemoteFile]: ...


def open_source(uri: str, env: Mapping[str, str] | None = None, *, policy: OutboundPolicy = DEFAULT_POLICY) -> Source:
    """The source for ``uri``: s3://, tos://, gs:// (gcs://), http(s)://, huggingface:// (hf://), file:// or a
    local path, or a bare HuggingFace repository id ``organization/name``."""
    env = os.environ if env is None else env
    uri = uri.strip()
    check_uri(uri)  # the scheme is one of those below from here on
    scheme, rest = _split(uri)
    if scheme in ("s3", "tos", "gs", "gcs"):
        bucket, _, key = rest.partition("/")
        opener = _gcs if scheme in ("gs", "gcs") else _s3 if scheme == "s3" else _tos
        return opener(bucket, key, env, policy)
    if scheme in ("http", "https"):
        from aibrix.storage.web import WebSource

        return WebSource(uri, headers=_http_headers(env.get("AIBRIX_HTTP_HEADERS")), policy=policy)
    if _is_huggingface(scheme, uri):
        from aibrix.storage.huggingface import HuggingFaceSource

        token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None
        return HuggingFaceSource(
            rest.strip("/"),
            revision=env.get("HF_REVISION") or None,
            endpoint=env.get("HF_ENDPOINT") or None,
            token=token,
            policy=policy,
        )
    from aibrix.storage.local import LocalSource  # file:// or a path

    return LocalSource(os.path.expanduser(rest))


def check_uri(uri: str) -> str:
    """Refuse a URI that cannot name a model, without touching the network; returns the name its files get by
    default (``organization/name`` for HuggingFace, as upstream lays it out; else the last part of the path).
    The one rule for that name: the CLI, the library and the runtime all use it."""
    uri = uri.strip()
    scheme, rest = _split(uri)
    if not uri:
        raise BadURI("the model URI is empty")
    if scheme in ("s3", "tos", "gs", "gcs"):
        bucket, slash, key = rest.partition("/")
        if not bucket:
            raise BadURI(f"{uri!r} has no bucket")
        if not slash:  # as upstream: a bare bucket is almost always a mistake
            raise BadURI(f"{uri!r} names a bucket, not a model: give {uri}/<prefix>/ (or {uri}/ for the whole bucket)")
        return posixpath.basename(key.rstrip("/")) or bucket
    if _is_huggingface(scheme, uri):
        repo = rest.strip("/")
        if not HF_REPO.fullmatch(repo):
            raise BadURI(f"{repo!r} is not a HuggingFace repository id (expected 'organization/name')")
        return repo
    if scheme in ("http", "https"):
        return posixpath.basename(unquote(urlsplit(uri).path))  # the file's name (a URL ending in / names none)
    if scheme in ("file", ""):
        return Path(os.path.expanduser(rest)).name
    raise BadURI(f"unsupported model URI scheme {scheme!r} in {redact(uri)!r}")


def scheme_of(uri: str) -> str:
    """The URI's scheme, lower-cased ("" for paths and bare HuggingFace ids)."""
    return _split(uri.strip())[0]


def _split(uri: str) -> tuple[str, str]:
    """(scheme lower-cased, the rest); ("", uri) for paths and bare HuggingFace ids."""
    if "://" not in uri:
        return "", uri
    scheme, _, rest = uri.partition("://")
    return scheme.lower(), rest


def _is_huggingface(scheme: str, uri: str) -> bool:
    """huggingface:// and hf://, or a bare ``organization/name`` that is not a local path."""
    return scheme in ("huggingface", "hf") or (not scheme and bool(HF_REPO.fullmatch(uri)) and not os.path.exists(uri))


def _http_headers(text: str | None) -> dict[str, str]:
    """Headers for an http(s) source from a JSON object; the values are secrets and never appear in errors."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise BadSetting("http_headers must be a JSON object of header names to values") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadSetting("http_headers must be a JSON object of header names to string values")
    if any("\r" in k + v or "\n" in k + v for k, v in value.items()):
        raise BadSetting("http_headers must not contain line breaks")
    return value


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
        credential_chain=env.get(ANONYMOUS) != "1",
    )


def _tos(bucket: str, key: str, env: Mapping[str, str], policy: OutboundPolicy) -> Source:
    from aibrix.storage.s3 import S3Source

    region = env.get("TOS_REGION") or "cn-beijing"  # upstream's default region
    endpoint = tos_s3_endpoint(env.get("TOS_ENDPOINT") or f"tos-{region}.volces.com")
    return S3Source(
        bucket,
        key,
        scheme="tos",
        endpoint=endpoint,
        region=region,
        access_key=env.get("TOS_ACCESS_KEY"),
        secret_key=env.get("TOS_SECRET_KEY"),
        session_token=env.get("TOS_SESSION_TOKEN") or env.get("TOS_SESSION_KEY") or None,
        # TOS' S3 endpoints want virtual-hosted buckets; a test server on an IP address cannot do that.
        addressing_style=env.get("DOWNLOADER_S3_ADDRESSING_STYLE") or _tos_style(endpoint),
        page_size=_page_size(env),
        policy=policy,
        credential_chain=False,  # TOS keys only: the AWS chain's credentials are not for Volcengine's endpoints
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


def tos_s3_endpoint(endpoint: str) -> str:
    """TOS's S3-compatible endpoint for an endpoint as upstream users give it: the native host
    ``tos-<region>.volces.com`` (or ``.ivolces.com``, the internal network) becomes ``tos-s3-<region>...``
    (Volcengine serves the S3 API there); any other endpoint is used as given."""
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if host.startswith("tos-") and not host.startswith("tos-s3-") and host.endswith((".volces.com", ".ivolces.com")):
        return endpoint.replace(f"//{host}", f"//tos-s3-{host[len('tos-') :]}", 1)
    return endpoint


def _tos_style(endpoint: str | None) -> str:
    host = urlsplit(endpoint).hostname if endpoint else None
    if host is None:
        return "virtual"
    try:
        ipaddress.ip_address(host)
        return "path"
    except ValueError:
        return "path" if host == "localhost" else "virtual"
