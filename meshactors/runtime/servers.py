"""Starting the actors' gRPC servers: public ones on a fixed address (rebound after a restart), internal ones
on a free port that Ray tells the callers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from meshactors.errors import MeshError, Unavailable

INTERNAL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


async def start_fixed(server: grpc.aio.Server, address: str, what: str) -> int:
    """Bind `address` (waiting a little for a previous incarnation's socket to go away) and start."""
    port = 0
    for _ in range(50):
        try:
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


async def start_internal(host: str, add_servicer: Callable[[grpc.aio.Server], None]) -> tuple[grpc.aio.Server, str]:
    """An actor's internal gRPC server on a free port; returns it and its address."""
    server = grpc.aio.server(options=INTERNAL_OPTIONS)
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
