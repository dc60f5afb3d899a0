"""The known-VIPs guard's read side: NameIndex, its snapshot, the builder that owns it, the unknown-VIP budget."""

from __future__ import annotations

import asyncio

import pytest

from meshactors.envoy.resources import KNOWN_VIPS_FILTER, known_vips_names
from meshactors.model import Instance, InstanceRef, Status
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER
from meshactors.snapshot.builder import KNOWN_VIPS_KEY, build_known_vips, build_vip
from meshactors.snapshot.mesh import NameIndex
from meshactors.snapshot.publisher import BuilderSettings, SnapshotBuilderCore, builder_map
from meshactors.snapshot.source import VIP_SOURCE, VipSource, VipSourceSettings
from meshactors.store import codec
from meshactors.testing.xds_client import StaticTokens
from meshactors.xds.cache import SnapshotCache
from meshactors.xds.host import HostSettings, XdsHost
from tests.unit.test_registry_feed import KEYS, FakeStore


def _inst(iid: str, vip: str = "", svip: str = "", status: Status = Status.UP) -> Instance:
    return Instance(app="a", instance_id=iid, host="10.0.0.1", vip=vip, svip=svip, port=80 if vip else 0,
                    secure_port=443 if svip else 0, status=status)  # fmt: skip


def _names(snap: Snapshot) -> frozenset[str]:
    res = snap.get(EXTENSION_CONFIG, KNOWN_VIPS_FILTER)
    assert res is not None and res.body is not None
    return known_vips_names(res.body)


# --- NameIndex --------------------------------------------------------------------------------------------


def test_name_index_reports_only_first_and_last_registrations_of_a_name() -> None:
    idx = NameIndex()
    r1, r2 = InstanceRef("shop", "i1"), InstanceRef("shop", "i2")
    assert idx.put(r1, _inst("i1", vip="shop", svip="shop-s")) == ({"shop", "shop-s"}, set())
    assert idx.put(r2, _inst("i2", vip="shop")) == (set(), set())  # a second registration: same name set
    assert idx.put(r1, _inst("i1", vip="shop", svip="shop-s", status=Status.DOWN)) == (set(), set())  # any status
    assert idx.put(r1, _inst("i1", vip="shop", svip="pay-s")) == ({"pay-s"}, {"shop-s"})
    assert idx.delete(r1) == (set(), {"pay-s"})
    assert idx.delete(r1) == (set(), set())
    assert idx.delete(r2) == (set(), {"shop"})
    assert len(idx) == 0 and idx.names() == []


def test_name_index_counts_a_name_served_as_vip_and_svip_once() -> None:
    idx = NameIndex()
    ref = InstanceRef("x", "i1")
    assert idx.put(ref, _inst("i1", vip="x", svip="x")) == ({"x"}, set())
    assert idx.delete(ref) == (set(), {"x"})


def test_name_index_resync_reports_the_difference_of_the_name_sets() -> None:
    idx = NameIndex()
    idx.put(InstanceRef("a", "1"), _inst("1", vip="a"))
    idx.put(InstanceRef("b", "2"), _inst("2", vip="b"))
    appeared, disappeared = idx.replace_all(
        [(InstanceRef("b", "3"), _inst("3", vip="b")), (InstanceRef("c", "4"), _inst("4", vip="c"))]
    )
    assert (appeared, disappeared) == ({"c"}, {"a"})
    assert sorted(idx.names()) == ["b", "c"] and "b" in idx and "a" not in idx


# --- the known-names snapshot -----------------------------------------------------------------------------


def test_known_names_snapshot_holds_one_ecds_resource_for_the_set() -> None:
    snap = build_known_vips(["b", "a"])
    assert snap.key == KNOWN_VIPS_KEY == "@known-vips"
    assert [(r.type_url, r.name) for r in snap.resources] == [(EXTENSION_CONFIG, KNOWN_VIPS_FILTER)]
    assert _names(snap) == {"a", "b"}
    assert snap.consistent() == []
    assert build_known_vips(["a", "b", "a"]).versions() == snap.versions()  # the set, not the order
    assert build_known_vips(["a"]).versions() != snap.versions()
    assert _names(build_known_vips([])) == frozenset()


# --- the builder owning @known-vips -----------------------------------------------------------------------


def _put(store: FakeStore, inst: Instance) -> None:
    store.put(KEYS.instance(inst.ref), codec.encode_instance(inst))


async def _wait_for(box: object, want: frozenset[str], timeout_s: float = 2.0) -> frozenset[str]:
    async def run() -> frozenset[str]:
        while True:
            for snap in await box.take():  # type: ignore[attr-defined]
                if snap.key == KNOWN_VIPS_KEY and _names(snap) == want:
                    return want

    return await asyncio.wait_for(run(), timeout_s)


async def test_the_owning_builder_publishes_the_name_set_and_pushes_only_when_it_changes() -> None:
    store = FakeStore()
    _put(store, _inst("i1", vip="shop"))
    builders = builder_map(2)
    owner = builders.owner(KNOWN_VIPS_KEY)
    other = next(b for b in builders.shards if b != owner)
    core = SnapshotBuilderCore(store, KEYS, owner, builders, BuilderSettings(names_coalesce_s=0.01))  # type: ignore[arg-type]
    assert SnapshotBuilderCore(store, KEYS, other, builders).names is None  # type: ignore[arg-type]
    await core.start()
    try:
        await asyncio.wait_for(_until_ready(core), 2.0)
        (first,) = core.subscribe("h1", "inc1", [KNOWN_VIPS_KEY])
        assert _names(first) == {"shop"}
        box, differ = core.open_updates("h1", "inc1", {KNOWN_VIPS_KEY: first.versions()})
        assert differ == []
        _put(store, _inst("i2", vip="pay", svip="pay-s"))
        await _wait_for(box, frozenset({"shop", "pay", "pay-s"}))
        builds = core.counters.known_names_builds
        _put(store, _inst("i3", vip="shop", status=Status.DOWN))  # one more registration of a known name
        _put(store, _inst("i9", vip="zzz"))
        await _wait_for(box, frozenset({"shop", "pay", "pay-s", "zzz"}))
        assert core.counters.known_names_builds == builds + 1  # the unchanged set was not rebuilt
        assert core.statistics().known_names == 4
    finally:
        await core.stop()


async def _until_ready(core: SnapshotBuilderCore) -> None:
    await core._ready.wait()


# --- the unknown-VIP budget of the VIP source -------------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        return [build_known_vips(self.names) if v == KNOWN_VIPS_KEY else build_vip(v, []) for v in vips]

    async def unsubscribe(self, vips: list[str]) -> None:
        return None


def test_the_guard_config_is_one_name_with_its_own_key_and_no_provisional_answer() -> None:
    source = VipSource(_Transport())
    assert source.validate(EXTENSION_CONFIG, KNOWN_VIPS_FILTER) is None
    assert "the extension configs are" in (source.validate(EXTENSION_CONFIG, "other") or "")
    assert source.key_of(EXTENSION_CONFIG, KNOWN_VIPS_FILTER) == KNOWN_VIPS_KEY
    assert source.provisional(KNOWN_VIPS_KEY) is None
    assert EXTENSION_CONFIG in source.type_urls


def test_past_the_budget_a_new_unknown_vip_is_refused_but_known_and_held_ones_never() -> None:
    source = VipSource(_Transport(), VipSourceSettings(max_unknown_vips=2))
    cache = SnapshotCache([source])
    cache.apply(VIP_SOURCE, build_known_vips(["real"]))  # the host applies it: the source observes it
    for junk in ("junk-1", "junk-2"):
        assert source.validate(CLUSTER, junk) is None
        assert cache.provisional((VIP_SOURCE, junk))
    reason = source.validate(CLUSTER, "junk-3")
    assert reason is not None and "junk-3" in reason and "--xds-max-unknown-vips" in reason
    assert source.validate(ENDPOINT, "junk-1") is None  # held already: not new
    assert source.validate(LISTENER, "junk-2:8080") is None
    assert source.validate(CLUSTER, "real") is None  # known: never refused by the budget
    assert cache.provisional((VIP_SOURCE, "real"))
    stats = source.statistics()
    assert (stats.known_names, stats.vip_keys_held, stats.unknown_vip_keys_held) == (1, 3, 2)
    assert (stats.unknown_vip_budget, stats.refused_by_budget) == (2, 1)

    cache.apply(VIP_SOURCE, build_known_vips(["real", "junk-1"]))  # junk-1 registered meanwhile
    assert source.statistics().unknown_vip_keys_held == 1
    assert source.validate(CLUSTER, "junk-3") is None
    cache.drop_provisional((VIP_SOURCE, "junk-2"))  # refused by a per-stream bound, say: not held after all
    assert source.statistics().unknown_vip_keys_held == 0
    cache.apply(VIP_SOURCE, build_known_vips([]))  # every name deregistered: held keys count again
    assert source.statistics().unknown_vip_keys_held == 2  # junk-1 and real
    cache.evict((VIP_SOURCE, "real"))
    assert source.statistics() == source.statistics().__class__(0, 1, 1, 2, 1)


def test_before_the_known_names_arrive_every_vip_counts_as_unknown() -> None:
    source = VipSource(_Transport(), VipSourceSettings(max_unknown_vips=1))
    assert source.statistics().known_names == -1
    source.provisional("a")
    assert source.validate(CLUSTER, "b") is not None
    source.observe(build_known_vips(["b"]))
    assert source.validate(CLUSTER, "b") is None


# --- the host holds a pinned key whatever its sessions do -------------------------------------------------


async def test_a_pinned_key_is_fetched_once_and_never_evicted() -> None:
    transport = _Transport()
    transport.names = ["shop"]
    source = VipSource(transport)
    host = XdsHost("h", [source], HostSettings(unsubscribe_grace_s=0), authenticate=StaticTokens())
    await host.pin(VIP_SOURCE, [KNOWN_VIPS_KEY])
    assert (VIP_SOURCE, KNOWN_VIPS_KEY) in host.cache
    assert source.statistics().known_names == 1
    host._idle_since[(VIP_SOURCE, KNOWN_VIPS_KEY)] = 0.0  # as if its last session went away long ago
    assert await host.evict_idle() == []
    assert (VIP_SOURCE, KNOWN_VIPS_KEY) in host.cache
    assert host.apply(VIP_SOURCE, [build_known_vips(["shop", "pay"])]) == []  # wanted with no session
    assert source.statistics().known_names == 2
    assert host.statistics().keys_pinned == 1


@pytest.mark.parametrize("names", [0, 1, 10_000])
def test_known_vips_config_size_is_about_110_bytes_a_name(names: int) -> None:
    body = build_known_vips([f"vip-{i:05d}" for i in range(names)]).resources[0].body or b""
    assert len(body) <= 340 + 120 * max(names, 1)  # the placeholder stands in for no names
