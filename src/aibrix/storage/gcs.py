"""Google Cloud Storage through its JSON API (also the gcp-storage-emulator via STORAGE_EMULATOR_HOST).

Listing: ``GET {base}/storage/v1/b/{bucket}/o?prefix=...&pageToken=...`` (items carry size, md5Hash, generation);
bytes: ``GET {base}/download/storage/v1/b/{bucket}/o/{object}?alt=media&generation=...``, with Range.
Credentials: a bearer token for a service account (GOOGLE_APPLICATION_CREDENTIALS or explicit JSON), fetched
again when it expires mid-download; anonymous otherwise (public buckets, the emulator). The token request goes
through the storage transport and the outbound policy like every other request (``_Token``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from typing import Any
from urllib.parse import quote, urlencode

from aibrix.auth import bearer
from aibrix.storage.base import (
    BadSetting,
    RemoteFile,
    StorageError,
    allowed,
    redact,
    relative_to_base,
    renewable,
    select_objects,
)
from aibrix.storage.fetch import request, request_json
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy

DEFAULT_BASE = "https://storage.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
TOKEN_URI = "https://oauth2.googleapis.com/token"


class GCSSource:
    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        base: str | None = None,
        service_account_json: str | None = None,
        credentials_file: str | None = None,
        page_size: int = 1000,
        policy: OutboundPolicy = DEFAULT_POLICY,
    ) -> None:
        self.bucket, self.key, self.page_size, self.policy = bucket, key, page_size, policy
        self.base = (base or DEFAULT_BASE).rstrip("/")
        self.token = _Token(service_account_json, credentials_file, policy)
        self.headers = self.token.headers()

    def describe(self) -> str:
        return f"gs://{self.bucket}/{self.key}"

    def list_files(self, suffixes: tuple[str, ...] = ()) -> list[RemoteFile]:
        items = {item["name"]: item for item in self._list(self.key.rstrip("/") if self.key else "")}
        base, names = select_objects(self.key, list(items), self.describe())
        return [self._remote(items[name], base) for name in names if allowed(name, suffixes)]

    def _remote(self, item: dict[str, Any], base: str) -> RemoteFile:
        name = item["name"]
        generation = str(item.get("generation", ""))
        query = {"alt": "media", **({"generation": generation} if generation else {})}
        path = f"b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"
        url = f"{self.base}/download/storage/v1/{path}?{urlencode(query)}"
        digest = ("md5", base64.b64decode(item["md5Hash"]).hex()) if item.get("md5Hash") else None
        remote = RemoteFile(
            relative_to_base(name, base), int(item["size"]), url, self.headers, digest, generation or None
        )
        if not self.token.enabled:
            return remote
        return renewable(remote, lambda stale: dataclasses.replace(stale, headers=self.token.headers(fresh=True)))

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            query = {"prefix": prefix, "maxResults": self.page_size, **({"pageToken": token} if token else {})}
            url = f"{self.base}/storage/v1/b/{quote(self.bucket, safe='')}/o?{urlencode(query)}"
            page = request_json(url, headers=self.headers, what=self.describe(), policy=self.policy)
            items.extend(page.get("items", []))
            token = page.get("nextPageToken")
            if not token:
                return items


class _Token:
    """A service account's access token (OAuth 2.0 JWT bearer grant, RFC 7523, as Google documents it for service
    accounts), fetched at start and again on demand, one fetch at a time. google-auth signs the assertion; the
    request goes through the storage transport like every other one: the token endpoint passes the outbound policy
    at the address dialled, is never redirected to (the assertion is a credential), and what it answers is bounded
    and never echoed into an error."""

    def __init__(self, service_account_json: str | None, credentials_file: str | None, policy: OutboundPolicy) -> None:
        self.enabled = bool(service_account_json or credentials_file)
        self.policy = policy
        self._lock = threading.Lock()
        self._token, self._expires = "", 0.0
        if not self.enabled:
            return
        if service_account_json:
            info = json.loads(service_account_json)
        else:
            with open(str(credentials_file)) as handle:
                info = json.load(handle)
        self.token_uri = str(info.get("token_uri") or TOKEN_URI)
        policy.check_url(self.token_uri)  # a key file can name any token endpoint
        try:
            from google.auth import crypt
        except ImportError as exc:
            raise StorageError("GCS credentials need google-auth: pip install 'aibrix[gcs]'") from exc
        try:
            self._signer = crypt.RSASigner.from_service_account_info(info)  # type: ignore[no-untyped-call]
            self._email = str(info["client_email"])
        except (KeyError, ValueError, TypeError):
            raise BadSetting("the GCS service account key has no usable private_key or client_email") from None

    def headers(self, fresh: bool = False) -> dict[str, str]:
        if not self.enabled:
            return {}
        with self._lock:
            if fresh or time.time() > self._expires - 60:
                self._fetch()
            return {"Authorization": bearer(self._token)}

    def _fetch(self) -> None:
        from google.auth import jwt

        now = int(time.time())
        claims = {"iss": self._email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + 3600}
        assertion = jwt.encode(self._signer, claims)  # type: ignore[no-untyped-call]
        form = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
        what = f"the GCS token endpoint {redact(self.token_uri)}"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, answer = request(
            self.token_uri, method="POST", body=form.encode(), headers=headers, what=what, policy=self.policy
        )
        try:
            if status != 200:
                raise ValueError
            token = json.loads(answer)
            self._token = str(token["access_token"])
            self._expires = time.time() + float(token.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise StorageError(f"{what} answered HTTP {status} without an access token") from None
