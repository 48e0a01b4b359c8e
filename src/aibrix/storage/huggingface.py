"""HuggingFace Hub (or a mirror at HF_ENDPOINT): one revision's files, pinned to its commit.

Protocol (huggingface_hub's HfApi.model_info(files_metadata=True) and hf_hub_download):
``GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true`` gives the commit ``sha`` and each sibling's
``rfilename``, ``size``, ``blobId`` (git blob sha1) and, for LFS files, ``lfs.sha256``; files come from
``{endpoint}/{repo}/resolve/{commit}/{path}``, which may redirect LFS files to a CDN and honours Range.
"""

from __future__ import annotations

from urllib.parse import quote

from aibrix.auth import bearer
from aibrix.storage.base import BadURI, RemoteFile, allowed, redact
from aibrix.storage.fetch import request_json
from aibrix.storage.policy import DEFAULT_POLICY, OutboundPolicy

DEFAULT_ENDPOINT = "https://huggingface.co"


class HuggingFaceSource:
    def __init__(
        self,
        repo: str,
        *,
        revision: str | None,
        endpoint: str | None,
        token: str | None,
        policy: OutboundPolicy = DEFAULT_POLICY,
    ) -> None:
        parts = repo.strip("/").split("/")
        if len(parts) != 2 or not all(parts):
            raise BadURI(f"{repo!r} is not a HuggingFace repository id (expected 'organization/name')")
        self.repo = "/".join(parts)
        self.revision = revision or "main"
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.headers = {"Authorization": bearer(token)} if token else {}
        self.policy = policy

    def describe(self) -> str:
        return f"huggingface repository {self.repo}@{self.revision} at {redact(self.endpoint)}"

    def list_files(self, suffixes: tuple[str, ...] = ()) -> list[RemoteFile]:
        url = f"{self.endpoint}/api/models/{self.repo}/revision/{quote(self.revision, safe='')}?blobs=true"
        info = request_json(url, headers=self.headers, what=self.describe(), policy=self.policy)
        commit = info.get("sha") or self.revision
        files = []
        for sibling in info.get("siblings", []):
            path = sibling["rfilename"]
            if not allowed(path, suffixes):
                continue
            lfs = sibling.get("lfs") or {}
            digest = ("sha256", lfs["sha256"]) if lfs.get("sha256") else None
            if digest is None and sibling.get("blobId"):
                digest = ("git-sha1", sibling["blobId"])
            files.append(
                RemoteFile(
                    path=path,
                    size=lfs.get("size", sibling.get("size")),
                    url=f"{self.endpoint}/{self.repo}/resolve/{commit}/{quote(path)}",
                    headers=self.headers,
                    digest=digest,
                    version=digest[1] if digest else commit,
                )
            )
        return files
