"""One outbound policy and one retry policy for every fetch: the address checked is the address dialled (no DNS
rebinding window), endpoints named in credentials are judged before an SDK dials them, credentials that expire
mid-download are renewed once, and retries are bounded by attempts, a budget, a deadline and the server's wishes.

No test here can reach another machine: sockets are replaced by ones that record every address dialled and refuse
any that is not loopback, so a guard that regressed is seen, not obeyed."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from aibrix.downloader.api import fetch_model
from aibrix.downloader.transfer import Downloader
from aibrix.storage.base import AccessDenied, RemoteFile, StorageError, TransientError, renewable
from aibrix.storage.http import transport_error
from aibrix.storage.policy import OutboundPolicy
from aibrix.storage.retry import RetryPolicy
from tests.helpers.artifacts import QUICK
from tests.helpers.payload_server import LoopbackServer


class Dialled(list):
    """Every address a socket connected to, while installed."""


@pytest.fixture
def dialled(monkeypatch: pytest.MonkeyPatch) -> Dialled:
    """Sockets that record the addresses they dial and refuse all but loopback (ENETUNREACH)."""
    record = Dialled()
    real = socket.socket

    class Recording(real):  # type: ignore[misc,valid-type]
        def connect(self, address):  # type: ignore[no-untyped-def]
            record.append(address[0])
            if address[0] not in ("127.0.0.1", "::1"):
                raise OSError(101, "Network is unreachable (test sockets dial loopback only)")
            return super().connect(address)

    monkeypatch.setattr(socket, "socket", Recording)
    return record


def resolver(monkeypatch: pytest.MonkeyPatch, host: str, answers: Callable[[int], str]) -> list[int]:
    """``host`` resolves to ``answers(n)`` on its n-th look-up (from 1); returns the list of look-ups made."""
    real, calls = socket.getaddrinfo, []

    def getaddrinfo(name, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name != host:
            return real(name, port, *args, **kwargs)
        calls.append(len(calls) + 1)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers(len(calls)), port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


class Scripted(LoopbackServer):
    """Answers each GET/HEAD with ``script(n, handler)`` (n counts requests from 1), which writes the response."""

    def __init__(self, script: Callable[[int, BaseHTTPRequestHandler], None], body: bytes = b"") -> None:
        self.body, self.requests, self.connections = body, 0, 0
        self.seen: list[str] = []  # each request's method and range, for a failing assertion to show
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802
                server.requests += 1
                server.seen.append(f"{self.command} {self.headers.get('Range', '')} on connection {server.connections}")
                script(server.requests, self)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    def send_range(self, handler: BaseHTTPRequestHandler, trickle: float = 0.0) -> None:
        """200 with the whole body, or 206 with the asked range; ``trickle`` seconds between 1 KiB pieces."""
        start, end = 0, len(self.body) - 1
        asked = handler.headers.get("Range")
        if asked:
            first, _, last = asked.removeprefix("bytes=").partition("-")
            start, end = int(first), int(last) if last else len(self.body) - 1
        handler.send_response(206 if asked else 200)
        handler.send_header("Content-Length", str(end - start + 1))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if handler.command == "HEAD":
            return
        chunk = self.body[start : end + 1]
        step = 1024 if trickle else len(chunk)
        for offset in range(0, len(chunk), step):
            handler.wfile.write(chunk[offset : offset + step])
            time.sleep(trickle)

    @staticmethod
    def refuse(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": "0", **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()


def remote(server: Scripted, **kwargs: object) -> RemoteFile:
    return RemoteFile("w.bin", len(server.body), f"{server.url}/w.bin", version="v1", **kwargs)  # type: ignore[arg-type]


# --- the outbound policy ---------------------------------------------------------------------------------------


def test_the_address_checked_is_the_address_dialled_so_dns_rebinding_finds_no_window(
    monkeypatch: pytest.MonkeyPatch, dialled: Dialled, tmp_path: Path
) -> None:
    body = os.urandom(4096)
    with Scripted(lambda n, h: server.send_range(h), body) as server:
        port = server.url.rsplit(":", 1)[1]
        # The first look-up of each connection is harmless, any second one names the metadata service.
        lookups = resolver(monkeypatch, "rebind.test", lambda n: "127.0.0.1" if n % 2 else "169.254.169.254")
        with pytest.raises(AccessDenied, match="link-local or cloud metadata address"):
            fetch_model(f"http://rebind.test:{port}/w.bin", tmp_path, "m", env={})
    assert "169.254.169.254" not in dialled, "a socket dialled an address the policy had refused"
    assert lookups == [1, 2], "each connection resolves its name exactly once"
    assert server.requests == 1  # the HEAD on the harmless answer; the GET's answer was refused before dialling


def test_a_name_resolved_once_is_used_for_the_whole_download(
    monkeypatch: pytest.MonkeyPatch, dialled: Dialled, tmp_path: Path
) -> None:
    body = os.urandom(3 << 20)
    with Scripted(lambda n, h: server.send_range(h), body) as server:
        port = server.url.rsplit(":", 1)[1]
        resolver(monkeypatch, "models.test", lambda n: "127.0.0.1")
        result = fetch_model(f"http://models.test:{port}/w.bin", tmp_path, "m", env={})
    assert (result.path / "w.bin").read_bytes() == body
    assert set(dialled) == {"127.0.0.1"}


def test_a_service_account_naming_a_metadata_token_endpoint_is_refused_before_any_request(dialled: Dialled) -> None:
    from aibrix.storage.gcs import GCSSource

    key = json.dumps({"type": "service_account", "token_uri": "http://169.254.169.254/computeMetadata/v1/token"})
    with pytest.raises(AccessDenied, match="metadata"):
        GCSSource("bucket", "model/", base="http://127.0.0.1:9", service_account_json=key)
    assert dialled == []


def test_an_s3_endpoint_override_is_judged_before_botocore_dials_it(dialled: Dialled) -> None:
    from aibrix.storage.uri import open_source

    env = {
        "AWS_ENDPOINT_URL": "http://[::ffff:169.254.169.254]:80",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
    }
    with pytest.raises(AccessDenied, match="metadata"):
        open_source("s3://bucket/model/", env)
    tos = {"TOS_ENDPOINT": "100.100.100.200", "TOS_ACCESS_KEY": "a", "TOS_SECRET_KEY": "b"}
    with pytest.raises(AccessDenied, match="metadata"):
        open_source("tos://bucket/model/", tos)
    assert dialled == []


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "/etc/passwd", "./weights", "~/model"])
def test_a_policy_without_local_files_refuses_every_form_of_local_path(uri: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="local paths and file:// URIs are not accepted"):
        fetch_model(uri, tmp_path, "m", env={}, policy=OutboundPolicy(allow_local_files=False))


def test_a_redirect_to_a_local_file_is_refused(dialled: Dialled, tmp_path: Path) -> None:
    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        Scripted.refuse(handler, 302, {"Location": "file:///etc/passwd"})

    with Scripted(script) as server:
        with pytest.raises(StorageError, match="refusing a redirect to a file URL"):
            fetch_model(f"{server.url}/w.bin", tmp_path, "m", env={})


def test_the_size_cap_is_checked_before_the_first_byte(tmp_path: Path) -> None:
    with Scripted(lambda n, h: server.send_range(h), os.urandom(2000)) as server:
        with pytest.raises(StorageError, match="over the limit of 1000"):
            fetch_model(f"{server.url}/w.bin", tmp_path, "m", env={}, policy=OutboundPolicy(max_bytes=1000))
        assert server.requests == 1  # the HEAD only


# --- credentials that expire mid-download ----------------------------------------------------------------------


class RotatingToken:
    """A token service: each token is good for ``uses`` requests, then the server says 403 until a new one."""

    def __init__(self, uses: int) -> None:
        self.uses, self.generation, self.used, self.issued = uses, 0, 0, 0

    def issue(self) -> str:
        self.generation += 1
        self.used, self.issued = 0, self.issued + 1
        return f"Bearer tok-{self.generation}"

    def accepts(self, header: str | None) -> bool:
        if header != f"Bearer tok-{self.generation}" or self.used >= self.uses:
            return False
        self.used += 1
        return True


def test_credentials_that_expire_mid_download_are_renewed_and_the_download_finishes(tmp_path: Path) -> None:
    tokens, lock = RotatingToken(uses=2), threading.Lock()
    body = os.urandom(40 << 20)  # five parts of 8 MiB

    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        with lock:
            good = tokens.accepts(handler.headers.get("Authorization"))
        server.send_range(handler) if good else Scripted.refuse(handler, 403)

    with Scripted(script, body) as server:
        first = remote(server, headers={"Authorization": tokens.issue()})
        renewed = renewable(
            first, lambda stale: RemoteFile(**{**stale.__dict__, "headers": {"Authorization": tokens.issue()}})
        )
        Downloader(threads=2, part_size=8 << 20, retries=QUICK).download([renewed], tmp_path)
    assert (tmp_path / "w.bin").read_bytes() == body
    assert tokens.issued >= 3  # five parts, two per token


def test_an_access_denial_without_a_way_to_renew_fails_at_once(tmp_path: Path) -> None:
    with Scripted(lambda n, h: Scripted.refuse(h, 403), b"x" * 100) as server:
        with pytest.raises(AccessDenied):
            Downloader(threads=1, retries=QUICK).download([remote(server)], tmp_path)
        assert server.requests == 1


def test_renewed_credentials_that_are_refused_too_end_the_download(tmp_path: Path) -> None:
    renewals = []
    with Scripted(lambda n, h: Scripted.refuse(h, 403), b"x" * 100) as server:
        renewed = renewable(remote(server), lambda stale: renewals.append(1) or stale)
        with pytest.raises(AccessDenied):
            Downloader(threads=1, retries=QUICK).download([renewed], tmp_path)
        assert (server.requests, len(renewals)) == (2, 1)


# --- one retry policy ----------------------------------------------------------------------------------------------


def test_a_certificate_that_does_not_verify_is_not_retried(tmp_path: Path) -> None:
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with Scripted(lambda n, h: server.send_range(h), b"x" * 100) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
        url = "https" + server.url.removeprefix("http") + "/w.bin"
        started = time.monotonic()
        with pytest.raises(StorageError, match="TLS certificate verification failed") as caught:
            fetch_model(url, tmp_path / "out", "m", env={})
        assert not caught.value.transient
        assert time.monotonic() - started < 2
    assert not transport_error(ssl.SSLCertVerificationError(1, "self-signed"), "x").transient


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        if n == 1:
            return Scripted.refuse(handler, 503, {"Retry-After": "1"})
        server.send_range(handler)

    with Scripted(script, b"y" * 100) as server:
        started = time.monotonic()
        Downloader(threads=1, retries=QUICK).download([remote(server)], tmp_path)
        assert time.monotonic() - started >= 0.95  # the backoff alone would have waited 10 ms
        assert server.requests == 2, server.seen


def test_a_hung_server_gets_the_policys_attempts_and_no_more(tmp_path: Path) -> None:
    release = threading.Event()
    with Scripted(lambda n, h: release.wait(5), b"z" * 100) as server:
        try:
            with pytest.raises(TransientError, match="timed out"):
                Downloader(threads=1, timeout=0.3, retries=QUICK).download([remote(server)], tmp_path)
            assert server.requests == QUICK.attempts  # no inner retry multiplying the outer ones
        finally:
            release.set()


def test_one_budget_bounds_the_retries_of_a_whole_download(tmp_path: Path) -> None:
    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        Scripted.refuse(handler, 503) if n % 2 else server.send_range(handler)  # every other request fails

    with Scripted(script, os.urandom(40 << 20)) as server:
        downloader = Downloader(threads=1, part_size=8 << 20, retries=QUICK, retry_budget=4)
        with pytest.raises(TransientError, match="used all 4 of its retries"):
            downloader.download([remote(server)], tmp_path)
        assert server.requests == 9  # four parts fetched after a failure each; the fifth failure finds no retry left


def test_a_part_trickling_past_its_deadline_is_given_up(tmp_path: Path) -> None:
    with Scripted(lambda n, h: server.send_range(h, trickle=0.05), b"t" * (200 << 10)) as server:
        slow = Downloader(threads=1, retries=RetryPolicy(attempts=2, base=0.01, deadline=0.5), min_rate=1 << 30)
        started = time.monotonic()
        with pytest.raises(StorageError, match="still not fetched at its deadline"):
            slow.download([remote(server)], tmp_path)
        assert time.monotonic() - started < 3


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield


def test_the_runtime_model_download_refuses_local_paths_and_caps_the_size(procs, tmp_path: Path) -> None:
    """POST /v1/model/download serves remote callers: no reading the pod's own disk, no unbounded download."""
    import httpx

    sim = procs.sim("vllm")
    env = {"DOWNLOADER_LOCAL_DIR": str(tmp_path / "models"), "AIBRIX_MAX_MODEL_BYTES": "1000"}
    runtime = procs.runtime("vllm", sim.url, env=env)
    for uri in ("file:///etc/passwd", "/etc", "./models"):
        response = httpx.post(runtime.url + "/v1/model/download", json={"model_uri": uri, "model_name": "m"})
        assert response.status_code == 400, response.text
        assert "local paths and file:// URIs are not accepted" in response.json()["error"]["message"]
    with Scripted(lambda n, h: server.send_range(h), os.urandom(2000)) as server:
        body = {"model_uri": f"{server.url}/w.bin", "model_name": "big"}
        assert httpx.post(runtime.url + "/v1/model/download", json=body).status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            entry = httpx.get(runtime.url + "/v1/model/list").json()["data"][0]
            if entry["model_status"] != "downloading":
                break
            time.sleep(0.05)
    assert entry["model_status"] == "failed" and "over the limit of 1000" in entry["reason"], entry
    assert not (tmp_path / "models" / "big" / "w.bin").exists()


def test_a_refused_or_failed_answer_is_never_echoed(tmp_path: Path) -> None:
    """A fetch the policy lets through but the server refuses must not become a way to read that server."""
    from aibrix.storage.fetch import request, request_json

    secret = b"internal-secret-4f1c"

    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        if handler.path.startswith("/garbage"):  # not HTTP at all: http.client would quote the line it read
            handler.wfile.write(secret + b" 200 OK\r\n\r\n")
            handler.close_connection = True
            return
        status = {"denied": 403, "broken": 500, "teapot": 418}.get(handler.path.split("/")[1], 200)
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(secret)))
        handler.end_headers()
        handler.wfile.write(secret)

    with Scripted(script) as server:
        errors = []
        for path in ("/denied", "/broken", "/teapot", "/garbage"):
            with pytest.raises(StorageError) as raised:
                request(server.url + path, retries=QUICK)
            errors.append(raised.value.message)
            with pytest.raises(StorageError) as raised:
                fetch_model(server.url + path + "/w.bin", tmp_path, "m", env={}, threads=1)
            errors.append(raised.value.message)
        with pytest.raises(StorageError) as raised:
            request_json(server.url + "/ok")
        errors.append(raised.value.message)
    assert all(secret.decode() not in error for error in errors), errors
    assert any("HTTP 418" in error for error in errors)


def test_user_info_in_hf_endpoint_never_reaches_an_error(tmp_path: Path) -> None:
    from aibrix.storage.huggingface import HuggingFaceSource

    endpoint = "http://mirror-user:mirror-pass@127.0.0.1:9"
    assert "mirror-pass" not in HuggingFaceSource("org/m", revision=None, endpoint=endpoint, token=None).describe()
    with pytest.raises(StorageError) as raised:
        fetch_model("hf://org/m", tmp_path, env={"HF_ENDPOINT": endpoint}, threads=1)
    assert "mirror-pass" not in raised.value.message and "127.0.0.1:9" in raised.value.message


@pytest.mark.parametrize("where", ["header", "listing"])
def test_a_metadata_answer_trickling_past_its_deadline_is_given_up(where: str) -> None:
    """One byte every 50 ms never trips a socket timeout; the request's deadline still ends it."""
    from aibrix.storage.fetch import request

    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\nX-Padding: " + b"p" * 200 + b"\r\n\r\n"
        slow, fast = (head, b"") if where == "header" else (b"{" * 2000, head)
        handler.wfile.write(fast)
        for byte in slow:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.05)

    with Scripted(script) as server:
        started = time.monotonic()
        with pytest.raises(StorageError, match="still not fetched at its deadline"):
            request(server.url + "/list", retries=RetryPolicy(attempts=2, base=0.01, deadline=1.0))
        assert time.monotonic() - started < 2.5


def test_a_small_answer_is_read_no_further_than_the_caller_asks() -> None:
    """The controller reads an adapter_config.json from a Hub with a 1 MiB bound: a server sending more (whatever
    its listing said) is cut off at the bound, not read to the 64 MiB a listing page may take."""
    from aibrix.storage.fetch import AnswerTooLarge, request

    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(4096))
        handler.end_headers()
        handler.wfile.write(b"x" * 4096)

    with Scripted(script) as server:
        assert request(server.url + "/config", max_body=4097)[2] == b"x" * 4096
        with pytest.raises(AnswerTooLarge, match="4096 bytes or more"):
            request(server.url + "/config", max_body=4096, retries=RetryPolicy(attempts=1))


def test_the_size_cap_holds_for_files_whose_size_is_not_declared(tmp_path: Path) -> None:
    """No Content-Length on the HEAD, a body read to its end: the cap is held as the bytes arrive."""

    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command == "GET":
            with contextlib.suppress(OSError):
                for _ in range(64):
                    handler.wfile.write(b"z" * (1 << 20))
        handler.close_connection = True

    with Scripted(script) as server:
        with pytest.raises(StorageError, match="passed the limit of 1048576"):
            fetch_model(f"{server.url}/w.bin", tmp_path, "m", env={}, policy=OutboundPolicy(max_bytes=1 << 20))
    written = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert written < 6 << 20, written


def test_a_declared_size_alone_claims_no_disk(tmp_path: Path) -> None:
    """A server declaring 8 GiB and then failing leaves no 8 GiB of allocated blocks behind."""

    def script(n: int, handler: BaseHTTPRequestHandler) -> None:
        if handler.command == "HEAD":
            handler.send_response(200)
            handler.send_header("Content-Length", str(8 << 30))
            handler.send_header("Accept-Ranges", "bytes")
            handler.end_headers()
        else:
            Scripted.refuse(handler, 403)

    with Scripted(script) as server:
        with pytest.raises(AccessDenied):
            fetch_model(f"{server.url}/w.bin", tmp_path, "m", env={}, threads=1)
    allocated = sum(p.stat().st_blocks * 512 for p in tmp_path.rglob("*") if p.is_file())
    assert allocated < 1 << 20, allocated


def test_a_callers_thread_count_is_bounded(tmp_path: Path) -> None:
    from aibrix.downloader.api import MAX_THREADS

    with pytest.raises(StorageError, match=f"at most {MAX_THREADS}"):
        fetch_model("http://127.0.0.1:9/w.bin", tmp_path, env={"DOWNLOADER_NUM_THREADS": "100000"})


@pytest.fixture(scope="module")
def service_account_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    key = tmp_path_factory.mktemp("sa") / "key.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
        check=True,
        capture_output=True,
    )
    return key.read_text()


class TokenAndBucket(LoopbackServer):
    """A token endpoint (POST /token, answering as ``token_answer`` says) and a GCS listing (GET), recording both."""

    def __init__(self, token_answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.posts: list[bytes] = []
        self.listing_auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                server.posts.append(self.rfile.read(int(self.headers["Content-Length"])))
                token_answer(self)

            def do_GET(self) -> None:  # noqa: N802
                server.listing_auth.append(self.headers.get("Authorization"))
                body = b'{"items": [{"name": "model/w.bin", "size": "1", "generation": "1"}]}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)


def _answer(status: int, body: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def _gcs(server: TokenAndBucket, key: str):  # type: ignore[no-untyped-def]
    from aibrix.storage.gcs import GCSSource

    info = {
        "type": "service_account",
        "client_email": "sa@p.iam.gserviceaccount.com",
        "private_key": key,
        "token_uri": f"{server.url}/token",
    }
    return GCSSource("bucket", "model/", base=server.url, service_account_json=json.dumps(info))


def test_a_service_account_token_is_fetched_through_the_policy_checked_transport(
    service_account_key: str, dialled: Dialled
) -> None:
    with TokenAndBucket(_answer(200, b'{"access_token": "ya29.tok", "expires_in": 3600}')) as server:
        assert [f.path for f in _gcs(server, service_account_key).list_files()] == ["w.bin"]
    assert server.listing_auth == ["Bearer ya29.tok"]
    assert b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in server.posts[0]
    assert set(dialled) == {"127.0.0.1"}  # every connection went through the policy's connect


@pytest.mark.parametrize(
    "answer, complaint",
    [(_answer(400, b'{"error": "invalid_grant", "detail": "internal-secret-77"}'), "HTTP 400"),
     (_answer(200, b"internal-secret-77 is not JSON"), "without an access token"),
     (_answer(302, b"", {"Location": "http://169.254.169.254/computeMetadata/v1/token"}), "HTTP 302")],
)  # fmt: skip
def test_a_token_endpoint_is_never_followed_elsewhere_nor_echoed(
    answer: Callable[[BaseHTTPRequestHandler], None], complaint: str, service_account_key: str, dialled: Dialled
) -> None:
    with TokenAndBucket(answer) as server:
        with pytest.raises(StorageError) as raised:
            _gcs(server, service_account_key)
    assert complaint in raised.value.message and "internal-secret-77" not in raised.value.message
    assert set(dialled) == {"127.0.0.1"} and server.listing_auth == []
