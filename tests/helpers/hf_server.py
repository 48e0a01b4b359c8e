"""A small server speaking the HuggingFace Hub's HTTP protocol, for HF_ENDPOINT in tests and benchmarks.

What it implements (as huggingface_hub uses it): ``GET /api/models/{repo}/revision/{rev}[?blobs=true]`` (commit sha and
siblings with size, blobId and lfs metadata); ``HEAD|GET /{repo}/resolve/{rev}/{path}`` with ETag, X-Repo-Commit,
Content-Length and Range, LFS files answered by a 302 to ``/lfs/{sha256}`` (with X-Linked-Etag / X-Linked-Size),
as the Hub redirects LFS files to its CDN; 401 for private repositories without the token, 404 for unknown ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.helpers.payload_server import LoopbackServer

LFS_THRESHOLD = 1024  # files larger than this are served as LFS objects


class Repo:
    def __init__(self, root: Path, *, private: bool = False) -> None:
        self.root, self.private = root, private
        self.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        digest = hashlib.sha1("".join(self.files).encode())
        for name in self.files:
            digest.update(str((root / name).stat().st_size).encode())
        self.commit = digest.hexdigest()
        self._meta: dict[str, dict] = {}

    def meta(self, name: str) -> dict:
        if name not in self._meta:
            data = (self.root / name).read_bytes()
            blob = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
            entry: dict = {"rfilename": name, "size": len(data), "blobId": blob}
            if len(data) > LFS_THRESHOLD:
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            self._meta[name] = entry
        return self._meta[name]


class HubServer(LoopbackServer):
    def __init__(self, repos: dict[str, Repo], token: str = "hf_secret", static: Path | None = None) -> None:
        self.repos, self.token, self.static = repos, token, static
        self.requests: list[tuple[str, str]] = []
        self.bytes_served = 0
        self.rate: float | None = None  # bytes per second per connection, to make downloads slow enough to kill
        self._count = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:  # noqa: N802
                hub.handle(self, head=True)

            def do_GET(self) -> None:  # noqa: N802
                hub.handle(self, head=False)

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    def handle(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        url = urlsplit(h.path)
        path = unquote(url.path)
        self.requests.append((h.command, path))
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
            repo = self._repo(h, m.group(1))
            if repo is not None:
                blobs = "blobs=true" in url.query
                siblings = [repo.meta(n) if blobs else {"rfilename": n} for n in repo.files]
                self._json(h, 200, {"id": m.group(1), "sha": repo.commit, "siblings": siblings}, head)
        elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo = self._repo(h, m.group(1))
            if repo is None:
                return
            name = m.group(3)
            if name not in repo.files:
                self._json(h, 404, {"error": "Entry not found"}, head, {"X-Error-Code": "EntryNotFound"})
                return
            meta = repo.meta(name)
            common = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
            if "lfs" in meta:
                sha = meta["lfs"]["sha256"]
                headers = {
                    **common,
                    "Location": f"{self.url}/lfs/{m.group(1)}/{sha}",  # absolute, like the Hub's CDN links
                    "ETag": f'"{sha}"',
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(meta["size"]),
                    "Content-Length": "0",
                }
                self._reply(h, 302, headers, b"", head)
            else:
                self._file(h, repo.root / name, {**common, "ETag": f'"{meta["blobId"]}"'}, head)
        elif m := re.fullmatch(r"/lfs/([^/]+/[^/]+)/([0-9a-f]{64})", path):
            repo = self.repos.get(m.group(1))
            match = [n for n in (repo.files if repo else []) if repo.meta(n).get("lfs", {}).get("sha256") == m.group(2)]
            if not match or repo is None:
                self._json(h, 404, {"error": "not found"}, head)
            else:
                self._file(h, repo.root / match[0], {"ETag": f'"{m.group(2)}"', "Accept-Ranges": "bytes"}, head)
        elif path.startswith("/static/") and self.static is not None and (self.static / path[8:]).is_file():
            self._file(h, self.static / path[8:], {"ETag": '"static-1"', "Accept-Ranges": "bytes"}, head)
        else:
            self._json(h, 404, {"error": "not found"}, head)

    def _repo(self, h: BaseHTTPRequestHandler, repo_id: str) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._json(h, 404, {"error": "Repository not found"}, False, {"X-Error-Code": "RepoNotFound"})
            return None
        if repo.private and h.headers.get("Authorization") != f"Bearer {self.token}":
            self._json(h, 401, {"error": "Invalid credentials in Authorization header"}, False)
            return None
        return repo

    def _file(self, h: BaseHTTPRequestHandler, file: Path, headers: dict[str, str], head: bool) -> None:
        size = file.stat().st_size
        start, end, status = 0, size - 1, 200
        if m := re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", "")):
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        if head:
            return
        with open(file, "rb") as f:
            f.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = f.read(min(1 << 20, remaining))
                h.wfile.write(chunk)
                remaining -= len(chunk)
                with self._count:
                    self.bytes_served += len(chunk)
                if self.rate:
                    time.sleep(len(chunk) / self.rate)

    def _json(self, h: BaseHTTPRequestHandler, status: int, body: dict, head: bool, extra: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self._reply(
            h,
            status,
            {"Content-Type": "application/json", "Content-Length": str(len(data)), **(extra or {})},
            data,
            head,
        )

    def _reply(self, h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        if not head:
            h.wfile.write(body)
