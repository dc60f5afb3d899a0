"""Ray actors of the read side: SnapshotBuilder (etcd -> per-VIP resources) and XdsServer (ADS to proxies).

Ray supervises them and tells where a builder listens; the data between them (the on-demand fetch and the
stream of changes) goes over direct gRPC calls, because a Ray actor call costs ~3.5 ms on this hardware.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import grpc
import ray

from meshactors import log
from meshactors.errors import MeshError, Unavailable
from meshactors.resources.snapshot import Snapshot
from meshactors.runtime.calls import Handles, call
from meshactors.runtime.logs import LogSource, configure_actor
from meshactors.runtime.servers import INTERNAL_OPTIONS, etcd_revision, start_fixed, start_internal
from meshactors.runtime.topology import xds_server_name
from meshactors.settings import MeshSettings
from meshactors.snapshot.builder import KNOWN_VIPS_KEY
from meshactors.snapshot.publisher import BuilderStatistics, SnapshotBuilderCore, builder_map, builder_name
from meshactors.snapshot.service import SnapshotService, snapshot_from_pb, versions_to_pb
from meshactors.snapshot.source import VIP_SOURCE, VipSource, VipSourceStatistics
from meshactors.store.etcd import EtcdStore
from meshactors.stubs import StubPool
from meshactors.telemetry import http as metrics_http
from meshactors.telemetry import metrics
from meshactors.v1 import snapshot_pb2, snapshot_pb2_grpc
from meshactors.xds.host import HostStatistics, XdsHost

ADS_SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 1 << 20),  # bound what one client message may cost us
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),  # sidecars may PING to detect a frozen server
    ("grpc.http2.max_ping_strikes", 0),
]


@dataclass(frozen=True, slots=True)
class SnapshotBuilderStatistics:
    address: str
    builder: BuilderStatistics


@dataclass(frozen=True, slots=True)
class XdsServerStatistics:
    address: str
    update_streams_opened: int
    host: HostStatistics
    vip_source: VipSourceStatistics


@ray.remote
class SnapshotBuilderActor(LogSource):
    """Hosts one SnapshotBuilderCore; reloads every registration from etcd on (re)start."""

    async def __init__(self, settings: MeshSettings, name: str) -> None:
        configure_actor(settings)
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.core = SnapshotBuilderCore(
            self.store, settings.keys, name, builder_map(settings.builders), settings.builder
        )
        await self.core.start()
        self.server, self._address = await start_internal(
            settings.xds_host,
            lambda server: snapshot_pb2_grpc.add_SnapshotBuilderServicer_to_server(SnapshotService(self.core), server),
        )
        self.name = name
        self.metrics_server, port = await metrics_http.serve(
            settings.xds_host, settings.metrics_port(name), self._metrics
        )
        self._metrics_url = f"http://{settings.xds_host}:{port}/metrics"

    async def _metrics(self) -> bytes:
        return metrics.render(
            metrics.snapshot_builder(self.name, asdict(self.core.statistics()), await etcd_revision(self.store))
        )

    async def metrics_url(self) -> str:
        return self._metrics_url

    async def ready(self) -> bool:
        return self.core.ready

    async def address(self) -> str:
        return self._address

    async def statistics(self) -> SnapshotBuilderStatistics:
        return SnapshotBuilderStatistics(self._address, self.core.statistics())


class BuilderLinks:
    """The VipSource's transport: one gRPC channel per builder (found through Ray), the on-demand fetch, and one
    update stream per builder that re-opens (telling what the host holds, per resource version) whenever it
    breaks and hands every pushed snapshot to the host."""

    def __init__(self, settings: MeshSettings, host_name: str) -> None:
        self.map = builder_map(settings.builders)
        self.handles = Handles(settings.namespace)
        self.host_name = host_name
        self.host: XdsHost | None = None
        self._stubs = StubPool(self._address_of, snapshot_pb2_grpc.SnapshotBuilderStub, INTERNAL_OPTIONS)
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
                resp = await getattr(stub, method)(self._request(vips), timeout=5)
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
                held = {
                    vip: versions
                    for vip, versions in self.host.cache.held_versions(VIP_SOURCE).items()
                    if self.map.owner(vip) == builder
                }
                request = snapshot_pb2.UpdatesRequest(
                    host=self.host_name, incarnation=self.host.incarnation, held=versions_to_pb(held)
                )
                self.streams_opened += 1
                async for update in stub.Updates(request):
                    backoff = 0.05
                    unwanted = self.host.apply(VIP_SOURCE, [snapshot_from_pb(s) for s in update.snapshots])
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


@ray.remote
class XdsServerActor(LogSource):
    """Serves delta and SotW ADS on a fixed address; refuses streams until every builder has loaded."""

    async def __init__(self, settings: MeshSettings, name: str, port: int) -> None:
        configure_actor(settings)
        self._log = log.get("runtime.xds_server", server=name)
        self.settings = settings
        self.links = BuilderLinks(settings, name)
        self.source = VipSource(self.links, settings.vip_source)
        self.host = XdsHost(name, [self.source], settings.xds)
        self.links.host = self.host
        self.server = grpc.aio.server(options=ADS_SERVER_OPTIONS)
        self.server.add_generic_rpc_handlers((self.host.generic_handler(),))
        bound = await start_fixed(self.server, f"{settings.xds_host}:{port}", f"xDS server {name}")
        self.address = f"{settings.xds_host}:{bound}"
        self._tasks = [asyncio.create_task(self._loop())]
        self.name = name
        self.metrics_server, mport = await metrics_http.serve(
            settings.xds_host, settings.metrics_port(name), self._metrics
        )
        self._metrics_url = f"http://{settings.xds_host}:{mport}/metrics"
        self._log.info("xDS server listening (refusing streams until loaded)", address=self.address)

    async def _metrics(self) -> bytes:
        host = asdict(self.host.statistics())
        return metrics.render(metrics.xds_server(self.name, host, self.host.cache.type_urls()))

    async def metrics_url(self) -> str:
        return self._metrics_url

    async def _loop(self) -> None:
        """Readiness first, then the update streams and idle eviction: logs and never dies."""
        while not self.host.ready.is_set():
            try:
                if await self.links.all_ready():
                    self._tasks += [asyncio.create_task(self.links.follow(b)) for b in self.links.map.shards]
                    # held for good, sessions or not: the guard's config, and what the VIP source learns the
                    # known names from (a gRPC-only deployment bounds unknown VIPs by it too)
                    await self.host.pin(VIP_SOURCE, [KNOWN_VIPS_KEY])
                    self.host.ready.set()
                    self._log.info("xDS server ready", address=self.address)
                    break
            except Exception as exc:
                self._log.exception("readiness check failed", error=str(exc))
            await asyncio.sleep(0.1)
        while True:
            await asyncio.sleep(10)
            try:
                await self.host.evict_idle()
            except Exception as exc:
                self._log.exception("idle eviction failed", error=str(exc))

    async def ready(self) -> bool:
        return self.host.ready.is_set()

    async def statistics(self) -> XdsServerStatistics:
        return XdsServerStatistics(
            self.address, self.links.streams_opened, self.host.statistics(), self.source.statistics()
        )

    async def convergence(self) -> dict[str, Any]:
        return asdict(self.host.convergence())

    async def sessions(self) -> list[dict[str, Any]]:
        """Every connected session as plain data (node id, stream kind, what it subscribed and ACKed)."""
        return [asdict(s) for s in self.host.statistics().streams]


__all__ = ["SnapshotBuilderActor", "XdsServerActor", "builder_name", "xds_server_name"]
