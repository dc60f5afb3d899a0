"""A VIP's traffic policy in its snapshot: variants per client kind, per-version clusters, derived listeners."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from meshactors.model import Instance
from meshactors.policy.load import load
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import CLUSTER, ENDPOINT, ENVOY_KIND, GRPC_KIND, LISTENER, ROUTE, VIRTUAL_HOST
from meshactors.snapshot.builder import build_vip
from meshactors.snapshot.source import VipSource, from_builders, validate_name, vip_of

FLEET = [
    Instance(app="reviews", instance_id="a", host="10.0.0.1", vip="reviews", port=80, version_label="v1"),
    Instance(app="reviews", instance_id="b", host="10.0.0.2", vip="reviews", port=80, version_label="v2"),
]
POLICY = load(
    """
vip: reviews
destination:
  loadBalancer: LEAST_REQUEST
  circuitBreaker: {maxConnections: 7, maxRequests: 9}
routing:
  split: [{version: v1, weight: 90}, {version: v2, weight: 10}]
  faults: {abort: {httpStatus: 503, percent: 50}}
"""
)[0]


class _NoTransport:
    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        return []

    async def unsubscribe(self, vips: list[str]) -> None:
        return None


def _cluster(snap: Snapshot, name: str, kind: str) -> cluster_pb2.Cluster:
    res = snap.get(CLUSTER, name, kind)
    assert res is not None, (name, kind)
    return cluster_pb2.Cluster.FromString(res.body or b"")


def test_no_policy_keeps_todays_three_resources() -> None:
    assert build_vip("reviews", FLEET) == build_vip("reviews", FLEET, None)
    assert len(build_vip("reviews", FLEET).resources) == 3


def test_destination_policy_reaches_envoy_and_grpc_gets_its_subset() -> None:
    snap = build_vip("reviews", FLEET, POLICY)
    assert snap.consistent() == []
    envoy = _cluster(snap, "reviews", ENVOY_KIND)
    assert envoy.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert envoy.circuit_breakers.thresholds[0].max_connections.value == 7
    grpc = _cluster(snap, "reviews", GRPC_KIND)
    assert grpc.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN  # gRPC C-core NACKs LEAST_REQUEST
    assert grpc.circuit_breakers.thresholds[0].max_requests.value == 9
    assert not grpc.circuit_breakers.thresholds[0].HasField("max_connections")
    fields = dict(snap.notes)
    assert "grpc: destination.loadBalancer" in fields
    assert "routing" not in fields  # routes reach Envoy over VHDS now
    vhost = snap.get(VIRTUAL_HOST, "meshactors_outbound/reviews")
    assert vhost is not None and snap.get(VIRTUAL_HOST, "meshactors_outbound/reviews", GRPC_KIND) is vhost
    assert b"reviews~v1" in (vhost.body or b"")


def test_split_adds_version_clusters_with_their_own_endpoints() -> None:
    snap = build_vip("reviews", FLEET, POLICY)
    for version, host in (("v1", "10.0.0.1"), ("v2", "10.0.0.2")):
        name = f"reviews~{version}"
        assert snap.get(CLUSTER, name, GRPC_KIND) is not None and snap.get(CLUSTER, name) is not None
        cla = snap.get(ENDPOINT, name)
        assert cla is not None and host.encode() in (cla.body or b"")
    listener = snap.get(LISTENER, "reviews", GRPC_KIND)
    assert listener is not None and listener.variant == GRPC_KIND
    assert b"reviews~v1" in (listener.body or b"") and b"envoy.filters.http.fault" in (listener.body or b"")


def test_version_cluster_names_belong_to_their_vip() -> None:
    assert vip_of(CLUSTER, "reviews~v2") == "reviews" and vip_of(ENDPOINT, "reviews~v2") == "reviews"
    assert validate_name(CLUSTER, "reviews~v2") is None
    assert "version cluster" in (validate_name(CLUSTER, "reviews~bad/label") or "")
    assert "not a VIP name" in (validate_name(CLUSTER, "Bad~v1") or "")


def test_a_grpc_client_asking_for_vip_port_gets_the_policy_routes_under_its_name() -> None:
    snap = build_vip("reviews", FLEET, POLICY)
    source = VipSource(_NoTransport())
    derived = source.resolve(snap, LISTENER, "reviews:9000", GRPC_KIND)
    assert derived is not None and derived.name == "reviews:9000" and derived.variant == GRPC_KIND
    lst = listener_pb2.Listener.FromString(derived.body or b"")
    manager = hcm_pb2.HttpConnectionManager()
    lst.api_listener.api_listener.Unpack(manager)
    assert lst.name == "reviews:9000" and manager.route_config.name == "reviews:9000"
    clusters = {
        w.name for r in manager.route_config.virtual_hosts[0].routes for w in r.route.weighted_clusters.clusters
    }
    assert clusters == {"reviews~v1", "reviews~v2"}
    assert source.resolve(snap, LISTENER, "reviews:9000", GRPC_KIND) is derived  # built once per version
    plain = source.resolve(snap, LISTENER, "reviews:9000", ENVOY_KIND)
    assert plain is not None and plain.variant == "" and b"reviews~v1" not in (plain.body or b"")
    assert source.derived_names(snap, LISTENER) == ["reviews:9000"]


def test_the_vip_source_serves_the_route_table_and_brings_a_vips_virtual_host_with_its_cluster() -> None:
    source = VipSource(_NoTransport())
    assert source.validate(ROUTE, "meshactors_outbound") is None
    assert "only route config" in (source.validate(ROUTE, "other") or "")
    assert "virtual host is" in (source.validate(VIRTUAL_HOST, "reviews") or "")
    assert "not a VIP name" in (source.validate(VIRTUAL_HOST, "meshactors_outbound/Bad_Name") or "")
    assert source.key_of(VIRTUAL_HOST, "meshactors_outbound/reviews") == "reviews"
    routes = source.provisional(source.key_of(ROUTE, "meshactors_outbound"))
    assert routes is not None and routes.get(ROUTE, "meshactors_outbound") is not None
    assert source.statistics().vip_keys_held == 0  # the route table is no VIP
    assert source.companions(CLUSTER, "reviews") == ((VIRTUAL_HOST, "meshactors_outbound/reviews"),)
    assert source.companions(CLUSTER, "reviews~v1") == () and source.companions(ENDPOINT, "reviews") == ()
    # the route table never goes to (or comes from) a builder: one would build it as an unknown VIP
    assert not from_builders(source.key_of(ROUTE, "meshactors_outbound")) and from_builders("reviews")
