"""Collection of idle clusters: a real Envoy loses the clusters it stopped using and gets them back on the next request.

An xDS server in this process (a short idle time, its own metrics sink on the same address, so the Envoy's ADS
stream and its metrics reports meet), on the stack's real builders and registry.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors.envoy.metrics_codec import metrics_generic_handler
from meshactors.envoy.process import EnvoyProcess, start_generic_envoy, xds_endpoints
from meshactors.registry.client import RegistryClient
from meshactors.runtime.builder_links import BuilderLinks
from meshactors.runtime.calls import call_sync
from meshactors.runtime.ops import handle_of
from meshactors.settings import MeshSettings
from meshactors.snapshot.builder import KNOWN_VIPS_KEY
from meshactors.snapshot.source import VIP_SOURCE, VipSource
from meshactors.store.server import free_port
from meshactors.telemetry.golden import GoldenSignals
from meshactors.testing.backends import get, guard_knows
from meshactors.testing.stack import UpProcess
from meshactors.testing.waits import until
from meshactors.testing.xds_client import StaticTokens
from meshactors.v1 import registry_pb2 as pb
from meshactors.xds.host import HostSettings, XdsHost
from meshactors.xds.metrics_sink import MetricsSink

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)
IDLE_S = 2.0
FLUSH_S = 0.5
CYCLES = 3  # a rarely used VIP: requested once per idle time, collected in between, three times
FIRST_REQUEST_BOUND_S = 1.0  # the on-demand timeout is 5 s: a stuck name would take that and answer 503


async def _until(predicate: Any, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not await asyncio.to_thread(predicate):
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def _clusters(envoy: EnvoyProcess) -> set[str]:
    return {line.split("::", 1)[0] for line in envoy.admin_get("/clusters").splitlines() if "::" in line}


async def test_idle_clusters_are_collected_and_come_back_at_first_request_cost(
    stack: dict[str, Any], registry: RegistryClient, backends: Any, tmp_path: Path, ray_driver: Any
) -> None:
    settings = MeshSettings(etcd=stack["etcd"], namespace=stack["namespace"], cluster_secret=stack["_cluster_secret"])
    links = BuilderLinks(settings, f"collect-test-{uuid.uuid4().hex[:6]}")
    source = VipSource(links)
    tokens = StaticTokens()
    token, _ = tokens.mint()
    host = XdsHost(
        links.host_name, [source], HostSettings(cluster_idle_s=IDLE_S, idle_report_gap_s=4 * FLUSH_S),
        authenticate=tokens,
    )  # fmt: skip
    links.host = host
    sink = MetricsSink("collect-test", GoldenSignals(), tokens, source.known_names, host.ready.is_set,
                       on_report=host.activity)  # fmt: skip
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((host.generic_handler(), metrics_generic_handler(sink.stream)))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    follows = [asyncio.create_task(links.follow(b)) for b in links.map.shards]

    async def collect_loop() -> None:
        while True:
            host.collect_idle()
            await asyncio.sleep(IDLE_S / 8)

    collector = asyncio.create_task(collect_loop())
    envoy: EnvoyProcess | None = None
    stop = threading.Event()
    busy_replies: list[int] = []
    try:
        await host.pin(VIP_SOURCE, [KNOWN_VIPS_KEY])
        host.ready.set()
        suffix = uuid.uuid4().hex[:6]
        rare, busy = f"collect-rare-{suffix}", f"collect-busy-{suffix}"
        for vip, name in ((rare, "rare"), (busy, "busy")):
            registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=backends(name).port, lease=LONG_LEASE))
        listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        envoy = await asyncio.to_thread(
            start_generic_envoy, [("127.0.0.1", port)], f"collect-{suffix}", tmp_path, listen, admin,
            token=token, stats_flush_s=FLUSH_S,
        )  # fmt: skip
        assert envoy is not None
        proxy = envoy
        for vip in (rare, busy):
            await _until(lambda v=vip: guard_knows(proxy, v), 10, f"the guard knows {vip}")

        first = await asyncio.to_thread(get, proxy.listen, rare)
        assert (first.status, first.body) == (200, "rare"), first
        print(f"\nfirst request to {rare}: {first.seconds * 1e3:.1f} ms")

        def keep_busy() -> None:  # a VIP in use: a request every 100 ms, never collected
            while not stop.is_set():
                busy_replies.append(get(proxy.listen, busy, timeout_s=10).status)
                stop.wait(0.1)

        busy_thread = threading.Thread(target=keep_busy, daemon=True)
        busy_thread.start()
        await _until(lambda: busy_replies.count(200) > 0, 10, "the busy VIP answers")

        again: list[float] = []
        for cycle in range(1, CYCLES + 1):
            name = rare if cycle == 1 else f"{rare}@{cycle - 1}"
            took = await _until(lambda n=name: n not in _clusters(proxy), IDLE_S + 10, f"{name} collected")
            print(f"cycle {cycle}: {name} collected {took:.2f} s after the check began")
            assert busy in _clusters(proxy), "a cluster in use was collected"
            reply = await asyncio.to_thread(get, proxy.listen, rare)
            assert (reply.status, reply.body) == (200, "rare"), (cycle, reply)
            assert reply.seconds < FIRST_REQUEST_BOUND_S, (cycle, reply.seconds)
            assert f"{rare}@{cycle}" in _clusters(proxy)
            again.append(reply.seconds)
        print("request after each collection: " + ", ".join(f"{s * 1e3:.1f} ms" for s in again)
              + f" (first request {first.seconds * 1e3:.1f} ms)")  # fmt: skip

        stop.set()
        await asyncio.to_thread(busy_thread.join, 15)
        assert busy_replies and set(busy_replies) == {200}, sorted(set(busy_replies))
        assert not any("@" in c and c.startswith(busy) for c in _clusters(proxy))
        stats = host.statistics()
        assert stats.clusters_collected == CYCLES, stats.clusters_collected
        (session,) = [s for s in stats.streams if s.node_id == f"collect-{suffix}" and s.kind == "delta"]
        assert session.protocol["clusters_collected"] == CYCLES
        assert session.protocol["names_retired"] == CYCLES  # rare, rare@1, rare@2 stay subscribed on Envoy

        # junk Hosts the guard answers show per proxy, from its reports
        junk = 5
        for i in range(junk):
            reply = await asyncio.to_thread(get, proxy.listen, f"collect-junk-{i}-{suffix}")
            assert reply.status == 503
        node = f"collect-{suffix}"

        def aborts() -> int:
            return next(s.outbound_aborts for s in host.statistics().streams if s.node_id == node and s.kind == "delta")

        await _until(lambda: aborts() >= junk, 10, "the junk answered shows in the session's record")
        assert aborts() == junk
    finally:
        stop.set()
        collector.cancel()
        for t in follows:
            t.cancel()
        if envoy is not None:
            await asyncio.to_thread(envoy.stop)
        await server.stop(0)


def _xds_rq_active(envoy: EnvoyProcess) -> dict[str, int]:
    """Per control-plane server address, the gRPC streams the Envoy has open to it (ADS and metrics)."""
    out: dict[str, int] = {}
    for line in envoy.admin_get("/clusters").splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "meshactors_xds" and parts[2] == "rq_active":
            out[parts[1]] = int(parts[3])
    return out


def test_an_envoys_metrics_reports_reach_the_server_of_its_ads_stream(
    stack: dict[str, Any], tmp_path: Path, ray_driver: Any
) -> None:
    """Idle collection learns on the server that holds a proxy's ADS stream; Envoy's round-robin picker may put
    the metrics stream on another server, which relays the reports (every second, one call per peer)."""
    servers = xds_endpoints(stack["xds"])
    assert len(servers) >= 2, "the embedded default runs two xDS servers"
    actors = [handle_of(f"xds-server-{i}", stack["namespace"]) for i in range(len(servers))]
    node = f"relay-{uuid.uuid4().hex[:6]}"
    listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    envoy = start_generic_envoy(
        servers, node, tmp_path, listen, admin, token=stack["proxy_token"], stats_flush_s=FLUSH_S
    )  # fmt: skip
    try:

        def both_open() -> dict[str, int] | None:
            active = _xds_rq_active(envoy)
            return active if sum(active.values()) == 2 else None

        def session() -> tuple[str, Any] | None:
            for actor in actors:
                stats = call_sync(actor, "statistics", timeout_s=10)
                for s in stats.host.streams:
                    if s.node_id == node and s.kind == "delta":
                        return stats.address, s
            return None

        def reached(n: int) -> Any:
            found = session()
            return found[1] if found is not None and found[1].metrics_reports >= n else None

        streams = until(both_open, 20, "the ADS and metrics streams are open")
        found = until(session, 20, f"{node}'s ADS session")
        address = found[0].rsplit(":", 1)
        on_ads_server = streams.get(f"{address[0]}:{address[1]}") == 2
        record = until(lambda: reached(6), 30, "six of its reports reach its ADS session")
        path = "on the same server" if on_ads_server else "relayed by the other server"
        print(f"\n{node}: ADS on {found[0]}, streams {streams}: metrics {path}; {record.metrics_reports} reports")
        assert record.metrics_reports >= 6
    finally:
        envoy.stop()


def test_up_collects_an_idle_cluster_and_the_next_request_discovers_it_again(backends: Any, tmp_path: Path) -> None:
    """The same through `meshactors up --xds-cluster-idle-s` (its own embedded etcd and Ray, two xDS servers): the
    actors' collection loop, the reports (or their relay) and the flag, as a user runs them."""
    up = UpProcess(
        tmp_path / "up",
        args=["--registry-port", "0", "--eureka-port", "0", "--dashboard-port", "0", "--xds-port", "0",
              "--namespace", f"collect-{uuid.uuid4().hex[:6]}", "--xds-cluster-idle-s", str(IDLE_S),
              "--xds-idle-report-gap-s", str(4 * FLUSH_S)],
    )  # fmt: skip
    info = up.start(timeout_s=120)
    envoy: EnvoyProcess | None = None
    try:
        vip = f"collect-up-{uuid.uuid4().hex[:6]}"
        with RegistryClient(info["registry"], token=info["token"]) as client:
            client.register(pb.Instance(vip=vip, host="127.0.0.1", port=backends("up").port, lease=LONG_LEASE))
        listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        envoy = start_generic_envoy(
            xds_endpoints(info["xds"]), f"collect-up-{uuid.uuid4().hex[:6]}", tmp_path, listen, admin,
            token=info["proxy_token"], stats_flush_s=FLUSH_S,
        )  # fmt: skip
        proxy = envoy
        until(lambda: guard_knows(proxy, vip), 10, f"the guard knows {vip}")
        assert get(proxy.listen, vip).status == 200
        until(lambda: vip not in _clusters(proxy), IDLE_S + 20, f"{vip} collected")
        reply = get(proxy.listen, vip)
        assert (reply.status, reply.body) == (200, "up") and reply.seconds < FIRST_REQUEST_BOUND_S, reply
        assert f"{vip}@1" in _clusters(proxy)
        print(f"\nthrough up: the request after the collection took {reply.seconds * 1e3:.1f} ms")
    finally:
        if envoy is not None:
            envoy.stop()
        up.stop()
