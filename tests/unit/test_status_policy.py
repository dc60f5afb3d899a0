"""The policy a session holds, as `status --json` reports it: the snapshot's PolicySummary (digest, revisions, what
each variant left out), carried over the builder link, and read per session by the xDS host for its client kind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from meshactors.model import Instance
from meshactors.policy.load import load
from meshactors.resources.snapshot import MAX_POLICY_LEFT_OUT, PolicySummary, PolicyVariant, Snapshot
from meshactors.resources.types import CLUSTER, DEFAULT_KIND, ENVOY_KIND, GRPC_KIND, LISTENER
from meshactors.runtime.status import to_json
from meshactors.snapshot.builder import build_vip, policy_digest
from meshactors.snapshot.service import snapshot_from_pb, snapshot_to_pb
from meshactors.snapshot.source import VIP_SOURCE, VipSource
from meshactors.store.policy_feed import PolicyBatch, PolicyLoaded, PolicyPut, PolicyRemoved, PolicyTable
from meshactors.testing.xds_client import StaticTokens
from meshactors.xds.host import HostSettings, Session, SessionPolicy, XdsHost

FLEET = [
    Instance(app="reviews", instance_id="a", host="10.0.0.1", vip="reviews", port=80, version_label="v1"),
    Instance(app="reviews", instance_id="b", host="10.0.0.2", vip="reviews", port=80, version_label="v2"),
]
POLICY = load(
    """
vip: reviews
destination: {loadBalancer: LEAST_REQUEST}
routing:
  split: [{version: v1, weight: 90}, {version: v2, weight: 10}]
  mirror: {vip: reviews-next, percent: 10}
"""
)[0]
MIRROR = "routing.mirror: gRPC does not mirror requests"


# ---- the snapshot's PolicySummary ----------------------------------------------------------------------------


def test_a_vip_without_policy_has_no_summary_and_one_with_a_policy_says_what_grpc_left_out() -> None:
    assert build_vip("reviews", FLEET).policy is None
    snap = build_vip("reviews", FLEET, POLICY, revisions=[("reviews", 41), ("*", 7)])
    summary = snap.policy
    assert summary is not None
    assert summary.digest == policy_digest(POLICY) and len(summary.digest) == 16
    assert summary.revisions == (("reviews", 41), ("*", 7))
    grpc = summary.variant_for(GRPC_KIND)
    assert grpc.kind == GRPC_KIND
    assert MIRROR in grpc.left_out
    assert any(e.startswith("destination.loadBalancer: ") for e in grpc.left_out)
    assert summary.variant_for(ENVOY_KIND) == PolicyVariant(ENVOY_KIND, ())  # Envoy honours all of it
    assert summary.variant_for(DEFAULT_KIND).kind == ENVOY_KIND  # every other kind reads the default variant
    # what the summary says of gRPC is what the notes log, field by field
    assert {e.split(":")[0] for e in grpc.left_out} == {f[len("grpc: ") :] for f, _ in snap.notes}


def test_the_digest_follows_the_effective_document_not_the_instances() -> None:
    other = load("vip: reviews\ndestination: {loadBalancer: RANDOM}\n")[0]
    assert build_vip("reviews", FLEET[:1], POLICY).policy == build_vip("reviews", FLEET, POLICY).policy
    assert policy_digest(other) != policy_digest(POLICY)


def test_an_svip_snapshot_keeps_its_summary() -> None:
    svip = [Instance(app="pay", instance_id="p", host="10.0.0.3", svip="pay", secure_port=443)]
    policy = load("vip: pay\nrouting: {mirror: {vip: pay-next, percent: 5}}\n")[0]
    snap = build_vip("pay", svip, policy)
    assert snap.policy is not None and MIRROR in snap.policy.variant_for(GRPC_KIND).left_out


def test_a_new_revision_alone_makes_a_different_snapshot_so_the_builder_pushes_it() -> None:
    one = build_vip("reviews", FLEET, POLICY, revisions=[("reviews", 1)])
    two = build_vip("reviews", FLEET, POLICY, revisions=[("reviews", 2)])
    assert one.versions() == two.versions() and one != two
    assert one.stamped(5.0).policy == one.policy


def test_the_summary_is_bounded() -> None:
    many = [f"f{i}: " + "x" * 500 for i in range(MAX_POLICY_LEFT_OUT + 5)]
    summary = PolicySummary.of("d" * 300, [("a", 1), ("*", 2), ("extra", 3)], {GRPC_KIND: many})
    (variant,) = summary.variants
    assert len(variant.left_out) == MAX_POLICY_LEFT_OUT + 1 and variant.left_out[-1] == "... and 5 more"
    assert all(len(e) < 240 for e in variant.left_out) and len(summary.digest) < 240
    assert summary.revisions == (("a", 1), ("*", 2))


def test_the_summary_crosses_the_builder_link() -> None:
    snap = build_vip("reviews", FLEET, POLICY, revisions=[("reviews", 41), ("*", 7)]).stamped(12.5)
    back = snapshot_from_pb(snapshot_to_pb(snap))
    assert back == snap and back.policy == snap.policy and back.changed_at == 12.5
    plain = build_vip("reviews", FLEET)
    assert snapshot_from_pb(snapshot_to_pb(plain)).policy is None


def test_the_table_keeps_each_documents_revision() -> None:
    table = PolicyTable()
    table.apply(PolicyLoaded((PolicyPut("reviews", POLICY, 10),), 10))
    assert table.revisions_of("reviews") == (("reviews", 10),)
    mesh = load("vip: '*'\nrouting: {timeout: 2s}\n")[0]
    table.apply(PolicyBatch((PolicyPut("*", mesh, 11), PolicyPut("reviews", POLICY, 12)), 12))
    assert table.revisions_of("reviews") == (("reviews", 12), ("*", 11))
    assert table.revisions_of("nobody") == (("*", 11),)
    table.apply(PolicyBatch((PolicyRemoved("reviews", 13, POLICY),), 13))
    assert table.revisions_of("reviews") == (("*", 11),)


# ---- per session, in the host's statistics -------------------------------------------------------------------


class _Transport:
    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        return []

    async def unsubscribe(self, vips: list[str]) -> None:
        return None


class _Context:
    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def _session(host: XdsHost, kind: str, vips: list[str]) -> Session:
    """A SotW session of client `kind` holding `vips` (as the host records what a stream subscribed)."""
    session = host._session("sotw", _Context())  # type: ignore[arg-type]
    session.view.set_node(kind, "")
    for vip in vips:
        session.keys[(VIP_SOURCE, vip)] = {(CLUSTER, vip), (LISTENER, vip)}
    return session


def _host() -> XdsHost:
    host = XdsHost("h", [VipSource(_Transport())], HostSettings(), authenticate=StaticTokens())
    host.cache.apply(VIP_SOURCE, build_vip("reviews", FLEET, POLICY, revisions=[("reviews", 41)]))
    host.cache.apply(VIP_SOURCE, build_vip("plain", []))
    return host


def test_each_session_reports_the_variant_its_kind_reads_and_only_for_vips_it_holds() -> None:
    async def run() -> None:
        host = _host()
        grpc, envoy, other = (_session(host, k, v) for k, v in ((GRPC_KIND, ["reviews", "plain"]),
                                                                  (ENVOY_KIND, ["reviews"]),
                                                                  (ENVOY_KIND, ["plain"])))  # fmt: skip
        (g,), omitted = host.session_policies(grpc)
        assert omitted == 0
        assert g == SessionPolicy("reviews", policy_digest(POLICY), GRPC_KIND, g.left_out, {"reviews": 41})
        assert MIRROR in g.left_out
        assert host.session_policies(envoy)[0] == [
            SessionPolicy("reviews", policy_digest(POLICY), ENVOY_KIND, (), {"reviews": 41})
        ]
        assert host.session_policies(other) == ([], 0)  # it never used reviews: no policy of it

    asyncio.run(run())


def test_the_sessions_policies_are_bounded_and_counted() -> None:
    async def run() -> None:
        host = _host()
        for i in range(3):
            host.cache.apply(VIP_SOURCE, build_vip(f"v{i}", FLEET, POLICY))
        session = _session(host, GRPC_KIND, ["reviews", "plain", "v0", "v1", "v2"])
        kept, omitted = host.session_policies(session, limit=2)
        assert [p.vip for p in kept] == ["reviews", "v0"] and omitted == 2

    asyncio.run(run())


def test_status_json_shows_the_policies_of_a_session() -> None:
    async def run() -> dict[str, Any]:
        host = _host()
        session = _session(host, GRPC_KIND, ["reviews", "plain"])
        host._sessions[session.stream_id] = session
        (stream,) = to_json(host.statistics()).get("streams")
        return stream  # type: ignore[no-any-return]

    stream = asyncio.run(run())
    json.dumps(stream)
    assert stream["policies_omitted"] == 0
    (policy,) = stream["policies"]
    assert policy["vip"] == "reviews" and policy["variant"] == "grpc" and policy["revisions"] == {"reviews": 41}
    assert MIRROR in policy["left_out"] and policy["policy"] == policy_digest(POLICY)
