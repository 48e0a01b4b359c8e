"""The Kubernetes API client, with a bounded connection pool.

lightkube's default is httpx's: up to 100 connections. Every request the pool hands out checks each pooled
connection's socket first, so with one connection per worker and per background Event the client spent a third of
the controller's CPU walking its own pool (bench/placement_bench.py, 1000 adapters). A pool the size of the API
server's useful concurrency queues the rest instead. TLS comes from the kubeconfig, as lightkube builds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightkube import AsyncClient, KubeConfig

CONNECTIONS = 16


def api_client(kubeconfig: KubeConfig, connections: int = CONNECTIONS) -> AsyncClient:
    import httpx2
    from lightkube import AsyncClient
    from lightkube.config.client_adapter import verify_cluster

    single = kubeconfig.get()
    if single is None or single.user is None:
        return AsyncClient(config=kubeconfig, field_manager="aibrix-controller")
    verify = verify_cluster(single.cluster, single.user, single.abs_file, trust_env=True)
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = httpx2.AsyncHTTPTransport(verify=verify, limits=limits)
    return AsyncClient(config=kubeconfig, field_manager="aibrix-controller", transport=transport)
