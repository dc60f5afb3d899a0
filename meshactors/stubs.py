"""StubPool: gRPC stubs to named internal servers, opened on first use and dropped after a transport failure,
with the cluster-secret metadata every call to them carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from meshactors import cluster_auth

S = TypeVar("S")


class StubPool(Generic[S]):
    """One channel and stub per name (a shard, a builder). `resolve(name)` says where it listens now; after a
    transport failure the caller `forget`s the name, so the next `get` resolves it again (it may have restarted
    elsewhere). Every call on a stub passes `metadata=pool.metadata`: the internal servers refuse calls without
    the deployment's cluster secret."""

    def __init__(
        self,
        resolve: Callable[[str], Awaitable[str]],
        make_stub: Callable[[grpc.aio.Channel], S],
        cluster_secret: str,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.metadata = cluster_auth.call_metadata(cluster_secret)
        self.resolve = resolve
        self.make_stub = make_stub
        self.options = list(options)
        self._stubs: dict[str, S] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def get(self, name: str) -> S:
        stub = self._stubs.get(name)
        if stub is None:
            address = await self.resolve(name)
            channel = grpc.aio.insecure_channel(address, options=self.options)
            self._channels[name] = channel
            stub = self._stubs[name] = self.make_stub(channel)
        return stub

    async def forget(self, name: str) -> None:
        self._stubs.pop(name, None)
        channel = self._channels.pop(name, None)
        if channel is not None:
            await channel.close()
