"""The engine client against real servers: keep-alive, chunked and HTTP/1.0 replies, stale connections, deadlines."""

from __future__ import annotations

import asyncio

import pytest

from aibrix.engines import EngineClient
from aibrix.engines.errors import EngineTimeout, EngineUnavailable
from payload_server import PayloadServer
from procs import free_port, start_sim


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
