"""Policy key schema and PolicyFeed without etcd: decoded puts and deletes, full load, resume at last revision + 1,
re-list on compaction, skip what does not decode; PolicyTable's effective policies."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from meshactors.errors import InvalidArgument
from meshactors.policy import codec as policy_codec
from meshactors.policy.load import load
from meshactors.policy.model import Policy
from meshactors.store.keys import KeySchema
from meshactors.store.policy_feed import (
    PolicyBatch,
    PolicyFeed,
    PolicyLoaded,
    PolicyPut,
    PolicyRemoved,
    PolicyTable,
    load_policies,
)
from tests.unit.test_registry_feed import FakeStore, Session, _take

KEYS = KeySchema("/t")


def _policy(text: str) -> Policy:
    [p] = load(text)
    return p


ORDERS = _policy("vip: orders\nrouting:\n  timeout: 2s\n")
MESH = _policy("vip: '*'\nrouting:\n  retries:\n    attempts: 2\n    perTryTimeout: 1s\n")


def _put(store: FakeStore, policy: Policy) -> int:
    return store.put(KEYS.policy(policy.vip), policy_codec.encode(policy))


def _feed(store: FakeStore, start_revision: int | None = None, **kw: object) -> PolicyFeed:
    return PolicyFeed(store, KEYS, start_revision, name="test", retry_initial_s=0.001, retry_max_s=0.01, **kw)  # type: ignore[arg-type]


# ---- key schema ----------------------------------------------------------------------------------------------


def test_policy_keys_round_trip_and_the_mesh_wide_key_cannot_be_a_vip() -> None:
    assert KEYS.policies == "/t/policies/"
    assert KEYS.policy("orders.prod") == "/t/policies/orders.prod"
    assert KEYS.policy("*") == "/t/policies/_mesh"
    assert KEYS.parse_policy("/t/policies/orders.prod") == "orders.prod"
    assert KEYS.parse_policy("/t/policies/_mesh") == "*"
    assert not KEYS.policy("x").startswith(KEYS.instances) and not KEYS.instances.startswith(KEYS.policies)
    with pytest.raises(InvalidArgument):
        KEYS.policy("_mesh")  # not a VIP name: no VIP's key is the mesh-wide one
    for bad in ("/t/instances/orders/a", "/t/policies/", "/t/policies/a/b", "/t/policies/Bad", "/u/policies/x"):
        with pytest.raises(InvalidArgument):
            KEYS.parse_policy(bad)


# ---- feed ----------------------------------------------------------------------------------------------------


async def test_first_listing_then_puts_and_deletes_decoded() -> None:
    store = FakeStore()
    r1 = _put(store, ORDERS)
    it = aiter(_feed(store))
    [loaded] = await _take(it, 1)
    assert loaded == PolicyLoaded((PolicyPut("orders", ORDERS, r1),), r1)
    r2 = _put(store, MESH)
    r3 = store.remove(KEYS.policy("orders"))
    got = await _take(it, 2)
    assert got == [
        PolicyBatch((PolicyPut("*", MESH, r2),), r3),
        PolicyBatch((PolicyRemoved("orders", r3, ORDERS),), r3),
    ]


async def test_a_broken_stream_resumes_at_last_revision_plus_one() -> None:
    store = FakeStore(sessions=[Session(break_after=1)])
    _put(store, MESH)
    f = _feed(store)
    it = aiter(f)
    [loaded] = await _take(it, 1)
    for vip in ("a", "b", "c"):
        _put(store, Policy(vip, ORDERS.destination, ORDERS.routing))
    got = await _take(it, 3)
    assert [e.revision for b in got if isinstance(b, PolicyBatch) for e in b.events] == [2, 3, 4]
    assert store.watch_calls == [loaded.revision + 1, 3]
    assert (f.statistics().reconnects, f.statistics().resyncs) == (1, 0)


async def test_a_compacted_start_revision_re_lists() -> None:
    store = FakeStore()
    _put(store, ORDERS)
    _put(store, MESH)
    store.compact_revision = 2
    f = _feed(store, start_revision=1)
    [loaded] = await _take(aiter(f), 1)
    assert isinstance(loaded, PolicyLoaded) and {p.vip for p in loaded.items} == {"orders", "*"}
    assert f.statistics().resyncs == 1


async def test_undecodable_keys_values_and_mismatched_vips_are_skipped_and_logged() -> None:
    store = FakeStore()
    store.put("/t/policies/Not_A_Vip", policy_codec.encode(ORDERS))
    store.put(KEYS.policy("orders"), b"\xc1 not msgpack")
    store.put(KEYS.policy("other"), policy_codec.encode(ORDERS))  # its document names orders
    r = _put(store, MESH)
    f = _feed(store)
    with capture_logs() as logs:
        [loaded] = await _take(aiter(f), 1)
    assert loaded == PolicyLoaded((PolicyPut("*", MESH, r),), r)
    assert f.statistics().skipped_undecodable == 3
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["skipping undecodable policy"] * 3


async def test_wants_keeps_only_the_vips_it_accepts() -> None:
    store = FakeStore()
    _put(store, ORDERS)
    r = _put(store, MESH)
    [loaded] = await _take(aiter(_feed(store, wants=lambda vip: vip == "*")), 1)
    assert loaded == PolicyLoaded((PolicyPut("*", MESH, r),), r)


async def test_load_policies_gives_documents_by_vip_with_revisions() -> None:
    store = FakeStore()
    r1 = _put(store, ORDERS)
    r2 = _put(store, ORDERS)  # updated: same create revision, new mod revision
    docs, revision = await load_policies(store, KEYS)
    assert revision == r2
    assert (docs["orders"].mod_revision, docs["orders"].create_revision, docs["orders"].policy) == (r2, r1, ORDERS)


def test_start_revision_must_be_positive() -> None:
    with pytest.raises(InvalidArgument):
        _feed(FakeStore(), start_revision=0)


# ---- table ---------------------------------------------------------------------------------------------------


def test_table_merges_over_the_mesh_wide_document_and_says_what_a_change_touched() -> None:
    table = PolicyTable()
    assert table.apply(PolicyLoaded((PolicyPut("orders", ORDERS, 1),), 1)) == {"*"}
    assert table.effective("orders") == ORDERS
    assert table.effective("nobody") is None
    assert table.apply(PolicyBatch((PolicyPut("*", MESH, 2),), 2)) == {"*"}
    eff = table.effective("orders")
    assert eff is not None and eff.routing is not None
    assert (eff.routing.timeout_ms, eff.routing.retries and eff.routing.retries.attempts) == (2000, 2)
    bare = table.effective("nobody")
    assert bare is not None and bare.vip == "nobody" and bare.routing == MESH.routing
    assert table.apply(PolicyBatch((PolicyRemoved("orders", 3, ORDERS),), 3)) == {"orders"}
    assert table.revision == 3
