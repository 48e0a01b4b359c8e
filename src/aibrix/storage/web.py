"""A single file behind a plain http(s) URL."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from aibrix.storage.base import BadURI, RemoteFile, allowed, redact
from aibrix.storage.fetch import request
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy


class WebSource:
    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, policy: OutboundPolicy = DEFAULT_POLICY
    ) -> None:
        name = posixpath.basename(unquote(urlsplit(url).path))
        if not name:
            raise BadURI(f"{redact(url)!r} does not name a file")
        self.url, self.headers, self.file_name, self.policy = url, dict(headers or {}), name, policy

    def describe(self) -> str:
        return redact(self.url)

    def list_files(self, suffixes: tuple[str, ...] = ()) -> list[RemoteFile]:
        if not allowed(self.file_name, suffixes):
            return []
        _, headers, _ = request(self.url, method="HEAD", headers=self.headers, what=self.describe(), policy=self.policy)
        size = int(headers["content-length"]) if headers.get("content-length", "").isdigit() else None
        etag = headers.get("etag")
        ranges = headers.get("accept-ranges", "").lower() == "bytes" and size is not None
        version = etag or (f"{size}:{headers['last-modified']}" if headers.get("last-modified") else None)
        return [RemoteFile(self.file_name, size, self.url, self.headers, None, version, ranges)]
