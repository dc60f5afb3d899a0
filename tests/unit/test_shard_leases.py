"""RegistryShardCore against an in-memory store that yields between calls: concurrent registrations of one
instance leave exactly one live lease, and the lease book follows the lease etcd holds."""

from __future__ import annotations

import asyncio
import random

from meshactors.errors import Conflict
from meshactors.model import Instance
from meshactors.registry.shard import RegistryShardCore
from meshactors.registry.shardmap import ShardMap
from meshactors.store.base import KeyValue
from meshactors.store.keys import KeySchema


class LeaseStore:
    """The part of the Store a shard writes through, with leases; every call yields to other tasks first."""

    def __init__(self, seed: int) -> None:
        self.kv: dict[str, KeyValue] = {}
        self.leases: set[int] = set()
        self.rev = 1
        self._ids = iter(range(1, 1_000_000))
        self._rand = random.Random(seed)

    async def _yield(self) -> None:
        for _ in range(self._rand.randint(0, 3)):
            await asyncio.sleep(0)

    async def grant_lease(self, ttl_s: int) -> int:
        await self._yield()
        lease = next(self._ids)
        self.leases.add(lease)
        return lease

    async def revoke_lease(self, lease_id: int) -> None:
        await self._yield()
        self.leases.discard(lease_id)
        for key in [k for k, v in self.kv.items() if v.lease == lease_id]:
            del self.kv[key]
            self.rev += 1

    async def keep_alive(self, lease_id: int) -> int:
        return 90 if lease_id in self.leases else 0

    async def get(self, key: str) -> KeyValue | None:
        await self._yield()
        return self.kv.get(key)

    def _put(self, key: str, value: bytes, lease: int) -> int:
        self.rev += 1
        old = self.kv.get(key)
        self.kv[key] = KeyValue(key, value, old.create_revision if old else self.rev, self.rev, lease)
        return self.rev

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        await self._yield()
        if key in self.kv:
            raise Conflict(f"{key} already exists")
        revision = self._put(key, value, lease)
        await self._yield()  # the answer takes its time too: writers may resume in another order
        return revision

    async def replace(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        await self._yield()
        if key not in self.kv or self.kv[key].mod_revision != mod_revision:
            raise Conflict(f"{key} changed since revision {mod_revision}")
        revision = self._put(key, value, lease)
        await self._yield()
        return revision


async def test_concurrent_re_registrations_leave_one_lease_and_the_book_follows_it() -> None:
    for seed in range(50):
        store = LeaseStore(seed)
        shard = RegistryShardCore(store, KeySchema(), ShardMap(["registry-shard-0"]), "registry-shard-0")  # type: ignore[arg-type]
        shard._ready.set()  # no feed here: the shard's own writes are what it knows
        inst = Instance(app="", instance_id="i-1", host="127.0.0.1", vip="orders", port=8080)
        outcomes = await asyncio.gather(*(shard.register(inst) for _ in range(12)), return_exceptions=True)
        assert any(not isinstance(o, BaseException) for o in outcomes)
        for _ in range(50):  # replaced leases are revoked in the background
            await asyncio.sleep(0)
        [kv] = store.kv.values()
        assert store.leases == {kv.lease}, f"seed {seed}: leases {store.leases} leaked, the key holds {kv.lease}"
        entry = shard.book.get(next(iter(shard._stored)))
        assert entry is not None and entry.lease_id == kv.lease, f"seed {seed}: the book tracks a revoked lease"
        await shard.stop()
