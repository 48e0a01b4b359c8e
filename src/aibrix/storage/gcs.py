"""Google Cloud Storage through its JSON API (also the gcp-storage-emulator via STORAGE_EMULATOR_HOST).

Listing: ``GET {base}/storage/v1/b/{bucket}/o?prefix=...&pageToken=...`` (items carry size, md5Hash, generation);
bytes: ``GET {base}/download/storage/v1/b/{bucket}/o/{object}?alt=media&generation=...``, with Range.
Credentials: a bearer token from google-auth when a service account is given (GOOGLE_APPLICATION_CREDENTIALS or
explicit JSON), fetched again when it expires mid-download; anonymous otherwise (public buckets, the emulator). The
token endpoint a service account names passes the outbound policy like every other address.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from typing import Any
from urllib.parse import quote, urlencode

from aibrix.auth import bearer
from aibrix.storage.base import RemoteFile, StorageError, allowed, relative_to_base, renewable, select_objects
from aibrix.storage.fetch import request_json
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy

DEFAULT_BASE = "https://storage.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


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
        if self.token.credentials is None:
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
    """A service account's access token, fetched at start and again on demand (one fetch at a time)."""

    def __init__(self, service_account_json: str | None, credentials_file: str | None, policy: OutboundPolicy) -> None:
        self.credentials: Any = None
        self._lock = threading.Lock()
        if not service_account_json and not credentials_file:
            return
        if service_account_json:
            info = json.loads(service_account_json)
        else:
            with open(str(credentials_file)) as handle:
                info = json.load(handle)
        if info.get("token_uri"):
            policy.check_url(info["token_uri"])  # a key file can name any token endpoint
        try:
            from google.oauth2 import service_account
        except ImportError as exc:
            raise StorageError("GCS credentials need google-auth: pip install 'aibrix[gcs]'") from exc
        self.credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])

    def headers(self, fresh: bool = False) -> dict[str, str]:
        if self.credentials is None:
            return {}
        from google.auth.transport.requests import Request

        with self._lock:
            if fresh or not self.credentials.valid:
                self.credentials.refresh(Request())
            return {"Authorization": bearer(self.credentials.token)}
