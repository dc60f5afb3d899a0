"""MeshView (instances by VIP from watch events) and the xDS host's SnapshotCache over a VipSource: pure logic."""

from __future__ import annotations

from meshactors.model import Instance, InstanceRef, Status
from meshactors.resources.snapshot import Snapshot
from meshactors.snapshot.builder import build_vip
from meshactors.snapshot.mesh import MeshView
from meshactors.snapshot.source import VIP_SOURCE, VipSource, validate_name, vip_of
from meshactors.xds.cache import SnapshotCache
from meshactors.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET


class _NoTransport:
    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        raise AssertionError("not fetched in this test")

    async def unsubscribe(self, vips: list[str]) -> None:
        raise AssertionError("not released in this test")


def _inst(iid: str, vip: str = "", svip: str = "", port: int = 80, status: Status = Status.UP) -> Instance:
    return Instance(app="a", instance_id=iid, host="10.0.0.1", vip=vip, svip=svip, port=port if vip else 0,
                    secure_port=443 if svip else 0, status=status)  # fmt: skip


def test_mesh_view_indexes_both_names_and_reports_what_changed() -> None:
    view = MeshView()
    r1 = InstanceRef("shop", "i1")
    assert view.put(r1, _inst("i1", vip="shop", svip="shop-secure")) == {"shop", "shop-secure"}
    assert [i.instance_id for i in view.instances("shop-secure")] == ["i1"]
    assert view.put(r1, _inst("i1", vip="shop", svip="shop-secure")) == set()  # same record: nothing changed
    # status change touches both names; moving the SVIP away touches the old and the new name
    assert view.put(r1, _inst("i1", vip="shop", svip="shop-secure", status=Status.DOWN)) == {"shop", "shop-secure"}
    assert view.put(r1, _inst("i1", vip="shop", svip="pay-secure")) == {"shop", "shop-secure", "pay-secure"}
    assert view.instances("shop-secure") == []
    assert view.delete(r1) == {"shop", "pay-secure"}
    assert view.delete(r1) == set() and len(view) == 0


def test_mesh_view_ownership_and_resync() -> None:
    view = MeshView(owns=lambda name: name.startswith("a"))
    assert view.put(InstanceRef("alpha", "1"), _inst("1", vip="alpha", svip="beta")) == {"alpha"}
    assert view.names() == ["alpha"]
    changed = view.replace_all(
        [
            (InstanceRef("alpha", "1"), _inst("1", vip="alpha", svip="beta")),
            (InstanceRef("apex", "2"), _inst("2", vip="apex")),
        ]
    )
    assert changed == {"apex"}  # alpha's instances are the same as before
    assert view.replace_all([]) == {"alpha", "apex"}


def test_cache_serves_vip_resources_and_derived_listeners() -> None:
    cache = SnapshotCache([VipSource(_NoTransport())])
    held = cache.locate(CLUSTER, "shop")
    assert held == (VIP_SOURCE, "shop") and cache.locate(LISTENER, "shop:50051") == held
    assert cache.get(CLUSTER, "shop") is None
    res = build_vip("shop", [_inst("i1", vip="shop")])
    assert cache.apply(VIP_SOURCE, res) == [(CLUSTER, "shop"), (ENDPOINT, "shop"), (LISTENER, "shop")]
    assert cache.get(CLUSTER, "shop") == res.get(CLUSTER, "shop")
    assert cache.get(ENDPOINT, "shop") == res.get(ENDPOINT, "shop")
    derived = cache.get(LISTENER, "shop:50051")
    listener = res.get(LISTENER, "shop")
    assert listener is not None
    assert derived is not None and derived.name == "shop:50051" and derived.version != listener.version
    assert sorted(cache.names(LISTENER)) == ["shop", "shop:50051"]
    assert cache.get(ROUTE, "shop") is None and list(cache.names(ROUTE)) == []
    # an endpoint change changes only the CLA
    res2 = build_vip("shop", [_inst("i1", vip="shop"), _inst("i2", vip="shop", port=81)])
    assert cache.apply(VIP_SOURCE, res2) == [(ENDPOINT, "shop")]
    assert cache.apply(VIP_SOURCE, res2) == []
    assert cache.held_versions(VIP_SOURCE) == {"shop": res2.versions()}
    cache.evict(held)
    assert held not in cache and cache.get(LISTENER, "shop:50051") is None


def test_cache_answers_a_vips_cluster_before_its_snapshot_arrives() -> None:
    cache = SnapshotCache([VipSource(_NoTransport())])
    held = cache.locate(CLUSTER, "shop")
    assert cache.provisional(held) and not cache.provisional(held)
    cluster = cache.get(CLUSTER, "shop")
    assert cluster is not None and cluster == build_vip("shop", []).get(CLUSTER, "shop")
    assert cache.get(ENDPOINT, "shop") is None  # the endpoints wait for the registry
    assert cache.is_provisional(held) and held not in cache
    cache.apply(VIP_SOURCE, build_vip("shop", []))
    assert not cache.is_provisional(held) and cache.get(ENDPOINT, "shop") is not None


def test_name_validation_bounds_what_clients_can_subscribe() -> None:
    assert validate_name(CLUSTER, "shop") is None
    assert validate_name(LISTENER, "shop:50051") is None and vip_of(LISTENER, "shop:50051") == "shop"
    assert vip_of(CLUSTER, "shop") == "shop"
    assert "not a VIP name" in (validate_name(CLUSTER, "Shop_1") or "")
    assert "not a VIP name" in (validate_name(CLUSTER, "shop:8080") or "")
    assert "port" in (validate_name(LISTENER, "shop:99999") or "")
    assert "not served" in (validate_name(SECRET, "shop") or "")
    assert "only route config" in (validate_name(ROUTE, "shop") or "")
    cache = SnapshotCache([VipSource(_NoTransport())])
    assert "not served by meshactors" in (cache.validate(SECRET, "shop") or "")
