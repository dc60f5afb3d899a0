"""Idle bookkeeping (meshactors.xds.idle) with an injected clock, and cluster generations as the VIP source names,
validates and builds them (meshactors.snapshot.source, meshactors.envoy.resources)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2

from meshactors.envoy import policy as compiler
from meshactors.model import Instance
from meshactors.resources.types import CLUSTER, MAX_GENERATIONS, VIRTUAL_HOST, generation_name, split_generation
from meshactors.snapshot.builder import build_vip
from meshactors.snapshot.source import VipSource, validate_name, vip_of
from meshactors.telemetry.golden import CLUSTER_LABEL, MetricsReport, Sample
from meshactors.xds.idle import ActivityRelay, IdleBook
from meshactors.xds.metrics_sink import outbound_aborts, used_vips
from tests.unit.test_policy_compile import policy_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- IdleBook -------------------------------------------------------------------------------------------------


def test_a_vip_is_idle_after_the_idle_time_of_continuous_reports_without_requests() -> None:
    clock = Clock()
    book = IdleBook(idle_s=60, max_gap_s=15, clock=clock)
    assert book.idle({"a", "b"}) == []  # no report yet: no evidence
    for _ in range(4):
        book.report({"b"})
        clock.now += 10
    book.report({"b"})
    assert book.idle({"a", "b"}) == []  # "a" first seen held 40 s ago
    for _ in range(2):
        clock.now += 10
        book.report(())
    assert book.idle({"a", "b"}) == ["a"]  # 60 s since "a" was first seen held; "b" used 20 s ago


def test_a_gap_in_the_reports_restarts_the_evidence() -> None:
    clock = Clock()
    book = IdleBook(idle_s=60, max_gap_s=15, clock=clock)
    book.report(())
    book.idle({"a"})
    clock.now += 50
    book.report(())  # 50 s of silence: the run starts again here
    clock.now += 10
    book.report(())
    assert book.idle({"a"}) == []
    clock.now += 20  # the reports stopped: no evidence now
    assert book.idle({"a"}) == []
    book.report(())
    for _ in range(6):
        clock.now += 10
        book.report(())
    assert book.idle({"a"}) == ["a"]


def test_forgotten_vips_start_again_and_unheld_ones_are_dropped() -> None:
    clock = Clock()
    book = IdleBook(idle_s=10, max_gap_s=5, clock=clock)
    book.report(())
    book.idle({"a", "b"})
    for _ in range(3):
        clock.now += 4
        book.report(())
    assert book.idle({"a", "b"}) == ["a", "b"]
    book.forget("a")
    assert book.idle({"a"}) == [] and book.tracked == 1  # "b" no longer held: dropped


def test_used_vips_are_the_clusters_whose_counters_moved() -> None:
    report = MetricsReport(
        node=None,
        samples=(
            Sample("cluster.upstream_rq_total", ((CLUSTER_LABEL, "a"),), 3),
            Sample("cluster.upstream_rq_total", ((CLUSTER_LABEL, "b"),), 0),
            Sample("cluster.upstream_rq_total", ((CLUSTER_LABEL, "c~v1"),), 1),
            Sample("cluster.upstream_rq_time", ((CLUSTER_LABEL, "dotted_vip"),), 2, histogram=True),
            Sample("server.uptime", (), 5),
        ),
    )
    assert used_vips(report) == {"a", "c", "dotted.vip"}


# --- generation names -----------------------------------------------------------------------------------------


def test_generation_names_round_trip_and_malformed_ones_are_refused() -> None:
    assert generation_name("a", 0) == "a" and generation_name("a~v1", 2) == "a~v1@2"
    assert split_generation("a~v1@2") == ("a~v1", 2) and split_generation("a") == ("a", 0)
    for bad in ("a@", "a@0", "a@01", "a@x", f"a@{MAX_GENERATIONS + 1}"):
        assert split_generation(bad)[1] == -1
        assert validate_name(CLUSTER, bad) is not None
    assert validate_name(CLUSTER, "reviews~v1@3") is None
    assert vip_of(CLUSTER, "reviews~v1@3") == "reviews" and vip_of(CLUSTER, "reviews@3") == "reviews"


def test_a_generation_of_a_cluster_keeps_the_vips_assignment_and_stats() -> None:
    inst = Instance(app="a", instance_id="i1", host="127.0.0.1", vip="my.vip", port=80)
    snap = build_vip("my.vip", [inst])
    source = VipSource(transport=None)  # type: ignore[arg-type]  # resolve never talks to the builders
    renamed = source.resolve(snap, CLUSTER, "my.vip@2", "")
    assert renamed is not None and renamed.name == "my.vip@2"
    cluster = cluster_pb2.Cluster.FromString(renamed.body or b"")
    base = cluster_pb2.Cluster.FromString(snap.get(CLUSTER, "my.vip").body or b"")
    assert cluster.name == "my.vip@2" and cluster.eds_cluster_config.service_name == "my.vip"
    assert cluster.alt_stat_name == base.alt_stat_name == "my_vip"
    assert source.resolve(snap, CLUSTER, "my.vip@2", "") is renamed  # cached per version
    assert "my.vip@2" in source.derived_names(snap, CLUSTER)


def test_a_generation_virtual_host_routes_every_cluster_of_the_vip_to_the_generation() -> None:
    source = VipSource(transport=None)  # type: ignore[arg-type]
    plain = source.generation_resource(VIRTUAL_HOST, "meshactors_outbound/a", None, 1)
    assert plain is not None
    vhost = route_pb2.VirtualHost.FromString(plain.body or b"")
    assert list(vhost.domains) == ["a", "a:*"] and vhost.routes[0].route.cluster == "a@1"

    split = next(r for r in compiler.compile_envoy(policy_of("split")).resources if r.type_url == VIRTUAL_HOST)
    again = source.generation_resource(VIRTUAL_HOST, split.name, split, 3)
    assert again is not None and again.version != split.version
    routes = route_pb2.VirtualHost.FromString(again.body or b"").routes
    named = {c.name for r in routes for c in r.route.weighted_clusters.clusters} | {
        r.route.cluster for r in routes if r.route.cluster
    }
    assert named and all(n.startswith("reviews") and n.endswith("@3") for n in named), named
    assert all(ref[1].endswith("@3") for ref in again.refs if ref[0] == CLUSTER)
    assert source.generation_resource(VIRTUAL_HOST, split.name, split, 0) is split


def test_a_generation_virtual_host_leaves_a_mirror_to_another_vip_as_it_is() -> None:
    source = VipSource(transport=None)  # type: ignore[arg-type]
    mirrored = next(r for r in compiler.compile_envoy(policy_of("mirror")).resources if r.type_url == VIRTUAL_HOST)
    again = source.generation_resource(VIRTUAL_HOST, mirrored.name, mirrored, 1)
    assert again is not None
    before = route_pb2.VirtualHost.FromString(mirrored.body or b"").routes
    after = route_pb2.VirtualHost.FromString(again.body or b"").routes
    mirrors = [m.cluster for r in before for m in r.route.request_mirror_policies]
    assert mirrors and mirrors == [m.cluster for r in after for m in r.route.request_mirror_policies]
    assert set(mirrors) == {"reviews-shadow"}  # another VIP: its own cluster, pushed on the wildcard channel
    assert [r.route.cluster for r in after] == [generation_name(r.route.cluster, 1) for r in before]


def test_the_relay_batches_reports_per_node_and_stays_bounded() -> None:
    relay = ActivityRelay(max_nodes=2)
    relay.offer("n1", {"a"}, 2)
    relay.offer("n1", {"b"}, 1)
    relay.offer("n2", ())  # a report with no request: still evidence
    relay.offer("n3", {"c"})  # past the bound of this batch
    assert relay.take() == {"n1": (("a", "b"), 3), "n2": ((), 0)}
    assert (relay.relayed, relay.dropped) == (3, 1)
    assert relay.take() == {}
    relay.offer("n3", {"c"})
    assert relay.take() == {"n3": (("c",), 0)}


def test_outbound_aborts_count_the_outbound_listeners_fault_aborts_only() -> None:
    report = MetricsReport(
        node=None,
        samples=(
            Sample("http.fault.aborts_injected", (("envoy.http_conn_manager_prefix", "outbound"),), 4),
            Sample("http.fault.aborts_injected", (("envoy.http_conn_manager_prefix", "inbound"),), 9),
            Sample("http.outbound.fault.aborts_injected", (), 1),
        ),
    )
    assert outbound_aborts(report) == 5
