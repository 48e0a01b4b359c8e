"""The Kubernetes API client: lightkube, with its requests carried by the lean HTTP/1.1 client of
``engines/transport.py`` and its watches by httpx.

The controller's CPU goes to talking to the API server: placing 1000 adapters took about 13,500 requests (status
writes, Events, Services, EndpointSlices), and a profile of that (bench/placement_bench.py) had httpx's connection
pool at 18 of the controller's 50 profiled seconds. Plain asyncio streams carry the same exchange for a fraction of
that. lightkube still builds every request (URLs, auth from the kubeconfig, refreshed tokens) and reads every
reply; only the bytes on the wire change hands. Watches stream for minutes and stay on httpx.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx2

from aibrix.engines.transport import HTTPClient, TransportError, TransportTimeout

if TYPE_CHECKING:
    import ssl

    from lightkube import AsyncClient, KubeConfig

CONNECTIONS = 16
_HOP_BY_HOP = frozenset({b"host", b"content-length", b"connection", b"transfer-encoding", b"accept-encoding"})
MAX_REPLY_BYTES = 64 * 1024 * 1024  # one page of a list; the controller lists in pages


class LeanTransport(httpx2.AsyncBaseTransport):
    """At most ``connections`` requests in flight to the API server, each on a kept-alive HTTP/1.1 connection;
    a request with ``watch`` in its query goes to ``streaming`` instead."""

    def __init__(
        self, server: str, ssl_context: ssl.SSLContext | None, streaming: httpx2.AsyncBaseTransport, connections: int
    ) -> None:
        self._client = HTTPClient(
            server, max_idle=connections, max_body=MAX_REPLY_BYTES, ssl_context=ssl_context, connect_timeout=10.0
        )
        self._slots = asyncio.Semaphore(connections)
        self._streaming = streaming

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if "watch" in request.url.params:
            return await self._streaming.handle_async_request(request)
        body = await request.aread()
        headers = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw if k.lower() not in _HOP_BY_HOP
        ]
        timeout = (request.extensions.get("timeout") or {}).get("read") or 60.0
        try:
            async with self._slots:
                reply = await self._client.send(
                    request.method, request.url.raw_path.decode("ascii"), headers, body, timeout
                )
        except TransportTimeout as exc:
            raise httpx2.ReadTimeout(str(exc), request=request) from exc
        except TransportError as exc:
            raise httpx2.NetworkError(str(exc), request=request) from exc
        return httpx2.Response(reply.status_code, headers=list(reply.headers.items()), content=reply.content)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._streaming.aclose()


def api_client(kubeconfig: KubeConfig, connections: int = CONNECTIONS) -> AsyncClient:
    from lightkube import AsyncClient
    from lightkube.config.client_adapter import verify_cluster

    single = kubeconfig.get()
    if single is None or single.user is None:
        return AsyncClient(config=kubeconfig, field_manager="aibrix-controller")
    verify = verify_cluster(single.cluster, single.user, single.abs_file, trust_env=True)
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    streaming = httpx2.AsyncHTTPTransport(verify=verify, limits=limits)
    transport = LeanTransport(single.cluster.server, verify, streaming, connections)  # TLS only for https
    return AsyncClient(config=kubeconfig, field_manager="aibrix-controller", transport=transport)
