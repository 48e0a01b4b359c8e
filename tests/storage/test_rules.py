"""Storage rules a user relies on: a failure keeps its meaning on the way to the API (a local disk that refuses
writes is not the source's fault), and credentials follow a redirect only to the same origin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aibrix.downloader.disk import write_at
from aibrix.storage.base import LocalWriteError, NoSpace, NotFound, StorageError, TransientError
from aibrix.storage.http import keeps_credentials


def failed_write(target: str | Path, flags: int) -> StorageError:
    """What ``write_at`` raises for a write to ``target`` opened with ``flags``."""
    fd = os.open(target, flags)
    try:
        with pytest.raises(StorageError) as caught:
            write_at(fd, b"data", 0, "weights.bin")
    finally:
        os.close(fd)
    return caught.value


def test_a_local_write_failure_is_500_with_the_reason_not_an_upstream_502(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"")
    error = failed_write(target, os.O_RDONLY)  # writes fail with EBADF, as on a disk gone read-only
    assert isinstance(error, LocalWriteError) and "cannot write the local file" in str(error)
    assert error.status == 500
    assert not error.transient  # never retried


def test_a_full_disk_while_writing_is_507(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    error = failed_write("/dev/full", os.O_WRONLY)
    assert isinstance(error, NoSpace) and "local disk is full" in str(error)
    assert error.status == 507


@pytest.mark.parametrize("exc, status", [(NotFound("x"), 404), (TransientError("x"), 502), (StorageError("x"), 502)])
def test_storage_errors_map_by_family(exc: StorageError, status: int) -> None:
    class Subclass(type(exc)):  # type: ignore[misc]
        pass

    assert exc.status == Subclass("x").status == status


@pytest.mark.parametrize(
    "url, next_url, keeps",
    [
        ("https://hub.example/a", "https://hub.example/b", True),
        ("https://hub.example/a", "https://HUB.example:443/b", True),
        ("http://hub.example/a", "https://hub.example/b", True),  # an upgrade on the same host
        ("https://hub.example/a", "http://hub.example/b", False),  # a downgrade: the token would travel in clear
        ("https://hub.example/a", "https://hub.example:8443/b", False),
        ("https://hub.example/a", "https://cdn.example/b", False),
    ],
)
def test_credentials_follow_a_redirect_only_to_the_same_origin(url: str, next_url: str, keeps: bool) -> None:
    assert keeps_credentials(url, next_url) is keeps


def test_the_downloader_never_hands_the_token_to_another_origin(tmp_path: Path) -> None:
    from aibrix.downloader.transfer import Downloader
    from aibrix.storage.base import RemoteFile
    from tests.helpers.payload_server import PayloadServer

    with PayloadServer({"/weights.bin": b"w" * 1000}) as elsewhere:
        with PayloadServer({}, redirects={"/weights.bin": f"{elsewhere.url}/weights.bin"}) as origin:
            remote = RemoteFile("weights.bin", 1000, f"{origin.url}/weights.bin", {"Authorization": "Bearer hf_x"})
            Downloader(threads=1).download([remote], tmp_path)
    assert (tmp_path / "weights.bin").read_bytes() == b"w" * 1000
    assert origin.authorizations == ["Bearer hf_x"]
    assert elsewhere.authorizations == [None]


class BusyAtThatInstant:
    """A lock that another worker holds whenever someone only tries it (non-blocking), and that a blocking
    acquire gets: the moment at which the checksum check used to give up and call a good file corrupt."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True) -> bool:
        return self._lock.acquire() if blocking else False

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_worker_hashing_at_the_same_instant_never_makes_a_good_file_corrupt(tmp_path: Path) -> None:
    import hashlib

    from aibrix.downloader.job import FileJob
    from aibrix.storage.base import RemoteFile

    data = os.urandom(3 << 20)
    digest = ("sha256", hashlib.sha256(data).hexdigest())
    remote = RemoteFile("w.bin", len(data), "http://127.0.0.1:9/w.bin", digest=digest, version="v1")
    job = FileJob(remote, tmp_path / "w.bin", tmp_path, 1 << 20, durable=False)
    parts = job.plan()
    job.ensure_open()
    for part in parts:
        os.pwrite(job.fd, data[part.start : part.end + 1], part.start)
    job._hash_lock = BusyAtThatInstant()  # type: ignore[assignment]
    for part in parts:
        job.finish_part(part.index)  # each finishing worker finds the hash busy and leaves it to the others
    try:
        assert job.digest_matches()
    finally:
        job.close()


@pytest.mark.parametrize(
    "uri, given, kept, anonymous",
    [("s3://b/k/", {}, {"AWS_ACCESS_KEY_ID": "held", "AWS_ENDPOINT_URL": "http://ceph:80"}, False),
     ("s3://b/k/", {"AWS_ENDPOINT_URL": "http://ceph:80"}, {"AWS_ACCESS_KEY_ID": "held"}, False),
     ("s3://b/k/", {"AWS_ENDPOINT_URL": "http://other"}, {"AWS_ACCESS_KEY_ID": None}, True),
     ("s3://b/k/", {"AWS_ACCESS_KEY_ID": "theirs", "AWS_SECRET_ACCESS_KEY": "s"},
      {"AWS_ACCESS_KEY_ID": "theirs", "AWS_SESSION_TOKEN": None}, False),
     ("tos://b/k/", {"TOS_REGION": "evil.example#"}, {"TOS_ACCESS_KEY": None}, True),
     ("tos://b/k/", {"TOS_REGION": "cn-beijing"}, {"TOS_ACCESS_KEY": "held-tos"}, False),
     ("hf://o/m", {"HF_ENDPOINT": "http://mirror"}, {"HF_TOKEN": None}, True),
     ("o/m", {"HF_REVISION": "v2"}, {"HF_TOKEN": "held-hf"}, False),
     ("https://x/a.bin", {}, {"AIBRIX_HTTP_HEADERS": None}, True),
     ("gs://b/k/", {"GCP_SERVICE_ACCOUNT_JSON": "{}"}, {"GOOGLE_APPLICATION_CREDENTIALS": None}, False)],
)  # fmt: skip
def test_held_credentials_stay_with_the_endpoint_they_were_configured_for(
    uri: str, given: dict[str, str], kept: dict[str, str | None], anonymous: bool
) -> None:
    from aibrix.storage.credentials import ANONYMOUS, confine

    held = {
        "AWS_ACCESS_KEY_ID": "held",
        "AWS_SECRET_ACCESS_KEY": "held-secret",
        "AWS_SESSION_TOKEN": "held-tok",
        "AWS_ENDPOINT_URL": "http://ceph:80",
        "TOS_ACCESS_KEY": "held-tos",
        "TOS_SECRET_KEY": "held-tos-secret",
        "HF_TOKEN": "held-hf",
        "AIBRIX_HTTP_HEADERS": "{}",
        "GOOGLE_APPLICATION_CREDENTIALS": "/held.json",
    }
    env = confine(held, given, uri)
    assert {name: env.get(name) for name in kept} == kept
    assert (env.get(ANONYMOUS) == "1") is anonymous
