"""Google Cloud Storage through its JSON API (also the gcp-storage-emulator via STORAGE_EMULATOR_HOST).

Listing: ``GET {base}/storage/v1/b/{bucket}/o?prefix=...&pageToken=...`` (items carry size, md5Hash, generation);
bytes: ``GET {base}/download/storage/v1/b/{bucket}/o/{object}?alt=media&generation=...``, with Range.
Credentials: a bearer token from google-auth when a service account is given (GOOGLE_APPLICATION_CREDENTIALS or
explicit JSON); anonymous otherwise (public buckets, the emulator).
"""

from __future__ import annotations

import json
import posixpath
from urllib.parse import quote, urlencode

from aibrix.storage.base import RemoteFile, StorageError, allowed, relative_to_base, select_objects
from aibrix.storage.fetch import request_json

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
    ) -> None:
        self.bucket, self.key, self.page_size = bucket, key, page_size
        self.base = (base or DEFAULT_BASE).rstrip("/")
        self.headers = _auth_headers(service_account_json, credentials_file)
        self.model_name = posixpath.basename(key.rstrip("/")) or bucket

    def describe(self) -> str:
        return f"gs://{self.bucket}/{self.key}"

    def list_files(self, suffixes: tuple[str, ...] = ()) -> list[RemoteFile]:
        items = {item["name"]: item for item in self._list(self.key.rstrip("/") if self.key else "")}
        base, names = select_objects(self.key, list(items), self.describe())
        chosen = [items[name] for name in names]
        files = []
        for item in chosen:
            if not allowed(item["name"], suffixes):
                continue
            name = item["name"]
            generation = str(item.get("generation", ""))
            query = {"alt": "media", **({"generation": generation} if generation else {})}
            path = f"b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"
            url = f"{self.base}/download/storage/v1/{path}?{urlencode(query)}"
            digest = ("md5", _b64_hex(item["md5Hash"])) if item.get("md5Hash") else None
            files.append(
                RemoteFile(
                    relative_to_base(name, base), int(item["size"]), url, self.headers, digest, generation or None
                )
            )
        return files

    def _list(self, prefix: str) -> list[dict]:
        items: list[dict] = []
        token = None
        while True:
            query = {"prefix": prefix, "maxResults": self.page_size, **({"pageToken": token} if token else {})}
            url = f"{self.base}/storage/v1/b/{quote(self.bucket, safe='')}/o?{urlencode(query)}"
            page = request_json(url, headers=self.headers, what=self.describe())
            items.extend(page.get("items", []))
            token = page.get("nextPageToken")
            if not token:
                return items


def _b64_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


def _auth_headers(service_account_json: str | None, credentials_file: str | None) -> dict[str, str]:
    if not service_account_json and not credentials_file:
        return {}
    try:
        from google.auth.transport.requests import Request
        from google.oauth2 import service_account
    except ImportError as exc:
        raise StorageError("GCS credentials need google-auth: pip install 'aibrix[gcs]'") from exc
    if service_account_json:
        info = json.loads(service_account_json)
        credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    else:
        credentials = service_account.Credentials.from_service_account_file(credentials_file, scopes=[SCOPE])
    credentials.refresh(Request())
    return {"Authorization": f"Bearer {credentials.token}"}
