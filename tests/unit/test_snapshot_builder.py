"""Tests of the per-VIP snapshot builder: golden resources and versions, UP-only, zones, unknown VIPs."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import random
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401  (registers the Any type)
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from google.protobuf import json_format

import meshactors.snapshot
from meshactors.envoy.resources import Endpoint
from meshactors.model.instance import Instance, Status
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import VersionedResource
from meshactors.snapshot.builder import (
    SKIP_DUPLICATE,
    SKIP_NOT_IP,
    build_vip,
    endpoints_for,
    select_endpoints,
)
from meshactors.xds import types

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; UPDATE_GOLDEN=1 rewrites it. A missing file fails, never skips."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with UPDATE_GOLDEN=1 to create it")
    assert text == path.read_text(), f"{name} differs from its golden file; UPDATE_GOLDEN=1 rewrites it"


def res(vr: Snapshot, type_url: str) -> VersionedResource:
    """The one resource of a type in a VIP's snapshot (named after the VIP)."""
    found = vr.get(type_url, vr.key)
    assert found is not None, f"{vr.key} has no {type_url}"
    return found


def render(vr: Snapshot) -> str:
    """All of a VIP's resources, decoded, with their versions (pinned: Envoy re-sends them on reconnect); a variant
    for a client kind is keyed `<type URL>#<kind>`."""
    decoders = {
        types.CLUSTER: cluster_pb2.Cluster,
        types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        types.LISTENER: listener_pb2.Listener,
    }
    out = {}
    for one in vr.resources:
        assert one.body is not None
        msg = decoders[one.type_url].FromString(one.body)
        key = f"{one.type_url}#{one.variant}" if one.variant else one.type_url  # an SVIP's gRPC Cluster variant
        out[key] = {
            "name": one.name,
            "version": one.version,
            "resource": json.loads(json_format.MessageToJson(msg, sort_keys=True)),
        }
    out["skipped"] = [list(s) for s in vr.notes]
    return json.dumps(out, sort_keys=True, indent=2) + "\n"


def inst(instance_id: str, host: str, **kw: object) -> Instance:
    defaults: dict[str, object] = {"app": "myservice", "vip": "myservice", "port": 8080}
    defaults.update(kw)
    return Instance(instance_id=instance_id, host=host, **defaults)  # type: ignore[arg-type]


FLEET = [
    inst("i-1", "10.0.0.1", zone="us-east-1a", version_label="v1", registered_at_ms=1),
    inst("i-2", "10.0.0.2", zone="us-east-1a", weight=3, version_label="v1", registered_at_ms=2),
    inst("i-3", "10.0.1.3", zone="us-east-1b", version_label="v2", registered_at_ms=3),
    inst("i-4", "10.0.1.4", zone="us-east-1b", status=Status.DOWN),
    inst("i-5", "10.0.1.5", zone="us-east-1b", status=Status.STARTING),
    inst("i-6", "10.0.1.6", zone="us-east-1b", status=Status.OUT_OF_SERVICE),
    # serves both names: plain on 8080, mTLS on 8443
    inst("i-7", "10.0.2.7", zone="us-east-1c", svip="myservice-secure", secure_port=8443, registered_at_ms=7),
    # only the secure name
    inst("i-8", "10.0.2.8", zone="us-east-1c", vip="", port=0, svip="myservice-secure", secure_port=8443),
    # another service entirely
    inst("o-1", "10.9.9.9", app="other", vip="other", zone="us-east-1a"),
]


def cla_of(vr: Snapshot) -> endpoint_pb2.ClusterLoadAssignment:
    body = res(vr, types.ENDPOINT).body
    assert body is not None
    return endpoint_pb2.ClusterLoadAssignment.FromString(body)


def addresses(vr: Snapshot) -> list[tuple[str, str, int]]:
    return [
        (
            loc.locality.zone,
            e.endpoint.address.socket_address.address,
            e.endpoint.address.socket_address.port_value,
        )
        for loc in cla_of(vr).endpoints
        for e in loc.lb_endpoints
    ]


# --- golden -----------------------------------------------------------------------------------------------


def test_golden_plain_vip() -> None:
    check_golden("snapshot_myservice.json", render(build_vip("myservice", FLEET)))


def test_golden_secure_vip() -> None:
    check_golden("snapshot_myservice_secure.json", render(build_vip("myservice-secure", FLEET)))


def test_golden_unknown_vip() -> None:
    check_golden("snapshot_unknown.json", render(build_vip("nobody", FLEET)))


# --- the resources ----------------------------------------------------------------------------------------


def test_three_resources_named_after_the_vip() -> None:
    vr = build_vip("myservice", FLEET)
    assert vr.key == "myservice"
    assert [r.type_url for r in vr.resources] == [types.CLUSTER, types.ENDPOINT, types.LISTENER]
    assert all(r.name == "myservice" for r in vr.resources)
    assert vr.consistent() == []
    assert all(r.version == types.content_version(r.body) for r in vr.resources)
    # make before break: the resources come in the global send order
    order = [types.SEND_ORDER.index(r.type_url) for r in vr.resources]
    assert order == sorted(order)
    assert vr.get(types.ENDPOINT, "myservice") is next(r for r in vr.resources if r.type_url == types.ENDPOINT)
    assert vr.get(types.SECRET, "myservice") is None
    assert cla_of(vr).cluster_name == "myservice"
    assert res(vr, types.LISTENER).body is not None
    lst = listener_pb2.Listener.FromString(res(vr, types.LISTENER).body)
    assert lst.name == "myservice"


def test_only_up_instances_are_served() -> None:
    vr = build_vip("myservice", FLEET)
    hosts = {host for _, host, _ in addresses(vr)}
    assert hosts == {"10.0.0.1", "10.0.0.2", "10.0.1.3", "10.0.2.7"}
    # a non-UP instance changing does not change the version
    changed = [dataclasses.replace(i, zone="elsewhere") if i.status is not Status.UP else i for i in FLEET]
    assert res(build_vip("myservice", changed), types.ENDPOINT).version == res(vr, types.ENDPOINT).version
    # an instance going DOWN does
    down = [i.with_status(Status.DOWN) if i.instance_id == "i-1" else i for i in FLEET]
    assert res(build_vip("myservice", down), types.ENDPOINT).version != res(vr, types.ENDPOINT).version


def test_vip_on_port_and_svip_on_secure_port() -> None:
    assert addresses(build_vip("myservice-secure", FLEET)) == [
        ("us-east-1c", "10.0.2.7", 8443),
        ("us-east-1c", "10.0.2.8", 8443),
    ]
    assert ("us-east-1c", "10.0.2.7", 8080) in addresses(build_vip("myservice", FLEET))


def test_zone_grouping_and_weights() -> None:
    cla = cla_of(build_vip("myservice", FLEET))
    assert [loc.locality.zone for loc in cla.endpoints] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert [loc.load_balancing_weight.value for loc in cla.endpoints] == [4, 1, 1]
    first = cla.endpoints[0]
    assert [e.load_balancing_weight.value for e in first.lb_endpoints] == [1, 3]
    meta = first.lb_endpoints[1].metadata.filter_metadata["meshactors"]
    assert dict(meta) == {"instance_id": "i-2", "version_label": "v1"}


def test_unknown_vip_gets_the_same_cluster_and_an_empty_cla() -> None:
    known = build_vip("myservice", FLEET)
    unknown = build_vip("myservice", [])
    assert res(unknown, types.CLUSTER) == res(known, types.CLUSTER)
    assert res(unknown, types.LISTENER) == res(known, types.LISTENER)
    assert len(cla_of(unknown).endpoints) == 0
    assert cla_of(unknown).cluster_name == "myservice"
    assert res(unknown, types.ENDPOINT).version != res(known, types.ENDPOINT).version
    # all instances down is the same as unknown
    all_down = [i.with_status(Status.DOWN) for i in FLEET]
    assert build_vip("myservice", all_down) == unknown


# --- determinism ------------------------------------------------------------------------------------------


def test_same_input_same_versions() -> None:
    assert build_vip("myservice", FLEET) == build_vip("myservice", list(FLEET))


def test_instance_order_does_not_change_the_version() -> None:
    expected = build_vip("myservice", FLEET)
    rng = random.Random(11)
    for _ in range(20):
        shuffled = list(FLEET)
        rng.shuffle(shuffled)
        assert build_vip("myservice", shuffled) == expected
        assert build_vip("myservice", iter(shuffled)) == expected


def test_a_change_changes_only_the_cla_version() -> None:
    before = build_vip("myservice", FLEET)
    after = build_vip("myservice", [*FLEET, inst("i-9", "10.0.0.9", zone="us-east-1a")])
    assert res(after, types.CLUSTER) == res(before, types.CLUSTER)
    assert res(after, types.LISTENER) == res(before, types.LISTENER)
    assert res(after, types.ENDPOINT).version != res(before, types.ENDPOINT).version


# --- what Envoy/grpcio would NACK never reaches them --------------------------------------------------------


def test_dns_host_is_skipped_and_reported() -> None:
    fleet = [inst("i-1", "10.0.0.1"), inst("i-dns", "backend.example")]
    endpoints, skipped = select_endpoints("myservice", fleet)
    assert [ep.host for ep in endpoints] == ["10.0.0.1"]
    assert skipped == (("i-dns", SKIP_NOT_IP),)
    assert build_vip("myservice", fleet).notes == skipped


def test_duplicate_address_keeps_the_most_recent_registration() -> None:
    old = inst("i-old", "10.0.0.1", registered_at_ms=100, version_label="v1")
    new = inst("i-new", "10.0.0.1", registered_at_ms=200, version_label="v2")
    for fleet in ([old, new], [new, old]):
        endpoints, skipped = select_endpoints("myservice", fleet)
        assert [ep.instance_id for ep in endpoints] == ["i-new"]
        assert skipped == (("i-old", SKIP_DUPLICATE),)


def test_ipv6_hosts_are_canonical() -> None:
    fleet = [
        inst("a", "0:0::1", registered_at_ms=1),
        inst("b", "::1", registered_at_ms=2),
        inst("c", "fd00::A"),
    ]
    endpoints = endpoints_for("myservice", fleet)
    assert [(ep.host, ep.instance_id) for ep in endpoints] == [("::1", "b"), ("fd00::a", "c")]
    build_vip("myservice", fleet)  # no duplicate address reaches the CLA builder


def test_endpoints_for_ignores_other_names() -> None:
    endpoints = endpoints_for("other", FLEET)
    assert endpoints == (Endpoint("10.9.9.9", 8080, "us-east-1a", 1, "o-1", ""),)


def test_snapshot_package_does_not_import_protos() -> None:
    """Only meshactors/envoy/ may import envoy/xds/udpa/validate (the snapshot calls it for bytes)."""
    forbidden = {"envoy", "xds", "udpa", "validate"}
    package = Path(meshactors.snapshot.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{source.name} imports {roots & forbidden}"
