"""The API client's wire: requests on the lean HTTP/1.1 client, watches on httpx, failures as httpx's errors (what
lightkube and the controller's retry loop expect)."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest

from aibrix.controller.api_client import LeanTransport

BODY = json.dumps({"kind": "ModelAdapter"}).encode()
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


class Recorder(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append(str(request.url))
        return httpx2.Response(200, content=b'{"type": "ADDED"}\n')


async def serve(answer: bytes | None) -> tuple[asyncio.Server, list[bytes]]:
    """A server that records each request (head and body) and answers ``answer``, or never (None)."""
    heard: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            sizes = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-le")]
            heard.append(head + await reader.readexactly(sizes[0] if sizes else 0))
            if answer is None:
                await asyncio.sleep(30)
            writer.write(answer or b"")
            await writer.drain()

    return await asyncio.start_server(handle, "127.0.0.1", 0), heard


def test_a_request_goes_on_the_lean_client_with_its_headers_and_body() -> None:
    async def scenario() -> tuple[list[httpx2.Response], list[bytes], Recorder]:
        server, heard = await serve(OK)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        streaming = Recorder()
        async with httpx2.AsyncClient(transport=LeanTransport(url, None, streaming, connections=2)) as http:
            path = f"{url}/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters/a/status"
            headers = {"Authorization": "Bearer t", "Content-Type": "application/merge-patch+json"}
            answers = await asyncio.gather(*(http.patch(path, json={"n": n}, headers=headers) for n in range(5)))
        server.close()
        return answers, heard, streaming

    answers, heard, streaming = asyncio.run(scenario())
    assert [a.json() for a in answers] == [{"kind": "ModelAdapter"}] * 5 and not streaming.seen
    head, _, body = heard[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "PATCH /apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters/a/status HTTP/1.1"
    assert "Authorization: Bearer t" in lines and "Content-Type: application/merge-patch+json" in lines
    assert sorted(json.loads(h.partition(b"\r\n\r\n")[2])["n"] for h in heard) == [0, 1, 2, 3, 4]


def test_a_watch_streams_on_httpx() -> None:
    async def scenario() -> tuple[Recorder, list[bytes]]:
        server, heard = await serve(OK)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        streaming = Recorder()
        async with httpx2.AsyncClient(transport=LeanTransport(url, None, streaming, connections=2)) as http:
            assert (await http.get(f"{url}/api/v1/pods", params={"watch": "true"})).status_code == 200
        server.close()
        return streaming, heard

    streaming, heard = asyncio.run(scenario())
    assert [s.split("/", 3)[3] for s in streaming.seen] == ["api/v1/pods?watch=true"] and not heard


def test_failures_are_httpx_errors_lightkube_knows() -> None:
    async def silent() -> None:
        server, _ = await serve(None)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with httpx2.AsyncClient(transport=LeanTransport(url, None, Recorder(), 1), timeout=0.3) as http:
                await http.get(f"{url}/api/v1/pods")
        finally:
            server.close()

    async def refused() -> None:
        async with httpx2.AsyncClient(transport=LeanTransport("http://127.0.0.1:1", None, Recorder(), 1)) as http:
            await http.get("http://127.0.0.1:1/api/v1/pods")

    with pytest.raises(httpx2.ReadTimeout):
        asyncio.run(silent())
    with pytest.raises(httpx2.NetworkError, match="unreachable"):
        asyncio.run(refused())
