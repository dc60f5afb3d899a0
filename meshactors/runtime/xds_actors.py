"""Ray actors of the read side: SnapshotBuilder (etcd -> per-VIP resources) and XdsServer (ADS to proxies).

Ray supervises them and tells where a builder listens; the data between them (the on-demand fetch and the
stream of changes) goes over direct gRPC calls, because a Ray actor call costs ~3.5 ms on this hardware.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import grpc
import ray

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.auth.guard import Authenticator, Metadata
from meshactors.auth.model import require_admin
from meshactors.runtime.calls import call
from meshactors.runtime.logs import LogSource, configure_actor
from meshactors.runtime.servers import etcd_revision, public_credentials, scrape_check, start_fixed, start_internal
from meshactors.runtime.topology import lookup, xds_server_name
from meshactors.settings import MeshSettings
from meshactors.snapshot.settings import builder_map, builder_name
from meshactors.store.etcd import EtcdStore
from meshactors.telemetry import golden, metrics
from meshactors.telemetry import http as metrics_http
from meshactors.v1 import snapshot_pb2_grpc
from meshactors.xds.idle import ActivityRelay

if TYPE_CHECKING:
    from meshactors.snapshot.statistics import BuilderStatistics, VipSourceStatistics
    from meshactors.xds.host import ClientStatusAnswer
    from meshactors.xds.statistics import HostStatistics

# The controller imports this module for the actor classes (to create them), so what only a builder or an xDS
# server runs (the Envoy protos through the snapshot builder, the xDS host, CSDS and the metrics sink) is imported
# in that actor's __init__, not here.

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


RELAY_EVERY_S = 1.0  # how often an xDS server relays the metrics reports of nodes whose ADS stream is elsewhere
AUTH_LOAD_WAIT_S = 10.0  # how long a server waits for its token table before listening anyway


class SnapshotBuilderRole(LogSource):
    """Hosts one SnapshotBuilderCore; reloads every registration from etcd on (re)start."""

    async def start(self, settings: MeshSettings, name: str) -> None:
        from meshactors.snapshot.publisher import SnapshotBuilderCore
        from meshactors.snapshot.service import SnapshotService

        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.core = SnapshotBuilderCore(
            self.store, settings.keys, name, builder_map(settings.builders), settings.builder
        )
        await self.core.start()
        self.server, self._address = await start_internal(
            settings.xds_host,
            lambda server: snapshot_pb2_grpc.add_SnapshotBuilderServicer_to_server(SnapshotService(self.core), server),
            settings.cluster_secret,
        )
        self.name = name
        self._tasks = TaskSet()
        self._scrapers = Authenticator(self.store, settings.keys, f"{name}-metrics")  # who may scrape /metrics
        self._tasks.spawn(self._scrapers.follow(), name="tokens")
        self.metrics_server, port = await metrics_http.serve(
            settings.xds_host, settings.metrics_port(name), self._metrics, scrape_check(self._scrapers)
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


class XdsServerRole(LogSource):
    """Serves delta and SotW ADS on a fixed address; refuses streams until every builder and its token table
    have loaded. Every stream is authenticated against that table; a revoked token's streams end."""

    async def start(self, settings: MeshSettings, name: str, port: int) -> None:
        from meshactors.envoy import csds
        from meshactors.envoy.metrics_codec import metrics_generic_handler
        from meshactors.runtime.builder_links import BuilderLinks
        from meshactors.snapshot.source import VipSource
        from meshactors.xds.host import XdsHost
        from meshactors.xds.metrics_sink import MetricsSink

        self._log = log.get("runtime.xds_server", server=name)
        self.settings = settings
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.links = BuilderLinks(settings, name)
        self.source = VipSource(self.links, settings.vip_source)
        self.auth = Authenticator(self.store, settings.keys, name, on_revoked=self._revoked)
        self.host = XdsHost(name, [self.source], settings.xds, authenticate=self.auth.token)
        self.links.host = self.host
        self._auth_tasks = TaskSet()
        self._auth_tasks.spawn(self.auth.follow(), name="tokens")
        # the proxies' golden signals: Envoy's metrics sink streams to the same address as its ADS stream
        self.golden = golden.GoldenSignals(max_vips=settings.telemetry_max_vips)
        self.sink = MetricsSink(
            name, self.golden, self.auth.token, self.source.known_names, lambda: self.host.ready.is_set(),
            on_report=self._on_report,
        )  # fmt: skip
        self.relay = ActivityRelay()
        self.server = grpc.aio.server(options=ADS_SERVER_OPTIONS)
        self.server.add_generic_rpc_handlers((self.host.generic_handler(), metrics_generic_handler(self.sink.stream)))
        csds.add_to_server(self.server, csds.CsdsService(name, self._client_status, self._admin_only))
        await self.auth.wait_loaded(AUTH_LOAD_WAIT_S)  # a reconnecting proxy is not refused while it loads
        bound = await start_fixed(
            self.server, f"{settings.xds_host}:{port}", f"xDS server {name}", public_credentials(settings)
        )
        self.address = f"{settings.xds_host}:{bound}"
        self._tasks = [
            asyncio.create_task(self._loop()), asyncio.create_task(self._collect_loop()),
            asyncio.create_task(self._relay_loop()),
        ]  # fmt: skip
        self.name = name
        self.metrics_server, mport = await metrics_http.serve(
            settings.xds_host, settings.metrics_port(name), self._metrics, scrape_check(self.auth)
        )
        self._metrics_url = f"http://{settings.xds_host}:{mport}/metrics"
        self._log.info("xDS server listening (refusing streams until loaded)", address=self.address, tls=settings.tls)

    def _revoked(self, token_id: str) -> None:
        self.host.revoke(token_id)
        self.sink.revoke(token_id)

    def _admin_only(self, metadata: Metadata | None) -> None:
        """CSDS shows every proxy's configuration: an admin view (the caller's `authorization: Bearer` token)."""
        require_admin(self.auth.identify(metadata), "CSDS (client status)")

    def _client_status(self, match: Callable[[str], bool] | None, contents: bool) -> ClientStatusAnswer:
        return self.host.client_status(match, contents=contents)

    async def _metrics(self) -> bytes:
        host = asdict(self.host.statistics())
        type_urls = self.host.cache.type_urls()
        return metrics.render(
            [
                *metrics.xds_server(self.name, host, type_urls),
                metrics.xds_out_of_sync(self.name, host, type_urls, self.settings.xds.out_of_sync_after_s, time.time()),
                *golden.families(self.name, self.golden.statistics()),
            ]
        )

    async def metrics_url(self) -> str:
        return self._metrics_url

    async def _loop(self) -> None:
        """Readiness first, then the update streams and idle eviction: logs and never dies."""
        from meshactors.snapshot.builder import KNOWN_VIPS_KEY  # loaded by __init__ already
        from meshactors.snapshot.source import VIP_SOURCE

        while not self.host.ready.is_set():
            try:
                if self.auth.ready and await self.links.all_ready():
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

    def _on_report(self, node_id: str, used: set[str], aborts: int) -> None:
        """A metrics report this server received: for its own sessions of the node, or relayed to the others."""
        if not self.host.activity(node_id, used, aborts) and self.settings.xds.cluster_idle_s > 0:
            self.relay.offer(node_id, used, aborts)

    async def _relay_loop(self) -> None:
        """Every second, the reports of nodes whose ADS stream is elsewhere go to the other xDS servers in one call
        each (`activity`): logs and never dies. Off when idle collection is."""
        if self.settings.xds.cluster_idle_s <= 0:
            return
        peers = [xds_server_name(i) for i in range(self.settings.xds_servers) if xds_server_name(i) != self.name]
        handles: dict[str, Any] = {}
        while True:
            await asyncio.sleep(RELAY_EVERY_S)
            batch = self.relay.take()
            if not batch or not peers:
                continue
            calls = []
            for peer in peers:
                handle = handles.get(peer) or lookup(peer, self.settings.namespace)
                if handle is None:
                    continue
                handles[peer] = handle
                calls.append(call(handle, "activity", batch, timeout_s=RELAY_EVERY_S * 5))
            for peer, result in zip(peers, await asyncio.gather(*calls, return_exceptions=True), strict=False):
                if isinstance(result, BaseException):
                    self._log.warning("relaying metrics reports failed", peer=peer, error=str(result)[:300])

    async def activity(self, batch: dict[str, tuple[tuple[str, ...], int]]) -> int:
        """Reports another xDS server received for nodes whose ADS stream may be here; how many were."""
        return sum(self.host.activity(node_id, used, aborts) for node_id, (used, aborts) in batch.items())

    async def _collect_loop(self) -> None:
        """Collects idle clusters from the proxies (XdsHost.collect_idle), a few times per idle time: logs and never
        dies. Off when the idle time is 0."""
        idle_s = self.settings.xds.cluster_idle_s
        if idle_s <= 0:
            return
        every = min(max(idle_s / 4, 0.25), 30.0)
        while True:
            await asyncio.sleep(every)
            try:
                self.host.collect_idle()
            except Exception as exc:
                self._log.exception("idle cluster collection failed", error=str(exc))

    async def ready(self) -> bool:
        return self.host.ready.is_set()

    async def statistics(self, sessions: bool = True) -> XdsServerStatistics:
        """Its counters, and (with `sessions`) a record per connected session: with many sessions the bulk of it,
        which a periodic sampler that shows no sessions leaves out."""
        return XdsServerStatistics(
            self.address, self.links.streams_opened, self.host.statistics(sessions), self.source.statistics()
        )

    async def golden_signals(self) -> golden.GoldenStatistics:
        """What this server's proxies reported: per destination VIP and caller (meshactors.telemetry.golden)."""
        return self.golden.statistics()

    async def convergence(self) -> dict[str, Any]:
        return asdict(self.host.convergence())

    async def client_status(self, node_id: str) -> ClientStatusAnswer:
        """Per type URL and resource, what every session of `node_id` was sent and ACKed (with the contents)."""
        return self.host.client_status(lambda n: n == node_id)

    async def sessions(self) -> list[dict[str, Any]]:
        """Every connected session as plain data (node id, stream kind, what it subscribed and ACKed)."""
        return [asdict(s) for s in self.host.statistics().streams]


@ray.remote
class SnapshotBuilderActor(SnapshotBuilderRole):
    """SnapshotBuilderRole in a Ray actor of its own (the separate shape; runtime.host co-hosts roles)."""

    async def __init__(self, settings: MeshSettings, name: str) -> None:
        configure_actor(settings)
        await self.start(settings, name)


@ray.remote
class XdsServerActor(XdsServerRole):
    """XdsServerRole in a Ray actor of its own (the separate shape; runtime.host co-hosts roles)."""

    async def __init__(self, settings: MeshSettings, name: str, port: int) -> None:
        configure_actor(settings)
        await self.start(settings, name, port)


__all__ = ["SnapshotBuilderActor", "XdsServerActor", "builder_name", "xds_server_name"]
