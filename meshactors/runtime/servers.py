"""Starting the actors' gRPC servers: public ones on a fixed address (rebound after a restart, TLS when the
settings name a certificate), internal ones on a free port that Ray tells the callers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from meshactors.auth.guard import Authenticator
from meshactors.cluster_auth import ClusterSecretInterceptor
from meshactors.errors import MeshError, Unavailable
from meshactors.settings import MeshSettings
from meshactors.tlsconfig import load_pair

INTERNAL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def public_credentials(settings: MeshSettings) -> grpc.ServerCredentials | None:
    """The TLS credentials of the public listeners (read from the settings' files now), or None: plaintext."""
    if not settings.tls:
        return None
    cert, key = load_pair(settings.tls_cert, settings.tls_key)
    return grpc.ssl_server_credentials([(key, cert)])


async def start_fixed(
    server: grpc.aio.Server, address: str, what: str, credentials: grpc.ServerCredentials | None = None
) -> int:
    """Bind `address` (waiting a little for a previous incarnation's socket to go away), with TLS when
    `credentials` are given, and start."""
    port = 0
    for _ in range(50):
        try:
            if credentials is not None:
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port:
            break
        await asyncio.sleep(0.1)
    if not port:
        raise Unavailable(f"{what} cannot listen on {address}")
    await server.start()
    return port


async def start_internal(
    host: str, add_servicer: Callable[[grpc.aio.Server], None], cluster_secret: str
) -> tuple[grpc.aio.Server, str]:
    """An actor's internal gRPC server on a free port, answering only calls that carry the deployment's cluster
    secret (meshactors.cluster_auth); returns it and its address."""
    server = grpc.aio.server(options=INTERNAL_OPTIONS, interceptors=[ClusterSecretInterceptor(cluster_secret)])
    add_servicer(server)
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    return server, f"{host}:{port}"


async def etcd_revision(store: Any) -> int | None:
    """etcd's current revision for the watch-lag gauge; None when etcd does not answer (the gauge is left out)."""
    try:
        return await asyncio.wait_for(store.revision(), 2.0)
    except (MeshError, TimeoutError):
        return None


def scrape_check(auth: Authenticator) -> Callable[[str | None], bool]:
    """What a /metrics server asks of a scrape: any valid API token (the counters name VIPs and actors)."""

    def check(header: str | None) -> bool:
        try:
            auth.identify([("authorization", header)] if header else [])
        except MeshError:
            return False
        return True

    return check
