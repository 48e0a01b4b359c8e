"""The engine client against real servers: keep-alive, chunked and HTTP/1.0 replies, stale connections, deadlines."""

from __future__ import annotations

import asyncio

import pytest

from aibrix.engines import EngineClient
from aibrix.engines.errors import EngineTimeout, EngineUnavailable
from tests.helpers.payload_server import PayloadServer
from tests.helpers.procs import free_port, start_sim


def run(coro):
    return asyncio.run(coro)


def test_keep_alive_reuses_one_connection_and_reads_chunked_bodies():
    sim = start_sim("vllm")

    async def go() -> None:
        client = EngineClient(sim.url)
        try:
            for _ in range(3):
                assert (await client.request("GET", "/health")).status_code == 200
            assert len(client._idle) == 1
            body = {"model": "base-model", "prompt": "x", "max_tokens": 3, "stream": True}
            streamed = await client.request("POST", "/v1/completions", json=body)
            assert streamed.status_code == 200
            assert streamed.text.rstrip().endswith("data: [DONE]")
            assert streamed.text.count("data: ") == 5
        finally:
            await client.aclose()

    try:
        run(go())
    finally:
        sim.stop()


def test_connection_closed_by_a_restarted_engine_is_retried_transparently():
    port = free_port()
    sim = start_sim("vllm", port=port)

    async def go() -> None:
        nonlocal sim
        client = EngineClient(sim.url)
        try:
            assert (await client.request("GET", "/v1/models")).status_code == 200
            sim.stop()
            sim = start_sim("vllm", port=port)
            response = await client.request("GET", "/v1/models")
            assert response.status_code == 200
            assert response.json()["data"][0]["id"] == "base-model"
        finally:
            await client.aclose()

    try:
        run(go())
    finally:
        sim.stop()


def test_http10_server_and_path_prefix():
    with PayloadServer({"/prefix/metrics": "m 1\n"}) as server:

        async def go() -> None:
            client = EngineClient(server.url + "/prefix/")
            try:
                for _ in range(2):
                    response = await client.request("GET", "/metrics")
                    assert (response.status_code, response.text) == (200, "m 1\n")
                assert (await client.request("GET", "/other")).status_code == 404
            finally:
                await client.aclose()

        run(go())


def test_deadline_covers_the_whole_exchange():
    with PayloadServer({"/slow": "late"}, delay=3) as server:

        async def go() -> None:
            client = EngineClient(server.url)
            with pytest.raises(EngineTimeout, match="within 0.2s"):
                await client.request("GET", "/slow", timeout=0.2)
            await client.aclose()

        run(go())


def test_refused_connection_is_engine_unavailable():
    async def go() -> None:
        client = EngineClient(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(EngineUnavailable, match="unreachable"):
            await client.request("GET", "/health")

    run(go())


@pytest.mark.parametrize("endpoint", ["localhost:8000", "ftp://x", "http://"])
def test_bad_endpoint_is_refused(endpoint):
    with pytest.raises(ValueError, match="http"):
        EngineClient(endpoint)


def test_a_post_that_may_have_reached_the_engine_is_never_sent_twice():
    """The engine carries out a POST, then its connection drops before the answer: the client reports that, and
    does not send the POST again (a second unload would answer 404 for an unload that succeeded)."""
    posts: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"POST"):
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                posts.append(await reader.readexactly(length))
                writer.close()  # carried out, then gone before answering
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def go() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = EngineClient(f"http://127.0.0.1:{port}")
        try:
            assert (await client.request("GET", "/health")).status_code == 200  # a pooled connection now
            with pytest.raises(EngineUnavailable, match="may have been carried out"):
                await client.request("POST", "/v1/unload_lora_adapter", json={"lora_name": "a"})
            assert posts == [b'{"lora_name": "a"}']
            assert (await client.request("GET", "/health")).status_code == 200  # the client still works
        finally:
            await client.aclose()
            server.close()

    run(go())


@pytest.mark.parametrize("length", [b"abc", b"-5", b"10, 12", b""])
def test_an_invalid_content_length_is_a_clear_engine_error(length: bytes):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def go() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = EngineClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        try:
            with pytest.raises(EngineUnavailable, match="invalid Content-Length"):
                await client.request("GET", "/v1/models")
        finally:
            await client.aclose()
            server.close()

    run(go())


async def _serve_once(reply: bytes | None = None, stream: tuple[bytes, bytes, int] | None = None):
    """A server that answers every request with ``reply``, or with a head and then ``count`` copies of a block."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            if reply is not None:
                writer.write(reply)
            else:
                head, block, count = stream  # type: ignore[misc]
                writer.write(head)
                for _ in range(count):
                    writer.write(block)
                    await writer.drain()
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


@pytest.mark.parametrize("key", ["k\r\nX-Injected: 1", "k\nGET /v1/unload HTTP/1.1", "k\0"])
def test_a_line_break_in_a_header_value_is_refused_before_anything_is_sent(key: str) -> None:
    from aibrix.engines.transport import InvalidHeader

    async def go() -> None:
        server, url, seen = await _serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        try:
            with pytest.raises(InvalidHeader) as raised:
                await EngineClient(url, api_key=key).request("GET", "/v1/models")
            with pytest.raises(InvalidHeader):
                await EngineClient(url).request("POST", "/v1/load", json={}, auth=f"Bearer {key}")
            assert raised.value.status == 400 and key not in raised.value.message
            assert seen == []
        finally:
            server.close()

    run(go())


@pytest.mark.parametrize(
    "head, block, count, complaint",
    [(b"HTTP/1.1 200 OK\r\n", b"X-Flood: 1\r\n", 100_000, "header is over"),
     (b"HTTP/1.1 200 OK\r\nContent-Length: 157286400\r\n\r\n", b"x" * 65536, 2400, "exceeds 1048576"),
     (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"10000\r\n" + b"x" * 65536 + b"\r\n", 2400,
      "exceeds 1048576"),
     (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"x" * 65536, 2400, "exceeds 1048576")],
)  # fmt: skip
def test_a_reply_is_bounded_as_it_arrives(head: bytes, block: bytes, count: int, complaint: str) -> None:
    """A server sending 150 MiB (or endless header lines) costs the client a bounded amount of memory."""
    import tracemalloc

    async def go() -> None:
        server, url, _ = await _serve_once(stream=(head, block, count))
        client = EngineClient(url, max_body=1 << 20)
        try:
            with pytest.raises(EngineUnavailable, match=complaint):
                await client.request("GET", "/v1/models", timeout=20)
        finally:
            await client.aclose()
            server.close()

    tracemalloc.start()
    try:
        run(go())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak >> 20} MiB held"


def test_the_controller_reads_small_answers_from_pods() -> None:
    """A pod answering /v1/models with 150 MiB is refused as it arrives, not read into the controller's memory."""
    from aibrix.controller.loader import MAX_POD_REPLY, Loader, LoadError
    from aibrix.controller.pods import Pod

    async def go() -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        server, url, _ = await _serve_once(stream=(head + b'{"data": [', b'{"id": "x"},' * 8192, 1600))
        port = int(url.rsplit(":", 1)[1])
        pod = Pod("p", "ns", "uid", {}, "127.0.0.1", 0.0, False, port, None, "vllm")
        try:
            with pytest.raises(LoadError, match=f"exceeds {MAX_POD_REPLY}"):
                await Loader(use_runtime=False).loaded(pod, None, timeout=20)
        finally:
            server.close()

    run(go())
