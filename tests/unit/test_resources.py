"""The neutral resource contract: send order, consistent() per kind of dangling reference, variants per client."""

from __future__ import annotations

import random

import pytest

from meshactors.resources.snapshot import Snapshot, cluster_refs, eds_refs
from meshactors.resources.types import (
    CLUSTER,
    DEFAULT_KIND,
    ENDPOINT,
    ENVOY_KIND,
    EXTENSION_CONFIG,
    GRPC_KIND,
    LISTENER,
    ROUTE,
    SECRET,
    SEND_ORDER,
    VIRTUAL_HOST,
    VersionedResource,
    client_kind,
)
from meshactors.snapshot.builder import build_vip
from meshactors.snapshot.source import VIP_SOURCE, VipSource
from meshactors.xds.cache import KindView, SnapshotCache


def r(type_url: str, name: str, body: bytes = b"x", **kw: object) -> VersionedResource:
    return VersionedResource.of(type_url, name, body, **kw)  # type: ignore[arg-type]


def test_send_order_is_make_before_break_whatever_order_resources_come_in() -> None:
    assert SEND_ORDER == (CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST, SECRET, EXTENSION_CONFIG)
    items = [
        r(SECRET, "cert"), r(VIRTUAL_HOST, "rc/shop"), r(ROUTE, "rc"), r(LISTENER, "shop"), r(ENDPOINT, "shop"),
        r(CLUSTER, "shop"), r(CLUSTER, "shop~v2"), r(ENDPOINT, "shop~v2"),
        r("type.googleapis.com/some.New", "thing"),
    ]  # fmt: skip
    rng = random.Random(3)
    for _ in range(10):
        rng.shuffle(items)
        snap = Snapshot.of("shop", items)
        assert [(x.type_url, x.name) for x in snap.resources] == [
            (CLUSTER, "shop"), (CLUSTER, "shop~v2"), (ENDPOINT, "shop"), (ENDPOINT, "shop~v2"), (LISTENER, "shop"),
            (ROUTE, "rc"), (VIRTUAL_HOST, "rc/shop"), (SECRET, "cert"), ("type.googleapis.com/some.New", "thing"),
        ]  # fmt: skip


def test_a_snapshot_holds_each_resource_variant_once() -> None:
    with pytest.raises(ValueError, match="more than once"):
        Snapshot.of("shop", [r(CLUSTER, "shop", b"a"), r(CLUSTER, "shop", b"b")])
    # two variants of one name are two resources
    Snapshot.of("shop", [r(CLUSTER, "shop", b"a"), r(CLUSTER, "shop", b"b", variant=GRPC_KIND)])


def test_consistent_reports_each_kind_of_dangling_reference_by_name() -> None:
    whole = Snapshot.of(
        "shop",
        [
            r(CLUSTER, "shop", refs=eds_refs("shop")),
            r(ENDPOINT, "shop"),
            r(CLUSTER, "shop~v2", refs=(*eds_refs("shop~v2"), (SECRET, "shop-cert"))),
            r(ENDPOINT, "shop~v2"),
            r(SECRET, "shop-cert"),
            r(VIRTUAL_HOST, "rc/shop", refs=cluster_refs("shop", "shop~v2")),
            r(LISTENER, "shop", refs=cluster_refs("shop")),
        ],
    )
    assert whole.consistent() == []

    eds_missing = Snapshot.of("shop", [r(CLUSTER, "shop", refs=eds_refs("shop"))])
    [problem] = eds_missing.consistent()
    assert problem.referrer == (CLUSTER, "shop") and problem.missing == (ENDPOINT, "shop")
    assert str(problem) == "Cluster 'shop' names ClusterLoadAssignment 'shop'"

    split_missing = Snapshot.of(
        "shop",
        [
            r(CLUSTER, "shop", refs=eds_refs("shop")),
            r(ENDPOINT, "shop"),
            r(VIRTUAL_HOST, "rc/shop", refs=cluster_refs("shop", "shop~v2")),
        ],
    )
    assert [str(p) for p in split_missing.consistent()] == ["VirtualHost 'rc/shop' names Cluster 'shop~v2'"]

    secret_missing = Snapshot.of(
        "shop",
        [
            r(CLUSTER, "shop", refs=(*eds_refs("shop"), (SECRET, "shop-cert"))),
            r(ENDPOINT, "shop"),
            r(LISTENER, "in", refs=((SECRET, "server-cert"),)),
        ],
    )
    assert [str(p) for p in secret_missing.consistent()] == [
        "Cluster 'shop' names Secret 'shop-cert'",
        "Listener 'in' names Secret 'server-cert'",
    ]
    # a reference satisfied by another key (e.g. an identity's secret) can be passed in
    assert secret_missing.consistent(available=[(SECRET, "shop-cert"), (SECRET, "server-cert")]) == []


def test_the_vip_builder_builds_consistent_snapshots() -> None:
    assert build_vip("shop", []).consistent() == []


def test_client_kind_from_the_nodes_user_agent() -> None:
    assert client_kind("envoy") == ENVOY_KIND
    for agent in ("gRPC C-core", "grpc-python", "gRPC Java", "gRPC Go", "gRPC Node Pure JS"):
        assert client_kind(agent) == GRPC_KIND, agent
    assert client_kind("") == DEFAULT_KIND and client_kind("curl") == DEFAULT_KIND


def test_variant_selection_by_client_kind_with_the_default_as_fallback() -> None:
    default = r(CLUSTER, "shop", b"for-everyone")
    for_grpc = r(CLUSTER, "shop", b"round-robin-only", variant=GRPC_KIND)
    snap = Snapshot.of("shop", [default, for_grpc, r(ENDPOINT, "shop")])
    assert snap.get(CLUSTER, "shop", GRPC_KIND) == for_grpc
    assert snap.get(CLUSTER, "shop", ENVOY_KIND) == default
    assert snap.get(CLUSTER, "shop") == default
    assert snap.names(CLUSTER) == ["shop"]  # a name is listed once whatever its variants
    assert default.version != for_grpc.version  # each variant is versioned by its own bytes
    # a change to one variant is a change to that name
    newer = Snapshot.of("shop", [default, r(CLUSTER, "shop", b"v2", variant=GRPC_KIND), r(ENDPOINT, "shop")])
    assert newer.changed_since(snap) == [(CLUSTER, "shop")]
    assert newer.differs(snap.versions()) and not snap.differs(snap.versions())


class _NoTransport:
    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        return []

    async def unsubscribe(self, vips: list[str]) -> None:
        return None


def test_each_session_reads_the_variant_of_its_client_kind() -> None:
    cache = SnapshotCache([VipSource(_NoTransport())])
    base = build_vip("shop", [])
    grpc_cluster = r(CLUSTER, "shop", b"grpc-cluster", variant=GRPC_KIND, refs=eds_refs("shop"))
    cache.apply(VIP_SOURCE, Snapshot.of("shop", [*base.resources, grpc_cluster]))
    envoy_view, grpc_view = KindView(cache, ENVOY_KIND), KindView(cache, GRPC_KIND)
    assert envoy_view.get(CLUSTER, "shop") == base.get(CLUSTER, "shop")
    assert grpc_view.get(CLUSTER, "shop") == grpc_cluster
    assert grpc_view.get(ENDPOINT, "shop") == envoy_view.get(ENDPOINT, "shop")  # no variant: the default
