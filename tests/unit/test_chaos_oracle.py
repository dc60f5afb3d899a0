"""The chaos oracle: the versions every session should have ACKed, computed from etcd's registrations alone."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from meshactors.chaos.oracle import lagging
from meshactors.model import Instance, InstanceRef
from meshactors.snapshot.builder import build_vip
from meshactors.store.feed import Registered
from meshactors.xds.delta import DeltaStream
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaRequest
from meshactors.xds.view import DictView


def reg(vip: str, iid: str, port: int) -> Registered:
    inst = Instance(app=vip, instance_id=iid, host="10.0.0.1", vip=vip, port=port)
    return Registered(InstanceRef(vip, iid), inst, revision=1, lease=0)


def session_acking(registrations: list[Registered], vip: str) -> dict[str, Any]:
    """A real delta state machine that subscribed `vip`'s Cluster and CLA as built from `registrations`, ACKed."""
    view = DictView(build_vip(vip, [r.instance for r in registrations]).resources)
    stream = DeltaStream(view, stream_id="s-1")
    for type_url in (CLUSTER, ENDPOINT):
        [resp] = stream.on_request(DeltaRequest(type_url=type_url, subscribe=(vip,))).responses
        stream.on_request(DeltaRequest(type_url=type_url, response_nonce=resp.nonce))
    return {"stream_id": "s-1", "client_kind": "envoy", "protocol": asdict(stream.statistics())}


def test_a_session_at_etcds_state_is_converged() -> None:
    regs = [reg("shop", "i1", 8080)]
    assert lagging(regs, [session_acking(regs, "shop")]) == []


def test_a_session_behind_etcd_is_named_with_what_it_holds_and_what_etcd_gives() -> None:
    old = [reg("shop", "i1", 8080)]
    now = [*old, reg("shop", "i2", 8081)]
    [why] = lagging(now, [session_acking(old, "shop")])
    assert why.startswith("s-1: ClusterLoadAssignment 'shop' ACKed ")
    # the Cluster does not depend on the endpoints: only the CLA lags
    assert "Cluster 'shop'" not in why


def test_a_vip_gone_from_etcd_expects_the_endpointless_answer() -> None:
    regs = [reg("shop", "i1", 8080)]
    assert lagging([], [session_acking(regs, "shop")]) != []
    assert lagging([], [session_acking([], "shop")]) == []


def test_sent_but_not_acked_is_lagging() -> None:
    regs = [reg("shop", "i1", 8080)]
    view = DictView(build_vip("shop", [r.instance for r in regs]).resources)
    stream = DeltaStream(view, stream_id="s-2")
    stream.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("shop",)))  # never ACKed
    session = {"stream_id": "s-2", "client_kind": "envoy", "protocol": asdict(stream.statistics())}
    assert lagging(regs, [session]) == ["s-2: Cluster sent but not ACKed"]


def test_a_vips_policy_is_part_of_what_etcd_gives() -> None:
    from meshactors.policy.load import load
    from meshactors.resources.types import DEFAULT_KIND

    regs = [reg("shop", "i1", 8080)]
    [policy] = load("vip: shop\ndestination: {loadBalancer: LEAST_REQUEST}\n")
    with_policy = build_vip("shop", [r.instance for r in regs], policy)
    view = DictView(r for r in with_policy.resources if r.variant == DEFAULT_KIND)
    stream = DeltaStream(view, stream_id="s-3")
    for type_url in (CLUSTER, ENDPOINT):
        [resp] = stream.on_request(DeltaRequest(type_url=type_url, subscribe=("shop",))).responses
        stream.on_request(DeltaRequest(type_url=type_url, response_nonce=resp.nonce))
    session = {"stream_id": "s-3", "client_kind": "envoy", "protocol": asdict(stream.statistics())}
    assert lagging(regs, [session], {"shop": policy}) == []
    [why] = lagging(regs, [session])  # without the policy etcd gives the plain cluster
    assert why.startswith("s-3: Cluster 'shop' ACKed ")


def test_the_known_names_guard_is_expected_at_etcds_names() -> None:
    from meshactors.envoy.resources import KNOWN_VIPS_FILTER
    from meshactors.resources.types import EXTENSION_CONFIG
    from meshactors.snapshot.builder import build_known_vips

    regs = [reg("shop", "i1", 8080), reg("cart", "i2", 8081)]
    view = DictView(build_known_vips(["shop"]).resources)  # a session that still has only one name
    stream = DeltaStream(view, stream_id="s-4")
    [resp] = stream.on_request(DeltaRequest(type_url=EXTENSION_CONFIG, subscribe=(KNOWN_VIPS_FILTER,))).responses
    stream.on_request(DeltaRequest(type_url=EXTENSION_CONFIG, response_nonce=resp.nonce))
    session = {"stream_id": "s-4", "client_kind": "envoy", "protocol": asdict(stream.statistics())}
    [why] = lagging(regs, [session])
    assert "TypedExtensionConfig 'meshactors_known_vips'" in why
    assert lagging(regs[:1], [session]) == []
