"""The ADS host over real gRPC streams with the checking xDS client (no Ray, no etcd: a scripted source).

Every response the clients receive is run through the invariant checker of meshactors.testing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import grpc
import pytest

from meshactors.errors import Unavailable
from meshactors.model import Instance
from meshactors.resources.snapshot import Snapshot
from meshactors.snapshot.builder import build_vip
from meshactors.snapshot.source import VIP_SOURCE, VipSource
from meshactors.testing.xds_client import DeltaAdsClient, SotwAdsClient, StaticTokens
from meshactors.xds.host import HostSettings, XdsHost
from meshactors.xds.types import CLUSTER, ENDPOINT, LISTENER, Node

pytestmark = [pytest.mark.timeout(60)]

TOKENS = StaticTokens()  # the hosts' token check: every stream here presents TOKEN
TOKEN, _ = TOKENS.mint()
AUTH = (("authorization", f"Bearer {TOKEN}"),)


class ScriptedSource:
    """Plays the snapshot builders (the VipSource's transport): serves build_vip over a dict of instances and
    counts the asks."""

    def __init__(self) -> None:
        self.instances: dict[str, list[Instance]] = {}
        self.asked: list[list[str]] = []
        self.fail = False

    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        self.asked.append(list(vips))
        if self.fail:
            raise Unavailable("builder down (scripted)")
        return [build_vip(v, self.instances.get(v, [])) for v in vips]

    async def unsubscribe(self, vips: list[str]) -> None:
        return None

    def set(self, vip: str, *ports: int) -> Snapshot:
        self.instances[vip] = [Instance(app=vip, instance_id=f"i{p}", host="127.0.0.1", vip=vip, port=p) for p in ports]
        return build_vip(vip, self.instances[vip])


@pytest.fixture
async def served() -> AsyncIterator[tuple[XdsHost, ScriptedSource, str]]:
    source = ScriptedSource()
    host = XdsHost("test-host", [VipSource(source)], HostSettings(max_new_streams_per_s=50), authenticate=TOKENS)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((host.generic_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    host.ready.set()
    try:
        yield host, source, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _cla_ports(body: bytes | None) -> set[int]:
    from envoy.config.endpoint.v3 import endpoint_pb2

    cla = endpoint_pb2.ClusterLoadAssignment.FromString(body or b"")
    return {lb.endpoint.address.socket_address.port_value for loc in cla.endpoints for lb in loc.lb_endpoints}


async def test_on_demand_cds_then_eds_and_pushes(served: Any) -> None:
    host, source, target = served
    source.set("shop", 9001)
    async with grpc.aio.insecure_channel(target) as ch, DeltaAdsClient(ch, Node("n1"), token=TOKEN) as client:
        await client.subscribe(CLUSTER, ["shop"])
        await client.wait_for(CLUSTER, "shop")
        await client.subscribe(ENDPOINT, ["shop"])
        cla = await client.wait_for(ENDPOINT, "shop")
        assert _cla_ports(cla.body) == {9001}
        assert source.asked == [["shop"]]  # one fetch served both CDS and EDS

        host.apply(VIP_SOURCE, [source.set("shop", 9001, 9002)])  # a push from the builder
        cla = await client.wait_for(ENDPOINT, "shop", lambda r: _cla_ports(r.body) == {9001, 9002})
        await client.expect_silence(0.3)  # nothing else changed: nothing else sent
        assert client.violations == []


async def test_unknown_vip_gets_an_endpointless_cluster_then_the_real_one(served: Any) -> None:
    host, source, target = served
    async with grpc.aio.insecure_channel(target) as ch, DeltaAdsClient(ch, Node("n2"), token=TOKEN) as client:
        await client.subscribe(CLUSTER, ["ghost"])
        await client.wait_for(CLUSTER, "ghost")
        await client.subscribe(ENDPOINT, ["ghost"])
        cla = await client.wait_for(ENDPOINT, "ghost")
        assert _cla_ports(cla.body) == set()
        host.apply(VIP_SOURCE, [source.set("ghost", 9100)])
        await client.wait_for(ENDPOINT, "ghost", lambda r: _cla_ports(r.body) == {9100})
        assert client.violations == []


async def test_reconnect_with_initial_versions_resends_only_what_changed(served: Any) -> None:
    host, source, target = served
    source.set("a", 1001)
    source.set("b", 1002)
    async with grpc.aio.insecure_channel(target) as ch, DeltaAdsClient(ch, Node("n3"), token=TOKEN) as client:
        await client.subscribe(CLUSTER, ["a", "b"])
        await client.subscribe(ENDPOINT, ["a", "b"])
        await client.wait_for(ENDPOINT, "a")
        await client.wait_for(ENDPOINT, "b")
        sessions_before = [asdict(x) for x in host.statistics().streams]
        # while the client is away, b changes; a does not
        await client.close()
        host.apply(VIP_SOURCE, [source.set("b", 1002, 1003)])
        await client.reconnect()
        await client.wait_for(ENDPOINT, "b", lambda r: _cla_ports(r.body) == {1002, 1003})
        await client.expect_silence(0.3)
        new = [s for s in [asdict(x) for x in host.statistics().streams] if s["node_id"] == "n3"]
        assert len(new) == 1 and new[0]["stream_id"] not in {s["stream_id"] for s in sessions_before}
        assert new[0]["resources_sent"] == 1  # only b's endpoints
        assert client.violations == []


async def test_nack_keeps_last_good_and_is_reported(served: Any) -> None:
    host, source, target = served
    source.set("n", 2001)
    bad_version: list[str] = []

    def nack(resp: Any) -> str | None:
        if resp.type_url == ENDPOINT and any(_cla_ports(r.body) == {2001, 2002} for r in resp.resources):
            bad_version.append(resp.resources[0].version)
            return "rejected by test"
        return None

    async with (
        grpc.aio.insecure_channel(target) as ch,
        DeltaAdsClient(ch, Node("n4"), token=TOKEN, nack_when=nack) as client,
    ):
        await client.subscribe(CLUSTER, ["n"])
        await client.subscribe(ENDPOINT, ["n"])
        await client.wait_for(ENDPOINT, "n")
        host.apply(VIP_SOURCE, [source.set("n", 2001, 2002)])
        await asyncio.sleep(0.3)
        host.apply(VIP_SOURCE, [source.set("n", 2001, 2002)])  # same content pushed again: never resent after the NACK
        await client.expect_silence(0.3)
        [session] = [s for s in [asdict(x) for x in host.statistics().streams] if s["node_id"] == "n4"]
        nack_record = session["protocol"]["last_nack"]
        assert nack_record["message"] == "rejected by test"
        assert host.counters.nacks == 1
        host.apply(VIP_SOURCE, [source.set("n", 2003)])  # new content is sent again
        await client.wait_for(ENDPOINT, "n", lambda r: _cla_ports(r.body) == {2003})
        assert client.violations == []


async def test_proxyless_sotw_lds_cds_eds(served: Any) -> None:
    _host, source, target = served
    source.set("greeter", 50051)
    async with grpc.aio.insecure_channel(target) as ch, SotwAdsClient(ch, Node("g1"), token=TOKEN) as client:
        await client.subscribe(LISTENER, ["greeter:50051"])
        await client.wait_for(LISTENER, "greeter:50051")
        await client.subscribe(CLUSTER, ["greeter"])
        await client.wait_for(CLUSTER, "greeter")
        await client.subscribe(ENDPOINT, ["greeter"])
        cla = await client.wait_for(ENDPOINT, "greeter")
        assert _cla_ports(cla.body) == {50051}
        await client.expect_silence(0.3)  # ACKs are not answered
        assert client.violations == []


async def test_invalid_names_are_refused_without_ending_the_stream(served: Any) -> None:
    _host, source, target = served
    source.set("ok", 3001)
    async with grpc.aio.insecure_channel(target) as ch, DeltaAdsClient(ch, Node("n5"), token=TOKEN) as client:
        await client.subscribe(CLUSTER, ["Not_A_VIP", "x" * 300])
        await client.subscribe(CLUSTER, ["ok"])
        await client.wait_for(CLUSTER, "ok")
        assert all("Not_A_VIP" not in asked for asked in source.asked)
        assert client.violations == []


async def test_streams_are_refused_until_loaded_and_beyond_the_rate(served: Any) -> None:
    host, _source, target = served
    host.ready.clear()
    async with grpc.aio.insecure_channel(target) as ch:
        client = DeltaAdsClient(ch, Node("early"), token=TOKEN)
        with pytest.raises(Unavailable):
            await client.connect()
            await client.subscribe(CLUSTER, ["x"])
            await client.wait_for(CLUSTER, "x", timeout=5)
        await client.close()
    assert host.counters.refused_not_ready >= 1
    host.ready.set()
    codes = []
    async with grpc.aio.insecure_channel(target) as ch:
        from meshactors.envoy.codec import delta_ads_stream
        from meshactors.xds.types import DeltaRequest

        async def one() -> grpc.StatusCode:
            call = delta_ads_stream(ch)(iter([DeltaRequest(type_url=CLUSTER, node=Node("burst"))]), metadata=AUTH)
            try:
                async for _ in call:
                    break
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            finally:
                call.cancel()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(one() for _ in range(120)))
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert host.counters.refused_rate >= 1


async def test_a_failed_fetch_is_retried(served: Any) -> None:
    _host, source, target = served
    source.set("flaky", 4001)
    source.fail = True
    async with grpc.aio.insecure_channel(target) as ch, DeltaAdsClient(ch, Node("n6"), token=TOKEN) as client:
        await client.subscribe(CLUSTER, ["flaky"])
        await client.wait_for(CLUSTER, "flaky")  # the Cluster needs no fetch: it is answered at once
        await client.subscribe(ENDPOINT, ["flaky"])
        await asyncio.sleep(0.2)
        assert client.resources(ENDPOINT) == {}  # the endpoints wait for the fetch that failed
        source.fail = False
        cla = await client.wait_for(ENDPOINT, "flaky", timeout=5)
        assert _cla_ports(cla.body) == {4001}
        assert len(source.asked) >= 2
        assert client.violations == []


# --- any type URL, any source: the host serves what its sources give it -----------------------------------

THING = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"  # a type no meshactors source serves


class ThingSource:
    """A fake source for a new type URL: each name is its own key, its body a ScopedRouteConfiguration."""

    name = "things"
    type_urls = (THING,)

    def __init__(self) -> None:
        self.route_of: dict[str, str] = {}
        self.fetched: list[list[str]] = []

    def snapshot(self, key: str) -> Snapshot:
        from envoy.config.route.v3 import scoped_route_pb2

        from meshactors.resources.types import VersionedResource

        body = scoped_route_pb2.ScopedRouteConfiguration(name=key, route_configuration_name=self.route_of[key])
        return Snapshot.of(key, [VersionedResource.of(THING, key, body.SerializeToString())])

    companion_types: dict[str, str] = {}
    pushed_types: dict[str, str] = {}

    def pushed_refs(self, resource: Any) -> tuple[tuple[str, str], ...]:
        return ()

    def validate(self, type_url: str, name: str) -> str | None:
        return None if name.startswith("thing-") else "not a thing"

    def companions(self, type_url: str, name: str) -> tuple[tuple[str, str], ...]:
        return ()

    def key_of(self, type_url: str, name: str) -> str:
        return name

    def provisional(self, key: str) -> Snapshot | None:
        return None

    def resolve(self, snapshot: Snapshot, type_url: str, name: str, kind: str) -> Any:
        return snapshot.get(type_url, name, kind)

    def derived_names(self, snapshot: Snapshot, type_url: str) -> list[str]:
        return []

    def forget(self, key: str) -> None:
        return None

    def observe(self, snapshot: Snapshot) -> None:
        return None

    async def fetch(self, keys: list[str]) -> list[Snapshot]:
        self.fetched.append(list(keys))
        return [self.snapshot(k) for k in keys if k in self.route_of]

    async def release(self, keys: list[str]) -> None:
        return None


def _route_name(body: bytes | None) -> str:
    from envoy.config.route.v3 import scoped_route_pb2

    return scoped_route_pb2.ScopedRouteConfiguration.FromString(body or b"").route_configuration_name


@pytest.fixture
async def served_things() -> AsyncIterator[tuple[XdsHost, ThingSource, ScriptedSource, str]]:
    things, vips = ThingSource(), ScriptedSource()
    host = XdsHost("thing-host", [VipSource(vips), things], authenticate=TOKENS)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((host.generic_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    host.ready.set()
    try:
        yield host, things, vips, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_a_source_for_a_new_type_url_is_served_over_delta_and_sotw(served_things: Any) -> None:
    host, things, vips, target = served_things
    things.route_of["thing-a"] = "rc-1"
    vips.set("shop", 9300)
    async with grpc.aio.insecure_channel(target) as ch, DeltaAdsClient(ch, Node("d-thing"), token=TOKEN) as delta:
        await delta.subscribe(THING, ["thing-a"])
        got = await delta.wait_for(THING, "thing-a")
        assert _route_name(got.body) == "rc-1"
        await delta.subscribe(CLUSTER, ["shop"])  # the VIP source still serves its types beside it
        await delta.wait_for(CLUSTER, "shop")
        things.route_of["thing-a"] = "rc-2"
        host.apply("things", [things.snapshot("thing-a")])  # a push from the new source
        await delta.wait_for(THING, "thing-a", lambda r: _route_name(r.body) == "rc-2")
        assert delta.violations == []
    async with grpc.aio.insecure_channel(target) as ch, SotwAdsClient(ch, Node("s-thing"), token=TOKEN) as sotw:
        await sotw.subscribe(THING, ["thing-a"])
        got = await sotw.wait_for(THING, "thing-a")
        assert _route_name(got.body) == "rc-2"
        await sotw.expect_silence(0.3)
        assert sotw.violations == []
    assert things.fetched == [["thing-a"]]  # fetched once, then held and pushed


class _BrokenTransport:
    """A VipSource transport whose fetch fails in a way no source should (a bug) or never answers."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = 0

    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("a bug in the source")
        await asyncio.Event().wait()  # hangs
        return []

    async def unsubscribe(self, vips: list[str]) -> None:
        return None


@pytest.mark.parametrize("mode", ["raise", "hang"])
async def test_a_fetch_failing_in_any_way_resolves_every_waiter_within_the_fetch_timeout(mode: str) -> None:
    transport = _BrokenTransport(mode)
    host = XdsHost(
        "broken-host", [VipSource(transport)], HostSettings(fetch_timeout_s=0.5, fetch_retry_s=60), authenticate=TOKENS
    )
    held = (VIP_SOURCE, "shop")
    loop = asyncio.get_running_loop()
    started = loop.time()
    # three concurrent waiters on one key share one fetch; all of them come back
    await asyncio.wait_for(asyncio.gather(*(host._fetch([held]) for _ in range(3))), timeout=2.0)
    assert loop.time() - started < 1.5
    assert host.counters.fetch_failures == transport.calls
    if mode == "hang":
        assert transport.calls == 1  # the waiters shared the one fetch in flight
    assert held not in host._inflight and held not in host.cache


async def test_an_unexpected_error_in_a_stream_ends_that_stream_with_internal(served_things: Any) -> None:
    host, things, _vips, target = served_things

    def explode(type_url: str, name: str) -> str | None:
        raise RuntimeError("a bug in validation")

    things.validate = explode  # type: ignore[method-assign]
    from meshactors.envoy.codec import delta_ads_stream
    from meshactors.xds.types import DeltaRequest

    async with grpc.aio.insecure_channel(target) as ch:
        boom = DeltaRequest(type_url=THING, node=Node("boom"), subscribe=("thing-x",))
        call = delta_ads_stream(ch)(iter([boom]), metadata=AUTH)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert host.counters.stream_errors == 1
    # the host goes on serving other streams
    things.validate = ThingSource.validate.__get__(things)  # type: ignore[method-assign]
    things.route_of["thing-b"] = "rc-b"
    async with grpc.aio.insecure_channel(target) as ch, DeltaAdsClient(ch, Node("after"), token=TOKEN) as delta:
        await delta.subscribe(THING, ["thing-b"])
        assert _route_name((await delta.wait_for(THING, "thing-b")).body) == "rc-b"


async def test_each_client_kind_gets_its_own_variant_over_a_real_stream(served_things: Any) -> None:
    host, things, _vips, target = served_things
    from envoy.config.route.v3 import scoped_route_pb2

    from meshactors.resources.types import GRPC_KIND, VersionedResource

    def body(route: str) -> bytes:
        return scoped_route_pb2.ScopedRouteConfiguration(
            name="thing-v", route_configuration_name=route
        ).SerializeToString()

    snap = Snapshot.of(
        "thing-v",
        [VersionedResource.of(THING, "thing-v", body("for-all")),
         VersionedResource.of(THING, "thing-v", body("for-grpc"), variant=GRPC_KIND)],
    )  # fmt: skip
    things.route_of["thing-v"] = "unused"
    things.snapshot = lambda key: snap  # type: ignore[method-assign]
    async with grpc.aio.insecure_channel(target) as ch:
        async with DeltaAdsClient(ch, Node("an-envoy", user_agent_name="envoy"), token=TOKEN) as envoy_client:
            await envoy_client.subscribe(THING, ["thing-v"])
            assert _route_name((await envoy_client.wait_for(THING, "thing-v")).body) == "for-all"
        async with SotwAdsClient(ch, Node("a-grpc-client", user_agent_name="gRPC C-core"), token=TOKEN) as grpc_client:
            await grpc_client.subscribe(THING, ["thing-v"])
            assert _route_name((await grpc_client.wait_for(THING, "thing-v")).body) == "for-grpc"
            kinds = {s.node_id: s.client_kind for s in host.statistics().streams}
            assert kinds["a-grpc-client"] == GRPC_KIND


# ---- hostile clients (issue 11): undecodable bytes, stream bounds, log amplification ---------------------------


async def _queued(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while (item := await queue.get()) is not None:
        yield item


async def _final_error(call: Any) -> grpc.aio.AioRpcError | None:
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as exc:
        return exc
    return None


@pytest.mark.parametrize("method", ["delta", "sotw"])
async def test_undecodable_bytes_end_the_stream_with_invalid_argument(served: Any, method: str) -> None:
    from meshactors.envoy.codec import DELTA_ADS_METHOD, SOTW_ADS_METHOD, encode_delta_request, encode_sotw_request
    from meshactors.xds.types import DeltaRequest, SotwRequest

    host, source, target = served
    source.set("ok", 3101)
    if method == "delta":
        path, first = DELTA_ADS_METHOD, encode_delta_request(DeltaRequest(type_url=CLUSTER, node=Node("junk-1")))
    else:
        path, first = SOTW_ADS_METHOD, encode_sotw_request(SotwRequest(type_url=CLUSTER, node=Node("junk-1")))
    async with grpc.aio.insecure_channel(target) as ch:
        raw = ch.stream_stream(path, request_serializer=None, response_deserializer=None)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for item in (first, b"\xff\xff\xff\xff not a protobuf message"):
            queue.put_nowait(item)  # the stream stays open: only the junk can end it
        err = await asyncio.wait_for(_final_error(raw(_queued(queue), metadata=AUTH)), 10)
    assert err is not None, "the stream must not end with OK"
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert (err.details() or "").startswith("request: not a valid envoy.service.discovery.v3."), err.details()
    assert host.counters.stream_errors == 0, "undecodable input is the client's fault, not a bug of the host"


async def test_type_urls_over_the_bound_end_a_sotw_stream_visibly(served: Any) -> None:
    from meshactors.envoy.codec import sotw_ads_stream
    from meshactors.xds.types import SotwRequest

    host, source, target = served
    source.set("ok", 3102)
    bound = host.settings.limits.max_type_urls
    queue: asyncio.Queue[SotwRequest | None] = asyncio.Queue()
    queue.put_nowait(SotwRequest(type_url="type.googleapis.com/junk.T0", node=Node("junk-types")))
    for i in range(1, bound):
        queue.put_nowait(SotwRequest(type_url=f"type.googleapis.com/junk.T{i}"))
    queue.put_nowait(SotwRequest(type_url=CLUSTER, resource_names=("ok",)))
    async with grpc.aio.insecure_channel(target) as ch:
        err = await asyncio.wait_for(_final_error(sotw_ads_stream(ch)(_queued(queue), metadata=AUTH)), 10)
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert f"limit {bound}" in (err.details() or "") and CLUSTER in (err.details() or ""), err.details()


async def test_what_a_hostile_client_sends_is_logged_and_kept_bounded(served: Any) -> None:
    import json

    from structlog.testing import capture_logs

    from meshactors.envoy.codec import delta_ads_stream
    from meshactors.xds.types import DeltaRequest, ErrorDetail

    host, source, target = served
    source.set("ok", 3103)
    huge_id = "n" * 1_000_000
    bad_names = tuple(f"Bad_{i}_" + "x" * 130 for i in range(5_000))  # ~730 KB of names no VIP source serves
    sent = len(huge_id) + 40 * sum(map(len, bad_names)) + 40 * 1_000_000
    with capture_logs() as logs:
        async with grpc.aio.insecure_channel(target) as ch:
            queue: asyncio.Queue[DeltaRequest | None] = asyncio.Queue()
            call = delta_ads_stream(ch)(_queued(queue), metadata=AUTH)
            queue.put_nowait(DeltaRequest(type_url=CLUSTER, node=Node(huge_id), subscribe=("ok",)))
            first = await asyncio.wait_for(call.read(), 10)
            stats = host.statistics().streams[0]
            assert len(stats.node_id) <= 300, "a node id is kept bounded (256 characters and a marker)"
            for _ in range(40):
                queue.put_nowait(DeltaRequest(type_url=CLUSTER, subscribe=bad_names))
                queue.put_nowait(DeltaRequest(type_url=CLUSTER, response_nonce=first.nonce,
                                              error_detail=ErrorDetail(13, "e" * 1_000_000)))  # fmt: skip
            queue.put_nowait(DeltaRequest(type_url=CLUSTER, subscribe=("ok",)))

            async def drain() -> None:  # the server answers refused names as removed: read what it writes
                while await call.read() is not grpc.aio.EOF:
                    pass

            reader = asyncio.create_task(drain())
            deadline = asyncio.get_running_loop().time() + 30
            while host.counters.names_refused < 40 * len(bad_names):  # every hostile request handled
                assert asyncio.get_running_loop().time() < deadline, host.counters
                await asyncio.sleep(0.05)
            queue.put_nowait(None)
            await asyncio.wait_for(reader, 10)
    size = sum(len(json.dumps(e, default=str)) for e in logs)
    assert size < 64 * 1024, f"{size} bytes of logs for {sent} bytes sent"
    refused = [e for e in logs if e["event"] == "subscriptions refused"]
    assert refused and refused[0]["count"] == len(bad_names) and len(refused[0]["names"]) <= 5
    assert len(logs) <= 30, [e["event"] for e in logs]
    assert any(e.get("suppressed") for e in logs) or len(refused) + sum(e["event"] == "NACK" for e in logs) <= 25


# ---- authentication (issue 11): nothing is fetched, held or sent before a stream is authenticated -------------


async def test_an_unauthenticated_stream_holds_nothing_and_fetches_nothing(served: Any) -> None:
    from meshactors.envoy.codec import delta_ads_stream
    from meshactors.xds.types import DeltaRequest

    host, source, target = served
    source.set("secret-vip", 3201)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    queue.put_nowait(DeltaRequest(type_url=ENDPOINT, node=Node("anon"), subscribe=("secret-vip",)))
    async with grpc.aio.insecure_channel(target) as ch:
        err = await asyncio.wait_for(_final_error(delta_ads_stream(ch)(_queued(queue))), 10)
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    assert source.asked == [] and len(host.cache) == 0
    stats = host.statistics()
    assert stats.sessions == 0 and stats.refused_unauthenticated == 1 and host._by_token == {}


async def test_revoking_a_token_ends_only_its_streams_and_forgets_them(served: Any) -> None:
    host, source, target = served
    source.set("shop", 3202)
    token, record = TOKENS.mint()
    TOKENS.on_revoked = host.revoke
    try:
        async with (
            grpc.aio.insecure_channel(target) as ch,
            DeltaAdsClient(ch, Node("doomed-1"), token=token) as d1,
            SotwAdsClient(ch, Node("doomed-2", token=token)) as d2,
            DeltaAdsClient(ch, Node("other"), token=TOKEN) as other,
        ):
            for c in (d1, d2, other):
                await c.subscribe(CLUSTER, ["shop"])
                await c.wait_for(CLUSTER, "shop")
            assert len(host._by_token[record.id]) == 2
            TOKENS.revoke(record.id)
            assert await d1.wait_ended(timeout=5) == grpc.StatusCode.UNAUTHENTICATED
            assert await d2.wait_ended(timeout=5) == grpc.StatusCode.UNAUTHENTICATED
            assert record.id not in host._by_token
            assert {s.node_id for s in host.statistics().streams} == {"other"}
            assert host.counters.ended_revoked == 2
            await other.subscribe(ENDPOINT, ["shop"])
            await other.wait_for(ENDPOINT, "shop")  # the other token's stream goes on
    finally:
        TOKENS.on_revoked = None


async def _until_true(predicate: Any, what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_convergence_is_one_sample_from_the_change_to_the_last_ack_of_every_holder(served: Any) -> None:
    host, source, target = served
    source.set("conv", 3001)
    async with (
        grpc.aio.insecure_channel(target) as ch,
        DeltaAdsClient(ch, Node("d1"), token=TOKEN) as delta,
        SotwAdsClient(ch, Node("s1"), token=TOKEN) as sotw,
    ):
        for client in (delta, sotw):
            await client.subscribe(CLUSTER, ["conv"])
            await client.wait_for(CLUSTER, "conv")
            await client.subscribe(ENDPOINT, ["conv"])
            await client.wait_for(ENDPOINT, "conv")
        fetches = host.fetch_time.count
        assert fetches == 1  # the first request's on-demand fetch, shared by both
        assert host.converging.histogram.count == 0  # a fetch answer is no change
        changed_at = time.time() - 0.25  # as if the builder saw the change 250 ms ago
        host.apply(VIP_SOURCE, [source.set("conv", 3001, 3002).stamped(changed_at)])
        for client in (delta, sotw):
            await client.wait_for(ENDPOINT, "conv", lambda r: _cla_ports(r.body) == {3001, 3002})
        await _until_true(lambda: host.converging.histogram.count == 1, "one convergence sample")
        data = host.statistics().convergence_time
        assert data is not None and 0.25 <= data.sum < 5.0
        assert host.statistics().converging == 0 and host.statistics().fetch_time.count == fetches  # type: ignore[union-attr]


async def test_a_nacked_change_never_converges_and_is_abandoned_when_its_session_goes(served: Any) -> None:
    host, source, target = served
    source.set("bad", 4001)

    def nack(resp: Any) -> str | None:
        bad = resp.type_url == ENDPOINT and any(_cla_ports(r.body) == {4001, 4002} for r in resp.resources)
        return "rejected by test" if bad else None

    async with grpc.aio.insecure_channel(target) as ch:
        client = DeltaAdsClient(ch, Node("nk"), token=TOKEN, nack_when=nack)
        async with client:
            await client.subscribe(CLUSTER, ["bad"])
            await client.subscribe(ENDPOINT, ["bad"])
            await client.wait_for(ENDPOINT, "bad")
            host.apply(VIP_SOURCE, [source.set("bad", 4001, 4002).stamped(time.time())])
            await _until_true(lambda: host.counters.nacks == 1, "the NACK")
            assert len(host.converging) == 1 and host.converging.histogram.count == 0
        await _until_true(lambda: host.statistics().sessions == 0, "the session to close")
        assert len(host.converging) == 0 and host.converging.abandoned == 1
        assert host.converging.histogram.count == 0


async def test_a_burst_of_changes_fans_out_once_to_every_session_in_order(served: Any) -> None:
    """Changes applied back to back reach every holder from one fan-out: each session is sent the latest version
    once (they coalesce), in order after what it was sent before, and every session's books end in sync."""
    host, source, target = served
    source.set("fan", 4000)
    async with grpc.aio.insecure_channel(target) as ch:
        clients = [DeltaAdsClient(ch, Node(f"f{i}"), token=TOKEN) for i in range(20)]
        sotw = SotwAdsClient(ch, Node("fs"), token=TOKEN)
        for client in [*clients, sotw]:
            await client.connect()
        try:
            for client in [*clients, sotw]:
                await client.subscribe(CLUSTER, ["fan"])
                await client.wait_for(CLUSTER, "fan")
                await client.subscribe(ENDPOINT, ["fan"])
                await client.wait_for(ENDPOINT, "fan")
            before = [len(c.responses) for c in clients]
            for port in range(4001, 4006):  # no await in between: one fan-out computes the last of them
                host.apply(VIP_SOURCE, [source.set("fan", 4000, port)])
            for client in [*clients, sotw]:
                await client.wait_for(ENDPOINT, "fan", lambda r: _cla_ports(r.body) == {4000, 4005})
            await sotw.expect_silence(0.2)
            for client, n in zip(clients, before, strict=True):
                assert [r.type_url for r in client.responses[n:]] == [ENDPOINT]
                assert client.violations == []
            assert sotw.violations == []
            await _until_true(lambda: host.convergence().lagging == (), "every session ACKed the last version")
            assert host.counters.stream_errors == 0
        finally:
            for client in [*clients, sotw]:
                await client.close()
