"""BuilderLinks: an xDS server's channels to the snapshot builders (the VIP source's transport).

Imported by the xDS server actor when it starts, not by meshactors.runtime.xds_actors itself: what it needs (the
snapshot codec, the VIP source) loads the Envoy protos, which the controller, importing that module for the actor
classes, should not carry.
"""

from __future__ import annotations

import asyncio

import grpc

from meshactors import log
from meshactors.errors import MeshError, Unavailable
from meshactors.resources.snapshot import Snapshot
from meshactors.runtime.calls import Handles, call
from meshactors.runtime.servers import INTERNAL_OPTIONS
from meshactors.settings import MeshSettings
from meshactors.snapshot.service import snapshot_from_pb, versions_to_pb
from meshactors.snapshot.settings import builder_map
from meshactors.snapshot.source import VIP_SOURCE, from_builders
from meshactors.stubs import StubPool
from meshactors.v1 import snapshot_pb2, snapshot_pb2_grpc
from meshactors.xds.host import XdsHost


class BuilderLinks:
    """The VipSource's transport: one gRPC channel per builder (found through Ray), the on-demand fetch, and one
    update stream per builder that re-opens (telling what the host holds, per resource version) whenever it
    breaks and hands every pushed snapshot to the host."""

    def __init__(self, settings: MeshSettings, host_name: str) -> None:
        self.map = builder_map(settings.builders)
        self.handles = Handles(settings.namespace)
        self.host_name = host_name
        self.host: XdsHost | None = None
        self._stubs = StubPool(
            self._address_of, snapshot_pb2_grpc.SnapshotBuilderStub, settings.cluster_secret, INTERNAL_OPTIONS
        )
        self._log = log.get("runtime.builder_links", server=host_name)
        self.streams_opened = 0

    async def _address_of(self, builder: str) -> str:
        return str(await call(self.handles.get(builder), "address", timeout_s=10))

    def _by_builder(self, vips: list[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for vip in vips:
            groups.setdefault(self.map.owner(vip), []).append(vip)
        return groups

    def _request(self, vips: list[str]) -> snapshot_pb2.SubscribeRequest:
        assert self.host is not None
        return snapshot_pb2.SubscribeRequest(host=self.host_name, incarnation=self.host.incarnation, keys=vips)

    async def _unary(self, builder: str, method: str, vips: list[str]) -> list[Snapshot]:
        for attempt in range(2):
            stub = await self._stubs.get(builder)
            try:
                resp = await getattr(stub, method)(self._request(vips), timeout=5, metadata=self._stubs.metadata)
                return [snapshot_from_pb(s) for s in resp.snapshots]
            except grpc.aio.AioRpcError as exc:
                await self._stubs.forget(builder)  # the builder may have restarted on another port
                if attempt or exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise Unavailable(f"{builder}: {exc.code().name} {exc.details()}") from exc
        return []

    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        groups = self._by_builder(vips)
        results = await asyncio.gather(*(self._unary(b, "Subscribe", group) for b, group in groups.items()))
        return [r for batch in results for r in batch]

    async def unsubscribe(self, vips: list[str]) -> None:
        await asyncio.gather(*(self._unary(b, "Unsubscribe", group) for b, group in self._by_builder(vips).items()))

    async def all_ready(self) -> bool:
        try:
            answers = await asyncio.gather(*(call(self.handles.get(b), "ready") for b in self.map.shards))
        except MeshError:
            return False
        return all(answers)

    async def follow(self, builder: str) -> None:
        """Keep an update stream to `builder` open forever: logs and never dies."""
        assert self.host is not None
        backoff = 0.05
        while True:
            try:
                stub = await self._stubs.get(builder)
                # what the host holds from the builders (the route table is the VIP source's own, never a builder's)
                held = {
                    vip: versions
                    for vip, versions in self.host.cache.held_versions(VIP_SOURCE).items()
                    if from_builders(vip) and self.map.owner(vip) == builder
                }
                request = snapshot_pb2.UpdatesRequest(
                    host=self.host_name, incarnation=self.host.incarnation, held=versions_to_pb(held)
                )
                self.streams_opened += 1
                async for update in stub.Updates(request, metadata=self._stubs.metadata):
                    backoff = 0.05
                    snapshots = [snapshot_from_pb(s) for s in update.snapshots]
                    unwanted = self.host.apply(VIP_SOURCE, [s for s in snapshots if from_builders(s.key)])
                    if unwanted:
                        await self._unary(builder, "Unsubscribe", unwanted)
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, MeshError) as exc:
                self._log.info("update stream to builder broken; reopening", builder=builder, error=str(exc)[:200])
                await self._stubs.forget(builder)
            except Exception as exc:
                self._log.exception("update stream failed; reopening", builder=builder, error=str(exc))
                await self._stubs.forget(builder)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
