"""RegistryFeed without etcd: resume at last revision + 1, re-list on compaction and on a backwards revision,
skip what does not decode, filter by VIP; load_instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from meshactors.errors import Compacted, InvalidArgument, Unavailable
from meshactors.model import Instance, InstanceRef
from meshactors.store import codec, feed
from meshactors.store.base import KeyValue, WatchBatch, WatchEvent
from meshactors.store.feed import Batch, Loaded, Registered, RegistryFeed, Removed, load_instances
from meshactors.store.keys import KeySchema

KEYS = KeySchema("/t")


@dataclass
class Session:
    """How one watch_prefix call behaves: `batches` replaces the history it would deliver; after `break_after`
    batches it fails as Unavailable (None: it delivers history and then waits for more, forever)."""

    batches: tuple[WatchBatch, ...] | None = None
    break_after: int | None = None


@dataclass
class FakeStore:
    """An in-memory Store: current keys, the event history (one event per revision) and a compaction point."""

    kvs: dict[str, KeyValue] = field(default_factory=dict)
    history: list[WatchEvent] = field(default_factory=list)
    rev: int = 0
    compact_revision: int = 0
    sessions: list[Session] = field(default_factory=list)
    watch_calls: list[int] = field(default_factory=list)
    list_calls: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        self.rev += 1
        old = self.kvs.get(key)
        create = old.create_revision if old else self.rev
        self.kvs[key] = KeyValue(key, value, create, self.rev, lease)
        self.history.append(WatchEvent("put", key, value, self.rev, lease, old.value if old else b""))
        self.changed.set()
        return self.rev

    def remove(self, key: str) -> int:
        self.rev += 1
        old = self.kvs.pop(key)
        self.history.append(WatchEvent("delete", key, b"", self.rev, 0, old.value))
        self.changed.set()
        return self.rev

    async def list_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        self.list_calls += 1
        return [kv for k, kv in sorted(self.kvs.items()) if k.startswith(prefix)], self.rev

    async def revision(self) -> int:
        return self.rev

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]:
        self.watch_calls.append(start_revision)
        session = self.sessions.pop(0) if self.sessions else Session()
        if start_revision <= self.compact_revision:
            raise Compacted(start_revision, self.compact_revision)
        sent = 0
        if session.batches is not None:
            for batch in session.batches:
                if session.break_after is not None and sent >= session.break_after:
                    raise Unavailable("stream broken (scripted)")
                yield batch
                sent += 1
            await asyncio.Event().wait()
        next_rev = start_revision
        while True:
            pending = [e for e in self.history if e.mod_revision >= next_rev and e.key.startswith(prefix)]
            if not pending:
                self.changed.clear()
                await self.changed.wait()
                continue
            for ev in pending:
                if session.break_after is not None and sent >= session.break_after:
                    raise Unavailable("stream broken (scripted)")
                yield WatchBatch((ev,), self.rev)
                sent += 1
                next_rev = ev.mod_revision + 1


def _inst(vip: str, instance_id: str, port: int = 8080) -> Instance:
    return Instance(app="app", instance_id=instance_id, host="10.0.0.1", vip=vip, port=port)


def _put(store: FakeStore, inst: Instance, lease: int = 0) -> int:
    return store.put(KEYS.instance(inst.ref), codec.encode_instance(inst), lease)


async def _take(it: AsyncIterator[Loaded | Batch], n: int, timeout_s: float = 2.0) -> list[Loaded | Batch]:
    out: list[Loaded | Batch] = []

    async def run() -> None:
        async for item in it:
            out.append(item)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout_s)
    return out


def _feed(store: FakeStore, start_revision: int | None = None, **kw: object) -> RegistryFeed:
    return RegistryFeed(store, KEYS, start_revision, name="test", retry_initial_s=0.001, retry_max_s=0.01, **kw)  # type: ignore[arg-type]


def _revisions(items: list[Loaded | Batch]) -> list[int]:
    return [e.revision for item in items if isinstance(item, Batch) for e in item.events]


async def test_first_listing_then_changes_decoded() -> None:
    store = FakeStore()
    a = _inst("orders", "a")
    _put(store, a, lease=7)
    f = _feed(store)
    it = aiter(f)
    [loaded] = await _take(it, 1)
    assert loaded == Loaded((Registered(a.ref, a, 1, 7),), 1)
    b = _inst("orders", "b")
    rb = _put(store, b, lease=8)
    rd = store.remove(KEYS.instance(a.ref))
    got = await _take(it, 2)
    assert got == [Batch((Registered(b.ref, b, rb, 8),), rb + 1), Batch((Removed(a.ref, rd, a),), rd)]
    assert f.statistics() == feed.FeedStatistics(
        events=2, loaded=1, skipped_undecodable=0, resyncs=0, reconnects=0, revision=rd
    )


async def test_a_broken_stream_resumes_at_last_revision_plus_one_and_repeats_nothing() -> None:
    store = FakeStore(sessions=[Session(break_after=2), Session(break_after=1)])
    _put(store, _inst("orders", "a"))
    f = _feed(store)
    it = aiter(f)
    [loaded] = await _take(it, 1)
    for i in range(5):
        _put(store, _inst("orders", f"n{i}", 9000 + i))
    got = await _take(it, 5)
    assert _revisions(got) == [2, 3, 4, 5, 6]  # in order, none twice, none missing
    assert store.watch_calls == [loaded.revision + 1, 4, 5]
    assert store.list_calls == 1
    stats = f.statistics()
    assert (stats.reconnects, stats.resyncs, stats.loaded, stats.events, stats.revision) == (2, 0, 1, 5, 6)


async def test_a_compacted_start_revision_yields_a_listing_and_continues_from_it() -> None:
    store = FakeStore()
    for i in range(4):
        _put(store, _inst("orders", f"n{i}", 9000 + i))
    store.compact_revision = 3
    f = _feed(store, start_revision=2)
    it = aiter(f)
    [loaded] = await _take(it, 1)
    assert isinstance(loaded, Loaded)
    assert loaded.revision == 4
    assert sorted(r.ref.instance_id for r in loaded.items) == ["n0", "n1", "n2", "n3"]
    rev = _put(store, _inst("orders", "late"))
    [batch] = await _take(it, 1)
    assert isinstance(batch, Batch)
    assert [e.revision for e in batch.events] == [rev]
    assert store.watch_calls == [2, 5]
    stats = f.statistics()
    assert (stats.loaded, stats.resyncs, stats.revision) == (1, 1, rev)


async def test_compaction_while_resuming_re_lists() -> None:
    store = FakeStore(sessions=[Session(break_after=1)])
    _put(store, _inst("orders", "a"))
    f = _feed(store)
    it = aiter(f)
    await _take(it, 1)
    _put(store, _inst("orders", "b"))
    _put(store, _inst("orders", "c"))
    [first] = await _take(it, 1)
    assert _revisions([first]) == [2]
    store.compact_revision = store.rev  # the stream broke; the history it resumes from is gone
    [loaded] = await _take(it, 1)
    assert isinstance(loaded, Loaded)
    assert loaded.revision == 3
    assert store.watch_calls == [2, 3]
    assert f.statistics().resyncs == 1


async def test_an_event_at_or_below_the_last_revision_re_lists_instead_of_passing_it_on() -> None:
    store = FakeStore()
    a, b = _inst("orders", "a"), _inst("orders", "b")
    _put(store, a)
    _put(store, b)
    ra = _put(store, a.with_status(a.status))  # revision 3
    stale = WatchEvent("put", KEYS.instance(b.ref), codec.encode_instance(b), 2)
    store.sessions = [Session(batches=(WatchBatch((store.history[2],), 3), WatchBatch((stale,), 3)))]
    f = _feed(store, start_revision=3)
    it = aiter(f)
    got = await _take(it, 2)
    assert isinstance(got[0], Batch)
    assert [e.revision for e in got[0].events] == [ra]
    assert isinstance(got[1], Loaded)  # not the stale event
    assert got[1].revision == 3
    assert store.list_calls == 1
    rev = _put(store, _inst("orders", "c"))
    [batch] = await _take(it, 1)
    assert _revisions([batch]) == [rev]
    assert store.watch_calls == [3, 4]
    assert f.statistics().resyncs == 1


async def test_events_out_of_order_within_one_batch_re_list() -> None:
    store = FakeStore()
    for i in range(3):
        _put(store, _inst("orders", f"n{i}"))
    h = store.history
    store.sessions = [Session(batches=(WatchBatch((h[2], h[1]), 3),))]
    f = _feed(store, start_revision=2)
    [loaded] = await _take(aiter(f), 1)
    assert isinstance(loaded, Loaded)
    assert f.statistics().events == 0


async def test_undecodable_keys_and_values_are_skipped_counted_and_logged_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr(feed, "_skip_log", feed._SkipLog(limit=2, window_s=60, clock=lambda: now[0]))
    store = FakeStore()
    good = _inst("orders", "a")
    _put(store, good)
    store.put(KEYS.instance(InstanceRef("orders", "garbage")), b"\xc1")
    store.put(f"{KEYS.instances}no-instance-id", codec.encode_instance(good))
    f = _feed(store)
    it = aiter(f)
    with capture_logs() as logs:
        [loaded] = await _take(it, 1)
        assert isinstance(loaded, Loaded)
        assert [r.ref for r in loaded.items] == [good.ref]
        long_id = "x" * 5000
        store.put(KEYS.instance(InstanceRef("orders", long_id)), b"not msgpack \xc1")
        rev = _put(store, _inst("orders", "b"))
        got = await _take(it, 2)
        now[0] = 61.0
        store.put(KEYS.instance(InstanceRef("orders", "later")), b"\xc1")
        await _take(it, 1)
    assert [e.revision for e in got[1].events] == [rev]
    assert got[0].events == ()  # the batch still arrives: the feed advanced past it
    assert f.statistics().skipped_undecodable == 4
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == [
        "skipping undecodable registration",
        "skipping undecodable registration",
        "more undecodable registrations skipped without logging",
        "skipping undecodable registration",
    ]
    assert errors[2]["suppressed"] == 1
    assert all(len(e.get("key", "")) < 300 and len(e.get("error", "")) < 300 for e in errors)


async def test_owns_keeps_only_the_vips_it_accepts() -> None:
    store = FakeStore()
    mine, other = _inst("orders", "a"), _inst("billing", "b")
    _put(store, mine)
    _put(store, other)
    f = _feed(store, owns=lambda vip: vip == "orders")
    it = aiter(f)
    [loaded] = await _take(it, 1)
    assert [r.ref for r in loaded.items] == [mine.ref]
    store.remove(KEYS.instance(other.ref))
    _put(store, _inst("billing", "c"))
    rd = store.remove(KEYS.instance(mine.ref))
    got = await _take(it, 3)
    assert [b.events for b in got[:2]] == [(), ()]
    assert got[2].events == (Removed(mine.ref, rd, mine),)
    assert f.statistics().events == 1
    assert f.statistics().skipped_undecodable == 0


async def test_removed_without_a_decodable_previous_record_is_still_delivered() -> None:
    store = FakeStore()
    key = KEYS.instance(InstanceRef("orders", "a"))
    store.put(key, b"\xc1")
    f = _feed(store)
    it = aiter(f)
    await _take(it, 1)
    rd = store.remove(key)
    [batch] = await _take(it, 1)
    assert batch.events == (Removed(InstanceRef("orders", "a"), rd, None),)


async def test_iterating_again_continues_where_the_consumer_stopped() -> None:
    store = FakeStore()
    f = _feed(store)
    await _take(aiter(f), 1)
    r1 = _put(store, _inst("orders", "a"))
    assert _revisions(await _take(aiter(f), 1)) == [r1]
    r2 = _put(store, _inst("orders", "b"))
    assert _revisions(await _take(aiter(f), 1)) == [r2]
    assert store.list_calls == 1


async def test_load_instances_decodes_filters_and_skips() -> None:
    store = FakeStore()
    a, b = _inst("orders", "a"), _inst("billing", "b")
    _put(store, a, lease=3)
    _put(store, b)
    store.put(KEYS.instance(InstanceRef("orders", "bad")), b"\xc1")
    items, revision = await load_instances(store, KEYS)  # type: ignore[arg-type]
    assert revision == 3
    assert sorted(r.ref.instance_id for r in items) == ["a", "b"]
    assert Registered(a.ref, a, 1, 3) in items
    mine, _ = await load_instances(store, KEYS, owns=lambda vip: vip == "billing")  # type: ignore[arg-type]
    assert [r.instance for r in mine] == [b]


def test_start_revision_must_be_positive() -> None:
    with pytest.raises(InvalidArgument, match="start_revision"):
        _feed(FakeStore(), start_revision=0)
