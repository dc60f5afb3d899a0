"""Locality failover delivered per caller zone: the node's zone (codec, bootstrap), the builder's per-zone
assignment variants, the session view's choice of variant, and the chaos oracle expecting the same one."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2

from meshactors.chaos.oracle import Expected, lagging
from meshactors.envoy import codec
from meshactors.envoy.bootstrap import envoy_bootstrap
from meshactors.errors import ConfigError
from meshactors.model import Instance, InstanceRef
from meshactors.policy.load import load
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import (
    DEFAULT_KIND,
    ENDPOINT,
    ENVOY_KIND,
    GRPC_KIND,
    VersionedResource,
    zone_variant,
)
from meshactors.snapshot.builder import MAX_FAILOVER_ZONES, build_vip
from meshactors.snapshot.source import VIP_SOURCE, VipSource
from meshactors.store.feed import Registered
from meshactors.xds.cache import KindView, SnapshotCache
from meshactors.xds.delta import DeltaStream
from meshactors.xds.types import CLUSTER, MAX_ZONE_CHARS, DeltaRequest, Node

FAILOVER = load("vip: reviews\ndestination: {localityFailover: true}\n")[0]
SPLIT_FAILOVER = load(
    "vip: reviews\ndestination: {localityFailover: true}\n"
    "routing: {split: [{version: v1, weight: 50}, {version: v2, weight: 50}]}\n"
)[0]
FLEET = [
    Instance(app="reviews", instance_id="a1", host="10.0.0.1", vip="reviews", port=80, zone="z1", version_label="v1"),
    Instance(app="reviews", instance_id="a2", host="10.0.0.2", vip="reviews", port=80, zone="z1", version_label="v2"),
    Instance(app="reviews", instance_id="b1", host="10.0.1.1", vip="reviews", port=80, zone="z2", version_label="v1"),
]


def _variant(snap: Snapshot, variant: str) -> VersionedResource:
    res = snap.get(ENDPOINT, "reviews", variant)
    assert res is not None
    return res


def _priorities(snap: Snapshot, name: str, variant: str = DEFAULT_KIND) -> dict[str, int]:
    res = snap.get(ENDPOINT, name, variant)
    assert res is not None
    cla = endpoint_pb2.ClusterLoadAssignment.FromString(res.body or b"")
    return {loc.locality.zone: loc.priority for loc in cla.endpoints}


# --- the builder ------------------------------------------------------------------------------------------


def test_failover_builds_a_variant_per_zone_beside_the_default() -> None:
    snap = build_vip("reviews", FLEET, FAILOVER)
    assert _priorities(snap, "reviews") == {"z1": 0, "z2": 0}  # the default: no zone preferred
    assert _priorities(snap, "reviews", zone_variant("z1")) == {"z1": 0, "z2": 1}
    assert _priorities(snap, "reviews", zone_variant("z2")) == {"z1": 1, "z2": 0}
    assert _variant(snap, zone_variant("z1")).variant == zone_variant("z1")
    assert "destination.localityFailover" not in dict(snap.notes)  # delivered: nothing to report
    assert snap.consistent() == []


def test_version_clusters_get_zone_variants_only_where_they_differ() -> None:
    snap = build_vip("reviews", FLEET, SPLIT_FAILOVER)
    assert _priorities(snap, "reviews~v1", zone_variant("z1")) == {"z1": 0, "z2": 1}
    assert _priorities(snap, "reviews~v1", zone_variant("z2")) == {"z1": 1, "z2": 0}
    # v2 lives in z1 only: preferring either zone gives the default bytes, so no variant is kept
    variants = {r.variant for r in snap.resources if r.type_url == ENDPOINT and r.name == "reviews~v2"}
    assert variants == {DEFAULT_KIND}


def test_without_the_policy_or_with_one_zone_there_are_no_zone_variants() -> None:
    plain = load("vip: reviews\ndestination: {loadBalancer: RANDOM}\n")[0]
    for snap in (
        build_vip("reviews", FLEET),
        build_vip("reviews", FLEET, plain),
        build_vip("reviews", FLEET[:2], FAILOVER),
    ):
        assert {r.variant for r in snap.resources if r.type_url == ENDPOINT} == {DEFAULT_KIND}


def test_zones_past_the_bound_get_the_default_and_are_reported() -> None:
    many = [
        Instance(app="r", instance_id=f"i{n}", host=f"10.1.0.{n}", vip="reviews", port=80, zone=f"z{n:02d}")
        for n in range(MAX_FAILOVER_ZONES + 2)
    ]
    snap = build_vip("reviews", many, FAILOVER)
    zoned = {r.variant for r in snap.resources if r.type_url == ENDPOINT} - {DEFAULT_KIND}
    assert len(zoned) == MAX_FAILOVER_ZONES
    late = f"z{MAX_FAILOVER_ZONES + 1:02d}"
    assert _variant(snap, zone_variant(late)).variant == DEFAULT_KIND
    assert late in dict(snap.notes)["destination.localityFailover"]


# --- the session's view -----------------------------------------------------------------------------------


class _NoTransport:
    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        return []

    async def unsubscribe(self, vips: list[str]) -> None:
        return None


def _cache(snap: Snapshot) -> SnapshotCache:
    cache = SnapshotCache([VipSource(_NoTransport())])
    cache.apply(VIP_SOURCE, snap)
    return cache


def test_a_zoned_session_reads_its_zones_assignment_and_others_the_default() -> None:
    snap = build_vip("reviews", FLEET, FAILOVER)
    cache = _cache(snap)
    z1 = KindView(cache)
    z1.set_node(ENVOY_KIND, "z1")
    assert z1.get(ENDPOINT, "reviews") is snap.get(ENDPOINT, "reviews", zone_variant("z1"))
    default = snap.get(ENDPOINT, "reviews")
    for kind, zone in ((ENVOY_KIND, ""), (GRPC_KIND, "z9"), (DEFAULT_KIND, "")):  # no zone, or one with no endpoint
        view = KindView(cache)
        view.set_node(kind, zone)
        assert view.get(ENDPOINT, "reviews") is default
    # the zone picks only assignments: the Cluster is still the kind's
    assert z1.get(CLUSTER, "reviews") is snap.get(CLUSTER, "reviews", ENVOY_KIND)
    assert z1.get(ENDPOINT, "nothing") is None


def test_the_oracle_expects_the_zone_variant_of_a_zoned_session() -> None:
    regs = [Registered(InstanceRef("reviews", i.instance_id), i, revision=1, lease=0) for i in FLEET]
    policies = {"reviews": FAILOVER}
    snap = build_vip("reviews", FLEET, FAILOVER)
    expected = Expected(regs, policies)
    assert expected.version(ENDPOINT, "reviews", ENVOY_KIND, "z2") == _variant(snap, zone_variant("z2")).version
    assert expected.version(ENDPOINT, "reviews", ENVOY_KIND) == _variant(snap, DEFAULT_KIND).version

    def acking(zone: str) -> dict[str, object]:
        view = KindView(_cache(snap))
        view.set_node(ENVOY_KIND, zone)
        stream = DeltaStream(view, stream_id=f"s-{zone}")
        [resp] = stream.on_request(DeltaRequest(type_url=ENDPOINT, subscribe=("reviews",))).responses
        stream.on_request(DeltaRequest(type_url=ENDPOINT, response_nonce=resp.nonce))
        return {
            "stream_id": f"s-{zone}",
            "client_kind": ENVOY_KIND,
            "zone": zone,
            "protocol": asdict(stream.statistics()),
        }

    assert lagging(regs, [acking("z1"), acking("z2"), acking("")], policies) == []
    # a session holding the default while in z1 is behind
    wrong = acking("")
    wrong["zone"] = "z1"
    assert lagging(regs, [wrong], policies) != []


# --- the node's zone: codec and bootstrap ------------------------------------------------------------------


def _decoded_zone(zone: str) -> str:
    msg = discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINT)
    msg.node.id = "n"
    msg.node.locality.zone = zone
    req = codec.decode_delta_request(msg.SerializeToString())
    assert req.node is not None
    return req.node.zone


def test_the_codec_keeps_a_bounded_printable_zone_and_drops_any_other() -> None:
    assert _decoded_zone("us-east-1a") == "us-east-1a"
    assert _decoded_zone("") == ""
    assert _decoded_zone("z" * MAX_ZONE_CHARS) == "z" * MAX_ZONE_CHARS
    assert _decoded_zone("z" * (MAX_ZONE_CHARS + 1)) == ""
    assert _decoded_zone("z1\n") == ""
    req = DeltaRequest(type_url=ENDPOINT, node=Node(id="n", user_agent_name="envoy", zone="z1"))
    assert codec.decode_delta_request(codec.encode_delta_request(req)) == req


def test_the_envoy_bootstrap_sets_node_locality_zone_when_given() -> None:
    assert "locality" not in envoy_bootstrap([("127.0.0.1", 18000)], "p1")["node"]
    assert envoy_bootstrap([("127.0.0.1", 18000)], "p1", zone="z1")["node"]["locality"] == {"zone": "z1"}
    with pytest.raises(ConfigError, match="zone"):
        envoy_bootstrap([("127.0.0.1", 18000)], "p1", zone="bad zone")


def test_bootstrap_cli_zone_reaches_the_envoy_node() -> None:
    import yaml

    from meshactors.cli import bootstrap_text, build_parser

    base = ["bootstrap", "--xds", "127.0.0.1:18000", "--node-id", "p1", "--stats-flush-interval", "0"]
    assert "locality" not in yaml.safe_load(bootstrap_text(build_parser().parse_args(base)))["node"]
    doc = yaml.safe_load(bootstrap_text(build_parser().parse_args([*base, "--zone", "z1"])))
    assert doc["node"] == {"id": "p1", "cluster": "meshactors", "locality": {"zone": "z1"}}
