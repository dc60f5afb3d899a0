"""PolicyStore without etcd: validated in full before anything is written, all or nothing, unchanged documents not
written, `*` checked against stored VIP documents (and vice versa), fenced and retried, version problems."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from meshactors.errors import Conflict, InvalidArgument, NotFound
from meshactors.model import Instance
from meshactors.policy import codec as policy_codec
from meshactors.policy.load import InvalidPolicy, load
from meshactors.store import codec
from meshactors.store.base import KeyValue, Txn
from meshactors.store.keys import KeySchema
from meshactors.store.policies import MAX_WRITES, PolicyStore
from tests.unit.test_registry_feed import FakeStore

KEYS = KeySchema("/t")


@dataclass
class TxnStore(FakeStore):
    """FakeStore with get and commit (etcd's conditions); `before_commit` runs once, just before the next commit."""

    commits: list[Txn] = field(default_factory=list)
    before_commit: list[object] = field(default_factory=list)

    async def get(self, key: str) -> KeyValue | None:
        return self.kvs.get(key)

    async def commit(self, txn: Txn) -> int:
        if self.before_commit:
            self.before_commit.pop(0)(self)  # type: ignore[operator]
        for key, rev in txn.expect.items():
            now = self.kvs[key].mod_revision if key in self.kvs else 0
            if now != rev:
                raise Conflict(f"{key} is at {now}, expected {rev}")
        if txn.quiet_prefix:
            late = [
                k for k, kv in self.kvs.items() if k.startswith(txn.quiet_prefix) and kv.mod_revision > txn.quiet_since
            ]
            if late:
                raise Conflict(f"{late} written after {txn.quiet_since}")
        self.commits.append(txn)
        for key, value in txn.puts.items():
            self.put(key, value)
        for key in txn.deletes:
            self.remove(key)
        return self.rev


def _policies(store: TxnStore) -> dict[str, bytes]:
    return {k: kv.value for k, kv in store.kvs.items() if k.startswith(KEYS.policies)}


GOOD = "vip: orders\nrouting:\n  timeout: 2s\n"
SPLIT = "vip: orders\nrouting:\n  split: [{version: v1, weight: 90}, {version: v2, weight: 10}]\n"
BAD_WEIGHTS = "vip: orders\nrouting:\n  split: [{version: v1, weight: 90}, {version: v2, weight: 20}]\n"


async def test_apply_creates_then_reports_unchanged_without_writing_then_updates_with_a_diff() -> None:
    store = TxnStore()
    ps = PolicyStore(store, KEYS)
    first = await ps.apply(GOOD)
    assert [(c.vip, c.action, c.previous_revision) for c in first.changes] == [("orders", "created", 0)]
    assert "+routing:" in first.changes[0].diff and "+  timeout: 2s" in first.changes[0].diff
    assert first.revision == store.rev
    again = await ps.apply(GOOD)
    assert [(c.action, c.diff) for c in again.changes] == [("unchanged", "")]
    assert len(store.commits) == 1 and again.revision == first.revision
    updated = await ps.apply("vip: orders\nrouting:\n  timeout: 3s\n")
    assert updated.changes[0].action == "updated" and updated.changes[0].previous_revision == first.revision
    assert "-  timeout: 2s" in updated.changes[0].diff and "+  timeout: 3s" in updated.changes[0].diff
    stored = await ps.get("orders")
    assert stored.mod_revision == updated.revision and stored.policy.routing is not None
    assert stored.policy.routing.timeout_ms == 3000


async def test_dry_run_diffs_and_writes_nothing() -> None:
    store = TxnStore()
    result = await PolicyStore(store, KEYS).apply(GOOD, dry_run=True)
    assert result.dry_run and result.changes[0].action == "created" and result.changes[0].diff
    assert _policies(store) == {} and store.commits == []


async def test_a_bad_document_names_its_field_and_nothing_is_written() -> None:
    store = TxnStore()
    ps = PolicyStore(store, KEYS)
    with pytest.raises(InvalidPolicy) as info:
        await ps.apply(BAD_WEIGHTS)
    assert info.value.message == "routing.split[1].weight: weights must add up to 100, got 110"
    assert isinstance(info.value, InvalidArgument) and _policies(store) == {}


async def test_several_documents_all_or_nothing() -> None:
    store = TxnStore()
    ps = PolicyStore(store, KEYS)
    text = "vip: a\nrouting: {timeout: 1s}\n---\nvip: b\nrouting: {timeout: 0s}\n---\nvip: c\n"
    with pytest.raises(InvalidPolicy) as info:
        await ps.apply(text)
    assert [(e.document, e.vip, e.field) for e in info.value.errors] == [(2, "b", "routing.timeout")]
    assert "document 2 (vip 'b'): routing.timeout" in info.value.message
    assert _policies(store) == {}
    ok = await ps.apply(text.replace("0s", "2s"))
    assert [c.action for c in ok.changes] == ["created"] * 3 and len(store.commits) == 1
    assert set(_policies(store)) == {KEYS.policy(v) for v in "abc"}


async def test_vip_documents_are_checked_against_the_stored_mesh_wide_one_and_back() -> None:
    store = TxnStore()
    ps = PolicyStore(store, KEYS)
    await ps.apply("vip: '*'\nrouting: {retries: {perTryTimeout: 500ms}}\n")
    # hedging needs a per-try timeout: the stored `*` document gives it
    await ps.apply("vip: orders\nrouting: {hedging: {onPerTryTimeout: true}}\n")
    with pytest.raises(InvalidPolicy) as info:  # a new `*` without it would leave orders inconsistent
        await ps.apply("vip: '*'\nrouting: {timeout: 10s}\n")
    assert info.value.errors[0].vip == "orders" and info.value.field == "routing.hedging.onPerTryTimeout"
    with pytest.raises(InvalidPolicy):  # and so would deleting it
        await ps.delete("*")
    with pytest.raises(InvalidPolicy) as info:  # the stored `*` makes a per-try timeout of 1s too long
        await ps.apply("vip: other\nrouting: {timeout: 200ms}\n")
    assert info.value.field == "routing.retries.perTryTimeout"
    await ps.delete("orders")
    await ps.delete("*")
    assert _policies(store) == {}


async def test_expected_revisions_fence_the_apply() -> None:
    store = TxnStore()
    ps = PolicyStore(store, KEYS)
    with pytest.raises(Conflict):
        await ps.apply(GOOD, expected_revisions={"orders": 5})
    created = await ps.apply(GOOD, expected_revisions={"orders": 0})
    with pytest.raises(Conflict, match="at revision"):
        await ps.apply(SPLIT, expected_revisions={"orders": 0})
    await ps.apply(SPLIT, expected_revisions={"orders": created.revision})
    with pytest.raises(InvalidPolicy, match="names no document"):
        await ps.apply(GOOD, expected_revisions={"nobody": 0})


async def test_an_apply_that_lost_a_race_is_re_validated_and_retried_unless_fenced_by_the_caller() -> None:
    store = TxnStore()
    ps = PolicyStore(store, KEYS)
    mesh = "vip: '*'\nrouting: {timeout: 9s}\n"
    orders = policy_codec.encode(load(GOOD)[0])
    store.before_commit.append(lambda s: s.put(KEYS.policy("orders"), orders))
    result = await ps.apply(mesh)  # the first commit finds orders written after the read: read again, commit
    assert result.changes[0].action == "created" and len(store.commits) == 1
    at = store.kvs[KEYS.policy("orders")].mod_revision
    store.before_commit.append(lambda s: s.put(KEYS.policy("*"), policy_codec.encode(load(mesh)[0])))
    with pytest.raises(Conflict):  # the `*` document it was validated against moved; the caller fenced: no retry
        await ps.apply("vip: orders\nrouting: {timeout: 3s}\n", expected_revisions={"orders": at})
    assert len(store.commits) == 1


async def test_delete_and_get_of_unknown_vips_are_not_found_and_bad_names_invalid() -> None:
    ps = PolicyStore(TxnStore(), KEYS)
    with pytest.raises(NotFound):
        await ps.get("nobody")
    with pytest.raises(NotFound):
        await ps.delete("nobody")
    with pytest.raises(InvalidArgument):
        await ps.get("Bad_Name")
    with pytest.raises(InvalidArgument):
        await ps.get("")


async def test_list_puts_the_mesh_wide_document_first() -> None:
    ps = PolicyStore(TxnStore(), KEYS)
    await ps.apply("vip: zeta\n---\nvip: '*'\nrouting: {timeout: 9s}\n---\nvip: alpha\n")
    items, revision = await ps.list()
    assert [s.vip for s in items] == ["*", "alpha", "zeta"] and revision > 0


async def test_a_split_naming_a_version_without_an_up_instance_is_a_problem_not_an_error() -> None:
    store = TxnStore()
    inst = Instance(app="o", instance_id="a", host="10.0.0.1", vip="orders", port=80, version_label="v1")
    store.put(KEYS.instance(inst.ref), codec.encode_instance(inst))
    result = await PolicyStore(store, KEYS).apply(SPLIT)
    assert result.changes[0].action == "created"
    assert [(p.vip, p.field) for p in result.problems] == [("orders", "routing.split[1].version")]
    assert "v2" in result.problems[0].reason and "503" in result.problems[0].reason


async def test_one_apply_changes_at_most_what_one_etcd_transaction_holds() -> None:
    store = TxnStore()
    text = "\n---\n".join(f"vip: s{i}" for i in range(MAX_WRITES + 1))
    with pytest.raises(InvalidArgument, match="at most"):
        await PolicyStore(store, KEYS).apply(text)
    assert _policies(store) == {}


def test_api_error_messages_are_one_bounded_line() -> None:
    from meshactors.registry.policy_service import MAX_MESSAGE_CHARS, MAX_REPORTED_ERRORS, error_message

    text = "\n---\n".join(f"vip: s{i}\nrouting: {{timeout: 0s}}" for i in range(MAX_REPORTED_ERRORS + 5))
    with pytest.raises(InvalidPolicy) as info:
        load(text)
    message = error_message(info.value)
    assert "\n" not in message and len(message) <= MAX_MESSAGE_CHARS
    assert message.startswith("document 1 (vip 's0'): routing.timeout: must be longer than 0")
    assert message.endswith("; ... and 5 more")
