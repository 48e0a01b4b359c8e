"""S3 and S3-compatible stores (AWS, Ceph RGW, MinIO, Volcano Engine TOS at its tos-s3-* endpoints).

botocore provides what is hard to get right (the whole credential chain: keys, shared config, web identity,
container and instance roles; request signing; listing pages); the bytes are fetched by the downloader through
presigned URLs, so every part is a plain ranged GET. A presigned URL that stops working mid-download (its session
credentials expired) is signed again with the credentials botocore holds then, which it refreshes itself.

An endpoint override (AWS_ENDPOINT_URL, TOS_ENDPOINT, or one arriving with a request's credentials) passes the
outbound policy before botocore talks to it; the presigned bytes go through the storage transport like all others.
"""

from __future__ import annotations

import dataclasses
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aibrix.storage.base import (
    AccessDenied,
    NotFound,
    RemoteFile,
    StorageError,
    TransientError,
    allowed,
    relative_to_base,
    renewable,
    select_objects,
)
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy

URL_LIFETIME = 12 * 3600


@functools.cache
def _data_loader() -> Any:
    """botocore's service descriptions, read once per process: each new session would parse them again (~80 ms of
    JSON per download, most of a small adapter's fetch). Sessions stay separate: credentials are per source."""
    from botocore.loaders import create_loader

    return create_loader()


class S3Source:
    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        scheme: str = "s3",
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str | None = None,
        page_size: int = 1000,
        policy: OutboundPolicy = DEFAULT_POLICY,
        credential_chain: bool = True,
    ) -> None:
        """Keys given are used as they are; without them, botocore's chain is asked only when ``credential_chain``
        (else requests go unsigned: a caller's endpoint must not get the identity the runtime runs as)."""
        import botocore.session
        from botocore import UNSIGNED
        from botocore.config import Config

        self.bucket, self.key, self.scheme, self.page_size = bucket, key, scheme, page_size
        if endpoint:
            policy.check_url(endpoint)
        session = botocore.session.get_session()
        session.register_component("data_loader", _data_loader())
        if access_key and secret_key:
            session.set_credentials(access_key, secret_key, session_token)
            signed = True
        else:
            signed = credential_chain and session.get_credentials() is not None
        style = addressing_style or ("path" if endpoint else "auto")
        config = Config(
            signature_version="s3v4" if signed else UNSIGNED,
            s3={"addressing_style": style},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        self.client: Any = session.create_client("s3", endpoint_url=endpoint, region_name=region, config=config)

    def describe(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"

    def list_files(self, suffixes: tuple[str, ...] = ()) -> list[RemoteFile]:
        objects = {obj["Key"]: obj for obj in self._list(self.key)}
        base, names = select_objects(self.key, list(objects), self.describe())
        chosen = [objects[name] for name in names if allowed(name, suffixes)]
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda obj: self._remote(obj, base), chosen))

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=prefix.rstrip("/"), PaginationConfig={"PageSize": self.page_size}
            )
            for page in pages:
                objects.extend(page.get("Contents", []))
        except Exception as exc:  # botocore raises ClientError/EndpointConnectionError/NoCredentialsError ...
            raise _storage_error(exc, self.describe()) from exc
        return objects

    def _remote(self, obj: dict[str, Any], base: str) -> RemoteFile:
        key = obj["Key"]
        etag = obj.get("ETag", "").strip('"')
        digest = None
        if len(etag) == 32 and "-" not in etag:
            # A single-part upload's ETag is its MD5, except under SSE-KMS or SSE-C: ask before trusting it.
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                raise _storage_error(exc, f"{self.scheme}://{self.bucket}/{key}") from exc
            if head.get("ServerSideEncryption") != "aws:kms" and not head.get("SSECustomerAlgorithm"):
                digest = ("md5", etag.lower())
        remote = RemoteFile(relative_to_base(key, base), obj["Size"], self._presign(key), {}, digest, etag or None)
        return renewable(remote, lambda stale: dataclasses.replace(stale, url=self._presign(key)))

    def _presign(self, key: str) -> str:
        params = {"Bucket": self.bucket, "Key": key}
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=URL_LIFETIME))


def _storage_error(exc: Exception, what: str) -> StorageError:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    name = type(exc).__name__
    if code in ("NoSuchBucket", "NoSuchKey", "404") or status == 404:
        return NotFound(f"{what}: {'bucket does not exist' if code == 'NoSuchBucket' else 'not found'}")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status in (401, 403):
        return AccessDenied(f"{what}: access denied ({code or status}); check the credentials")
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return AccessDenied(f"{what}: no usable credentials ({exc})")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
        return TransientError(f"{what}: {exc}")
    return StorageError(f"{what}: {name}: {exc}")
