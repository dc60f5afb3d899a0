"""The store against a real etcd: fenced writes, leases, and a watch that resumes and re-lists."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from meshactors.errors import Conflict, NotFound, Unavailable
from meshactors.store.etcd import EtcdStore
from meshactors.store.watch import Changes, ResumableWatch, Resync

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _prefix() -> str:
    return f"/storetest/{uuid.uuid4().hex[:8]}/"


async def test_fenced_writes(store: EtcdStore) -> None:
    p = _prefix()
    rev = await store.create(p + "a", b"1")
    with pytest.raises(Conflict):
        await store.create(p + "a", b"2")
    rev2 = await store.replace(p + "a", b"2", rev)
    assert rev2 > rev
    with pytest.raises(Conflict):
        await store.replace(p + "a", b"3", rev)  # stale fence
    kv = await store.get(p + "a")
    assert kv is not None and kv.value == b"2" and kv.mod_revision == rev2
    with pytest.raises(Conflict):
        await store.delete(p + "a", mod_revision=rev)
    await store.delete(p + "a", mod_revision=rev2)
    assert await store.get(p + "a") is None
    with pytest.raises(NotFound):
        await store.delete(p + "a")


async def test_lease_keepalive_and_expiry(store: EtcdStore) -> None:
    p = _prefix()
    lease = await store.grant_lease(2)
    await store.create(p + "k", b"v", lease)
    for _ in range(6):  # 3 s: longer than the TTL, kept alive
        assert await store.keep_alive(lease) > 0
        await asyncio.sleep(0.5)
    assert await store.get(p + "k") is not None
    await asyncio.sleep(3.5)  # no keep-alive: etcd expires the lease and deletes the key
    assert await store.get(p + "k") is None
    assert await store.keep_alive(lease) == 0
    with pytest.raises(NotFound):
        await store.create(p + "k2", b"v", lease)  # writing under a dead lease


async def _collect(watch: ResumableWatch, out: list[Any], stop_after_keys: int) -> None:
    keys = 0
    async for change in watch:
        out.append(change)
        if isinstance(change, Changes):
            keys += len(change.events)
        elif isinstance(change, Resync):
            keys += len(change.items)
        if keys >= stop_after_keys:
            return


async def test_watch_resumes_after_a_disconnect_without_missing_or_repeating(store: EtcdStore, stack: dict) -> None:
    p = _prefix()
    wstore = EtcdStore.from_spec(stack["etcd"])
    await wstore.connect()
    try:
        start = await store.revision() + 1
        watch = ResumableWatch(wstore, p, start, retry_initial_s=0.05)
        got: list[Any] = []
        task = asyncio.create_task(_collect(watch, got, 60))
        for i in range(30):
            await store.put(f"{p}{i:03d}", str(i).encode())
        await asyncio.wait_for(watch.connected.wait(), 5)
        await asyncio.sleep(0.2)
        # break the gRPC stream under the watch: its channel goes away and comes back
        await wstore.close()
        await wstore.connect()
        for i in range(30, 60):
            await store.put(f"{p}{i:03d}", str(i).encode())
        await asyncio.wait_for(task, 20)
    finally:
        await wstore.close()
    events = [ev for c in got if isinstance(c, Changes) for ev in c.events]
    assert [ev.key for ev in events] == [f"{p}{i:03d}" for i in range(60)]  # nothing missing, nothing twice
    revs = [ev.mod_revision for ev in events]
    assert revs == sorted(revs) and len(set(revs)) == 60
    assert watch.reconnects >= 1
    assert not any(isinstance(c, Resync) for c in got)


async def test_watch_from_a_compacted_revision_relists(store: EtcdStore) -> None:
    p = _prefix()
    old = await store.revision()
    for i in range(5):
        await store.put(f"{p}{i}", b"x")
    await store.delete(f"{p}0")
    now = await store.revision()
    await store.compact(now)
    watch = ResumableWatch(store, p, old + 1)
    got: list[Any] = []

    async def consume() -> None:
        async for change in watch:
            got.append(change)
            if isinstance(change, Changes):
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    await store.put(f"{p}9", b"y")
    await asyncio.wait_for(task, 10)
    assert isinstance(got[0], Resync)
    assert sorted(kv.key for kv in got[0].items) == [f"{p}{i}" for i in range(1, 5)]
    assert got[0].revision >= now
    assert isinstance(got[-1], Changes) and got[-1].events[0].key == f"{p}9"
    assert watch.resyncs == 1


async def test_unreachable_etcd_is_unavailable() -> None:
    dead = EtcdStore([("127.0.0.1", 1)], timeout_s=1.0)
    await dead.connect()
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await dead.get("/x")
        with pytest.raises(Unavailable):
            await dead.keep_alive(1)
    finally:
        await dead.close()
