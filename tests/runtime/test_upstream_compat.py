"""Upstream aibrix 0.8.0's interfaces, used the way its users write them, against ours: each works with upstream's
meaning, or is refused or reported in one clear line (docs/migrating.md has the table)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.artifacts import ADAPTER, tree
from tests.helpers.procs import run_downloader

# --- downloader -----------------------------------------------------------------------------------------------------


def test_upstreams_download_model_import_arguments_and_return_value(hub, tmp_path: Path) -> None:
    from aibrix.downloader import download_model

    path = download_model("org/sql-lora", str(tmp_path), None, {"hf_endpoint": hub.url}, False)
    assert path == tmp_path / "org" / "sql-lora"  # upstream's <local_dir>/<org>/<name>
    assert tree(path) == ADAPTER
    named = download_model("hf://org/sql-lora", str(tmp_path), "team/lora", {"hf_endpoint": hub.url})
    assert named == tmp_path / "team" / "lora" and tree(named) == ADAPTER


def test_download_extra_config_on_the_command_line_and_its_secret_stays_out_of_output(hub, tmp_path: Path) -> None:
    extra = {"hf_endpoint": hub.url, "hf_token": "hf_secret", "max_io_queue": 100}
    result = run_downloader(
        ["--model-uri", "org/private-lora", "--local-dir", str(tmp_path), "--download-extra-config", json.dumps(extra)],
        {},
    )
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "org" / "private-lora") == ADAPTER
    assert "DOWNLOADER_S3_MAX_IO_QUEUE is ignored" in result.stderr  # accepted, and said not to apply
    assert "hf_secret" not in result.stdout + result.stderr
    unknown = run_downloader(
        [
            "--model-uri",
            "org/sql-lora",
            "--local-dir",
            str(tmp_path),
            "--download-extra-config",
            '{"hf_endpiont": "x"}',
        ],
        {},
    )
    assert unknown.returncode == 1 and "unknown download_extra_config keys ['hf_endpiont']" in unknown.stderr


def test_upstreams_environment_variables_are_honoured_or_reported(hub, tmp_path: Path) -> None:
    env = {"DOWNLOADER_HF_ENDPOINT": hub.url, "DOWNLOADER_LOCAL_DIR": str(tmp_path)}  # the prefixed spelling
    first = run_downloader(["--model-uri", "org/sql-lora", "--json"], env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["downloaded_files"] == len(ADAPTER)
    again = run_downloader(["--model-uri", "org/sql-lora", "--json"], env)
    assert json.loads(again.stdout)["skipped_files"] == len(ADAPTER)
    for forced in (
        {"DOWNLOADER_FORCE_DOWNLOAD": "1"},
        {"DOWNLOADER_CHECK_FILE_EXIST": "0"},
        {"DOWNLOADER_EXTRA_CONFIG": '{"force_download": true}'},
    ):
        result = run_downloader(["--model-uri", "org/sql-lora", "--json"], {**env, **forced})
        assert json.loads(result.stdout)["downloaded_files"] == len(ADAPTER), forced
    noted = run_downloader(
        ["--model-uri", "org/sql-lora", "--json"],
        {**env, "DOWNLOADER_S3_IO_CHUNKSIZE": "1", "TOS_ENABLE_CRC": "1", "DOWNLOADER_TOS_VERSION": "v1"},
    )
    assert [line.split(" is ignored")[0] for line in noted.stderr.splitlines()] == [
        "aibrix_download: DOWNLOADER_S3_IO_CHUNKSIZE",
        "aibrix_download: TOS_ENABLE_CRC",
        "aibrix_download: DOWNLOADER_TOS_VERSION=v1",
    ]
    quiet = run_downloader(
        ["--model-uri", "org/sql-lora", "--json"], {**env, "TOS_ENABLE_CRC": "1", "LOG_LEVEL": "ERROR"}
    )
    assert quiet.stderr == ""


def test_a_bare_bucket_is_refused_as_upstream_does(tmp_path: Path) -> None:
    result = run_downloader(["--model-uri", "s3://bucket", "--local-dir", str(tmp_path)], {})
    assert result.returncode == 1
    assert "names a bucket, not a model: give s3://bucket/<prefix>/" in result.stderr


def test_a_tree_upstream_finished_is_recognised_not_fetched_again(hub, tmp_path: Path) -> None:
    """Upstream (huggingface_hub underneath) leaves <model>/.cache/huggingface/download/<file>.metadata."""
    from aibrix.downloader.api import fetch_model
    from aibrix.storage.uri import open_source

    model = tmp_path / "org" / "sql-lora"
    for remote in open_source("org/sql-lora", {"HF_ENDPOINT": hub.url}).list_files():
        (model / remote.path).parent.mkdir(parents=True, exist_ok=True)
        (model / remote.path).write_bytes(ADAPTER[remote.path])
        meta = model / ".cache" / "huggingface" / "download" / f"{remote.path}.metadata"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(f"0123abcd\n{remote.version}\n1730000000.0\n")  # commit, etag, timestamp
    served = hub.bytes_served
    result = fetch_model("org/sql-lora", tmp_path, env={"HF_ENDPOINT": hub.url})
    assert (result.downloaded_files, result.skipped_files) == (0, len(ADAPTER))
    assert hub.bytes_served == served


# --- runtime --------------------------------------------------------------------------------------------------------


def test_model_download_route_takes_upstreams_body_and_list_takes_a_json_body(procs, hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url, env={"DOWNLOADER_LOCAL_DIR": str(models)})
    body = {"model_uri": "org/private-lora", "download_extra_config": {"hf_endpoint": hub.url, "hf_token": "hf_secret"}}
    assert httpx.post(runtime.url + "/v1/model/download", json=body, timeout=10).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = httpx.request("GET", runtime.url + "/v1/model/list", json={"local_dir": str(models)}, timeout=10)
        entry = listing.json()["data"][0]
        if entry["model_status"] != "downloading":
            break
        time.sleep(0.05)
    assert (entry["model_name"], entry["model_status"]) == ("org/private-lora", "downloaded"), entry
    assert "hf_secret" not in listing.text
    for bad, fragment in (
        ({"model_uri": "s3://"}, "has no bucket"),
        ({"model_uri": "s3://b"}, "names a bucket"),
        ({"model_uri": "org/x", "download_extra_config": {"akk": "1"}}, "unknown"),
    ):
        response = httpx.post(runtime.url + "/v1/model/download", json=bad, timeout=10)
        assert response.status_code == 400 and fragment in response.json()["error"]["message"], response.text


def test_hf_scheme_works_wherever_a_uri_is_accepted(procs, hub, tmp_path: Path) -> None:
    from aibrix.controller.loader import engine_path
    from aibrix.controller.spec import parse_spec

    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url, env={"HF_ENDPOINT": hub.url, "AIBRIX_ADAPTER_DIR": str(tmp_path)})
    body = {"lora_name": "sql_lora", "artifact_url": "hf://org/sql-lora"}
    assert httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=60).status_code == 200
    assert tree(tmp_path / "sql_lora") == ADAPTER
    assert engine_path("hf://org/sql-lora") == "org/sql-lora"
    adapter = {
        "metadata": {"name": "a", "namespace": "n"},
        "spec": {"podSelector": {"matchLabels": {"a": "b"}}, "artifactURL": "hf://org/sql-lora"},
    }
    assert parse_spec(adapter).artifact_url == "hf://org/sql-lora"


@pytest.mark.parametrize(
    "given, expected",
    [("tos-cn-beijing.volces.com", "https://tos-s3-cn-beijing.volces.com"),
     ("https://tos-ap-southeast-1.ivolces.com", "https://tos-s3-ap-southeast-1.ivolces.com"),
     ("https://tos-s3-cn-shanghai.volces.com", "https://tos-s3-cn-shanghai.volces.com"),
     ("http://127.0.0.1:7480", "http://127.0.0.1:7480")],
)  # fmt: skip
def test_tos_endpoints_as_upstream_users_give_them_reach_the_s3_api(given: str, expected: str) -> None:
    from aibrix.storage.uri import tos_s3_endpoint

    assert tos_s3_endpoint(given) == expected


# --- http(s) artifacts with headers, and archives -------------------------------------------------------------------


def archive(kind: str, members: dict[str, bytes], link: str | None = None) -> bytes:
    """A .tar.gz or .zip of ``members`` (plus a symlink named ``link`` when given)."""
    import io
    import tarfile
    import zipfile

    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as zipped:
            for name, data in members.items():
                zipped.writestr(name, data)
        return buffer.getvalue()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return buffer.getvalue()


class KeyedFiles:
    """Serves fixed files only to requests carrying ``X-Api-Key: <key>``."""

    def __init__(self, files: dict[str, bytes], key: str) -> None:
        from http.server import BaseHTTPRequestHandler

        from tests.helpers.payload_server import LoopbackServer

        self.seen: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.seen.append(self.headers.get("X-Api-Key"))
                body = files.get(self.path) if self.headers.get("X-Api-Key") == key else None
                self.send_response(200 if body is not None else 403)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if self.command == "GET" and body:
                    self.wfile.write(body)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.loopback = LoopbackServer()
        self.loopback.serve(Handler)
        self.url = self.loopback.url

    def __enter__(self) -> KeyedFiles:
        self.loopback.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loopback.__exit__(*exc)


def test_http_artifacts_take_secret_headers_and_archives_are_unpacked(procs, tmp_path: Path) -> None:
    files = {"/lora.tar.gz": archive("tar", ADAPTER), "/lora.zip": archive("zip", ADAPTER)}
    sim = procs.sim("vllm")
    runtime = procs.runtime("vllm", sim.url, env={"AIBRIX_ADAPTER_DIR": str(tmp_path)})
    headers = json.dumps({"X-Api-Key": "k-123"})
    with KeyedFiles(files, "k-123") as server:
        keyed = {"http_headers": headers}
        loads = [
            {"lora_name": "tgz", "artifact_url": f"{server.url}/lora.tar.gz", "credentials": keyed},
            {"lora_name": "zip", "artifact_url": f"{server.url}/lora.zip", "additional_config": keyed},
        ]
        for body in loads:
            response = httpx.post(runtime.url + "/v1/lora_adapter/load", json=body, timeout=60)
            assert response.status_code == 200, response.text
            assert tree(tmp_path / body["lora_name"]) == ADAPTER  # unpacked; the archive itself is gone
        bare = {"lora_name": "nokey", "artifact_url": f"{server.url}/lora.zip"}
        refused = httpx.post(runtime.url + "/v1/lora_adapter/load", json=bare, timeout=60)
    assert refused.status_code == 403 and not (tmp_path / "nokey").exists()
    assert "k-123" not in httpx.get(runtime.url + "/v1/lora_adapter", timeout=10).text + runtime.output(limit=100_000)


@pytest.mark.parametrize(
    "kind, members, link, complaint",
    [("tar", {"../evil": b"x"}, None, "would leave the adapter folder"),
     ("tar", {"/etc/cron.d/x": b"x"}, None, "would leave the adapter folder"),
     ("tar", {"ok": b"x"}, "sneaky", "is a link or a special file"),
     ("zip", {"../../evil": b"x"}, None, "would leave the adapter folder"),
     ("tar", {"big": b"\0" * 5000}, None, "over the limit of 4096")],
)  # fmt: skip
def test_hostile_archives_are_refused_before_anything_is_written(
    kind, members, link, complaint, tmp_path: Path
) -> None:
    from aibrix.downloader.archives import unpack
    from aibrix.errors import AibrixError

    dest = tmp_path / "adapter"
    dest.mkdir()
    packed = dest / ("a.zip" if kind == "zip" else "a.tar.gz")
    packed.write_bytes(archive(kind, members, link))
    with pytest.raises(AibrixError, match=complaint):
        unpack(packed, dest, max_bytes=4096)
    assert [p.name for p in dest.iterdir()] == [packed.name] and not (tmp_path / "evil").exists()
