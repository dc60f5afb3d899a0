"""Ray actors of the read side: SnapshotBuilder (etcd -> per-VIP resources) and XdsServer (ADS to proxies)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import ray

from meshactors import log
from meshactors.errors import MeshError, Unavailable
from meshactors.runtime.calls import call
from meshactors.settings import MeshSettings
from meshactors.snapshot.builder import VipResources
from meshactors.snapshot.publisher import SnapshotBuilderCore, builder_map, builder_name
from meshactors.snapshot.service import SnapshotService, from_pb
from meshactors.store.etcd import EtcdStore
from meshactors.v1 import snapshot_pb2, snapshot_pb2_grpc
from meshactors.xds.host import XdsHost

ADS_SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 1 << 20),  # bound what one client message may cost us
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),  # sidecars may PING to detect a frozen server
    ("grpc.http2.max_ping_strikes", 0),
]


def xds_server_name(index: int) -> str:
    return f"xds-server-{index}"


class _Handles:
    """Actor handles by name, resolved lazily (a handle stays valid across restarts of its actor)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._cache: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        handle = self._cache.get(name)
        if handle is None:
            try:
                handle = ray.get_actor(name, namespace=self.namespace)
            except ValueError as exc:
                raise Unavailable(f"actor {name!r} is not running in namespace {self.namespace!r}") from exc
            self._cache[name] = handle
        return handle


class RayPusher:
    def __init__(self, namespace: str) -> None:
        self.handles = _Handles(namespace)

    async def push(self, server: str, resources: list[VipResources]) -> list[str]:
        return await call(self.handles.get(server), "push", resources)


@ray.remote
class SnapshotBuilderActor:
    """Hosts one SnapshotBuilderCore; reloads every registration from etcd on (re)start."""

    async def __init__(self, settings: MeshSettings, name: str) -> None:
        log.configure()
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.core = SnapshotBuilderCore(
            self.store, settings.keys, name, builder_map(settings.builders), RayPusher(settings.namespace)
        )
        await self.core.start()
        # The on-demand fetch of the xDS servers comes over a direct gRPC call: a Ray call costs ~3 ms here.
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        snapshot_pb2_grpc.add_SnapshotBuilderServicer_to_server(SnapshotService(self.core), self.server)
        port = self.server.add_insecure_port(f"{settings.xds_host}:0")
        await self.server.start()
        self._address = f"{settings.xds_host}:{port}"

    async def ready(self) -> bool:
        return self.core.ready

    async def address(self) -> str:
        return self._address

    async def incarnation(self) -> str:
        return self.core.incarnation

    async def unsubscribe(self, host: str, incarnation: str, vips: list[str]) -> None:
        self.core.unsubscribe(host, incarnation, vips)

    async def resync(self, host: str, incarnation: str, versions: dict[str, tuple[str, str]]) -> list[VipResources]:
        return self.core.resync(host, incarnation, versions)

    async def statistics(self) -> dict[str, Any]:
        return self.core.statistics()

    async def versions(self, vips: list[str]) -> dict[str, tuple[str, str]]:
        return self.core.versions(vips)


class RaySnapshotSource:
    """The XdsHost's SnapshotSource: asks the builder that owns each VIP, and re-syncs after builder restarts.

    The fetch itself is a direct gRPC call to the builder's SnapshotBuilder service (its address comes
    from a Ray call, again whenever the channel fails: a restarted builder listens elsewhere).
    """

    def __init__(self, settings: MeshSettings, host_name: str) -> None:
        self.map = builder_map(settings.builders)
        self.handles = _Handles(settings.namespace)
        self.host_name = host_name
        self.host: XdsHost | None = None
        self.seen: dict[str, str] = {}  # builder -> incarnation we last subscribed with
        self._stubs: dict[str, snapshot_pb2_grpc.SnapshotBuilderStub] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def _stub(self, builder: str) -> snapshot_pb2_grpc.SnapshotBuilderStub:
        stub = self._stubs.get(builder)
        if stub is None:
            address = await call(self.handles.get(builder), "address", timeout_s=5)
            channel = grpc.aio.insecure_channel(address)
            self._channels[builder] = channel
            stub = self._stubs[builder] = snapshot_pb2_grpc.SnapshotBuilderStub(channel)
        return stub

    async def _forget(self, builder: str) -> None:
        self._stubs.pop(builder, None)
        channel = self._channels.pop(builder, None)
        if channel is not None:
            await channel.close()

    async def _subscribe_one(self, builder: str, vips: list[str]) -> list[VipResources]:
        assert self.host is not None
        request = snapshot_pb2.SubscribeRequest(host=self.host_name, incarnation=self.host.incarnation, vips=vips)
        for attempt in range(2):
            stub = await self._stub(builder)
            try:
                resp = await stub.Subscribe(request, timeout=5)
                return [from_pb(s) for s in resp.snapshots]
            except grpc.aio.AioRpcError as exc:
                await self._forget(builder)  # the builder may have restarted on another port
                if attempt or exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise Unavailable(f"{builder}: {exc.code().name} {exc.details()}") from exc
        return []

    def _by_builder(self, vips: list[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for vip in vips:
            groups.setdefault(self.map.owner(vip), []).append(vip)
        return groups

    async def subscribe(self, vips: list[str]) -> list[VipResources]:
        results = await asyncio.gather(*(self._subscribe_one(b, group) for b, group in self._by_builder(vips).items()))
        return [r for batch in results for r in batch]

    async def unsubscribe(self, vips: list[str]) -> None:
        assert self.host is not None
        await asyncio.gather(
            *(
                call(self.handles.get(b), "unsubscribe", self.host_name, self.host.incarnation, group)
                for b, group in self._by_builder(vips).items()
            )
        )

    async def all_ready(self) -> bool:
        try:
            answers = await asyncio.gather(*(call(self.handles.get(b), "ready") for b in self.map.shards))
        except MeshError:
            return False
        return all(answers)

    async def reconcile(self) -> None:
        """When a builder has a new incarnation (it restarted), tell it everything we hold; apply what differs."""
        assert self.host is not None
        for builder in self.map.shards:
            try:
                inc = await call(self.handles.get(builder), "incarnation", timeout_s=5)
            except MeshError:
                continue
            if self.seen.get(builder) == inc:
                continue
            held = {v: ver for v, ver in self.host.cache.versions().items() if self.map.owner(v) == builder}
            try:
                changed = await call(
                    self.handles.get(builder), "resync", self.host_name, self.host.incarnation, held, timeout_s=10
                )
            except MeshError:
                continue
            self.host.apply(changed)
            self.seen[builder] = inc


@ray.remote
class XdsServerActor:
    """Serves delta and SotW ADS on a fixed address; refuses streams until every builder has loaded."""

    async def __init__(self, settings: MeshSettings, name: str, port: int) -> None:
        log.configure()
        self._log = log.get("runtime.xds_server", server=name)
        self.settings = settings
        self.source = RaySnapshotSource(settings, name)
        self.host = XdsHost(name, self.source, settings.xds)
        self.source.host = self.host
        self.server = grpc.aio.server(options=ADS_SERVER_OPTIONS)
        self.server.add_generic_rpc_handlers((self.host.generic_handler(),))
        address = f"{settings.xds_host}:{port}"
        bound = 0
        for _ in range(50):  # the previous incarnation's socket may take a moment to go away
            try:
                bound = self.server.add_insecure_port(address)
            except RuntimeError:
                bound = 0
            if bound:
                break
            await asyncio.sleep(0.1)
        if not bound:
            raise Unavailable(f"xDS server {name} cannot listen on {address}")
        await self.server.start()
        self.address = f"{settings.xds_host}:{bound}"
        self._tasks = [asyncio.create_task(self._loop())]
        self._log.info("xDS server listening (refusing streams until loaded)", address=self.address)

    async def _loop(self) -> None:
        """Readiness, builder re-sync and idle eviction: logs and never dies."""
        n = 0
        while True:
            try:
                if not self.host.ready.is_set():
                    if await self.source.all_ready():
                        await self.source.reconcile()
                        self.host.ready.set()
                        self._log.info("xDS server ready", address=self.address)
                else:
                    await self.source.reconcile()
                    if n % 10 == 0:
                        await self.host.evict_idle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.exception("xDS server upkeep failed", error=str(exc))
            n += 1
            await asyncio.sleep(0.1 if not self.host.ready.is_set() else 1.0)

    async def ready(self) -> bool:
        return self.host.ready.is_set()

    async def push(self, resources: list[VipResources]) -> list[str]:
        return self.host.apply(resources)

    async def statistics(self) -> dict[str, Any]:
        return {"address": self.address, **self.host.statistics()}

    async def convergence(self) -> dict[str, Any]:
        return self.host.convergence()

    async def sessions(self) -> list[dict[str, Any]]:
        return self.host.statistics()["streams"]


__all__ = ["SnapshotBuilderActor", "XdsServerActor", "builder_name", "xds_server_name"]
