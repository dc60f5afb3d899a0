"""RegistryShardCore: owns the registrations of its VIPs; writes them to the Store with leases; no Ray here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.auth.model import may_replace
from meshactors.errors import CodecError, Conflict, MeshError, NotFound, PermissionDenied, Unavailable
from meshactors.model import Instance, InstanceRef, Status, validate_instance, validate_ref
from meshactors.registry.leases import LeaseBook, SelfPreservationPolicy
from meshactors.registry.shardmap import ShardMap
from meshactors.store import codec
from meshactors.store.base import Store
from meshactors.store.feed import Batch, Registered, RegistryFeed, Removed, load_instances
from meshactors.store.keys import KeySchema

_FENCE_RETRIES = 5
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stored:
    """A registration as last seen in etcd."""

    instance: Instance
    mod_revision: int
    lease_id: int


@dataclass(frozen=True, slots=True)
class ShardSettings:
    sweep_interval_s: float = 1.0
    ready_wait_s: float = 5.0
    # An etcd call that fails as Unavailable (e.g. the member we talk to just died) is retried this long.
    etcd_retry_s: float = 3.0
    policy: SelfPreservationPolicy = field(default_factory=SelfPreservationPolicy)


class RegistryShardCore:
    """The registry logic of one shard, independent of how it is hosted (a Ray actor wraps it).

    State in memory is a cache of etcd: loaded on start, kept current by our own writes and a resumable watch.
    Every write is fenced on the key's mod revision, so two writers (e.g. a restarted shard and a retried call)
    can never overwrite each other blindly.
    """

    def __init__(
        self,
        store: Store,
        keys: KeySchema,
        shard_map: ShardMap,
        shard: str,
        settings: ShardSettings | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.shard_map = shard_map
        self.shard = shard
        self.settings = settings or ShardSettings()
        self.book = LeaseBook(self.settings.policy)
        self._stored: dict[InstanceRef, Stored] = {}
        self._tasks = TaskSet()
        self._ready = asyncio.Event()
        self._log = log.get("registry.shard", shard=shard)
        self.counters: dict[str, int] = {
            "registered": 0, "deregistered": 0, "heartbeats": 0, "expired": 0, "held": 0, "status_changes": 0,
        }  # fmt: skip
        self.loaded_revision = 0
        self._feed: RegistryFeed | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        """Load this shard's registrations from etcd (retrying until etcd answers), then follow changes."""
        backoff = 0.1
        while True:
            try:
                items, revision = await load_instances(self.store, self.keys, owns=self._owns, name=self.shard)
                break
            except Unavailable as exc:
                self._log.warning("waiting for etcd to load registrations", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        self._replace_all(items)
        self.loaded_revision = revision
        self._ready.set()
        self._log.info("shard loaded", instances=len(self._stored), revision=revision)
        self._tasks.spawn(self._follow(revision + 1), name=f"{self.shard}-watch")
        self._tasks.spawn(self._sweep_loop(), name=f"{self.shard}-sweep")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    def _owns(self, vip: str) -> bool:
        return self.shard_map.owner(vip) == self.shard

    async def _check_owner(self, vip: str) -> None:
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), self.settings.ready_wait_s)
            except TimeoutError:
                raise Unavailable(f"{self.shard} is still loading its registrations from etcd") from None
        owner = self.shard_map.owner(vip)
        if owner != self.shard:
            raise Unavailable(f"{self.shard} does not own VIP {vip!r} ({owner} does): shard maps disagree")

    # ---- the state cache ---------------------------------------------------------------------------------------

    def _replace_all(self, items: Iterable[Registered]) -> None:
        """A full listing of this shard's registrations (the feed filtered it by ownership)."""
        fresh = {r.ref: Stored(r.instance, r.revision, r.lease) for r in items}
        for ref in set(self._stored) - set(fresh):
            self.book.forget(ref)
        for ref, st in fresh.items():
            entry = self.book.get(ref)
            if entry is None or entry.lease_id != st.lease_id:
                self.book.track(ref, st.lease_id, st.instance.lease)
        self._stored = fresh

    def _apply(self, ref: InstanceRef, st: Stored) -> None:
        current = self._stored.get(ref)
        if current is not None and current.mod_revision >= st.mod_revision:
            return
        self._stored[ref] = st
        entry = self.book.get(ref)
        if entry is None or entry.lease_id != st.lease_id:
            self.book.track(ref, st.lease_id, st.instance.lease)

    def _remove(self, ref: InstanceRef, revision: int, reason: str) -> None:
        current = self._stored.get(ref)
        if current is None or current.mod_revision >= revision:
            return
        del self._stored[ref]
        self.book.forget(ref)
        if reason == "expired":
            self.counters["expired"] += 1
        self._log.info("instance removed", ref=str(ref), reason=reason, revision=revision)

    async def _follow(self, start_revision: int) -> None:
        feed = self._feed = RegistryFeed(self.store, self.keys, start_revision, name=self.shard, owns=self._owns)
        while True:
            try:
                async for change in feed:
                    if isinstance(change, Batch):
                        for ev in change.events:
                            if isinstance(ev, Registered):
                                self._apply(ev.ref, Stored(ev.instance, ev.revision, ev.lease))
                            elif isinstance(ev, Removed):
                                # Our own deregistrations are removed before the event arrives, so a delete
                                # still in the cache is a lease that ran out.
                                self._remove(ev.ref, ev.revision, "expired")
                    else:
                        self._replace_all(change.items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop logs and never dies
                self._log.exception("registry watch loop failed; restarting", error=str(exc))
                await asyncio.sleep(0.5)

    async def _sweep_loop(self) -> None:
        was_preserving = False
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                decision = self.book.sweep()
                if decision.self_preservation:
                    self._log.warning(
                        "SELF-PRESERVATION: too many instances missed their heartbeats at once; expiring none",
                        late=len(decision.late),
                        total=decision.total,
                        threshold=self.settings.policy.ratio,
                    )
                    await self._hold(decision.hold)
                elif was_preserving:
                    self._log.warning("self-preservation ended; late instances expire normally again",
                                      late=len(decision.late), total=decision.total)  # fmt: skip
                was_preserving = decision.self_preservation
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.exception("sweep failed", error=str(exc))

    async def _hold(self, entries: Any) -> None:
        async def one(entry: Any) -> None:
            try:
                ttl = await self.store.keep_alive(entry.lease_id)
                if ttl > 0:
                    self.book.held(entry.ref)
                    self.counters["held"] += 1
            except Unavailable as exc:
                self._log.warning("could not hold lease", ref=str(entry.ref), error=str(exc))

        await asyncio.gather(*(one(e) for e in entries))

    # ---- operations --------------------------------------------------------------------------------------------

    async def register(self, instance: Instance) -> tuple[Instance, int]:
        """Write the instance under a fresh lease; re-registering the same id replaces it (fenced)."""
        inst = validate_instance(instance)
        ref = inst.ref
        await self._check_owner(ref.vip)
        inst = replace(inst, registered_at_ms=int(time.time() * 1000))
        key = self.keys.instance(ref)
        value = codec.encode_instance(inst)
        # The cache says whether the key exists (and at which revision): a new registration costs two etcd
        # round trips (lease, fenced create); a stale cache only costs a re-read when the fence says so.
        cached = self._stored.get(ref)
        if cached is not None:
            _may_replace(cached.instance, inst)
        lease_id = await self._etcd(self.store.grant_lease, inst.lease.duration_s)
        current: tuple[int, int] | None = (cached.mod_revision, cached.lease_id) if cached else None
        try:
            for _ in range(_FENCE_RETRIES):
                try:
                    if current is None:
                        revision = await self._etcd(self.store.create, key, value, lease_id)
                    else:
                        revision = await self._etcd(self.store.replace, key, value, current[0], lease_id)
                    break
                except Conflict:
                    kv = await self._etcd(self.store.get, key)
                    current = (kv.mod_revision, kv.lease) if kv is not None else None
                    if kv is not None:
                        try:
                            _may_replace(codec.decode_instance(kv.value), inst)
                        except CodecError:
                            pass  # an undecodable record has no owner to keep
            else:
                raise Conflict(f"{ref} kept changing under concurrent writes; try again")
        except BaseException:
            self._tasks.spawn(self._revoke_quietly(lease_id))
            raise
        if current is not None and current[1] and current[1] != lease_id:
            self._tasks.spawn(self._revoke_quietly(current[1]))
        self._apply(ref, Stored(inst, revision, lease_id))
        stored = self._stored.get(ref)
        if stored is not None and stored.lease_id == lease_id:  # a concurrent, newer write keeps its own lease
            self.book.track(ref, lease_id, inst.lease, renewed=False)  # counted once it heartbeats
        self.counters["registered"] += 1
        self._log.info(
            "registered", ref=str(ref), host=inst.host, port=inst.port, revision=revision, by=inst.registered_by
        )
        return inst, revision

    async def heartbeat(self, ref: InstanceRef) -> int:
        """Keep the instance's lease alive; NotFound if it is not registered (any more)."""
        validate_ref(ref)
        await self._check_owner(ref.vip)
        st = self._stored.get(ref)
        if st is None:
            raise NotFound(f"instance {ref} is not registered (its lease may have expired): register it again")
        ttl = await self._etcd(self.store.keep_alive, st.lease_id)
        if ttl <= 0:
            self._remove(ref, st.mod_revision + 1, "expired")
            raise NotFound(f"instance {ref}: its lease expired; register it again")
        self.book.heartbeat(ref)
        self.counters["heartbeats"] += 1
        return ttl

    async def deregister(self, ref: InstanceRef) -> int:
        validate_ref(ref)
        await self._check_owner(ref.vip)
        key = self.keys.instance(ref)
        cached = self._stored.get(ref)
        try:
            if cached is None:
                raise Conflict("not in the cache")
            revision = await self._etcd(self.store.delete, key, cached.mod_revision)  # one round trip
            lease = cached.lease_id
        except Conflict:  # the cache is behind (or empty): read, then delete what is there
            current = await self._etcd(self.store.get, key)
            if current is None:
                self._stored.pop(ref, None)
                self.book.forget(ref)
                raise NotFound(f"instance {ref} is not registered") from None
            revision = await self._etcd(self.store.delete, key)
            lease = current.lease
        self._stored.pop(ref, None)
        self.book.forget(ref)
        if lease:
            self._tasks.spawn(self._revoke_quietly(lease))  # the key is gone; the lease need not hold us up
        self.counters["deregistered"] += 1
        self._log.info("deregistered", ref=str(ref), revision=revision)
        return revision

    async def set_status(self, ref: InstanceRef, status: Status) -> tuple[Instance, int]:
        """Override the status (e.g. OUT_OF_SERVICE), fenced on the record's revision, keeping its lease."""
        return await self.update(ref, status=status)

    async def update(
        self,
        ref: InstanceRef,
        status: Status | None = None,
        set_metadata: Mapping[str, str] | None = None,
        remove_metadata: Iterable[str] = (),
    ) -> tuple[Instance, int]:
        """Change a registration in place (status and/or metadata), fenced on its revision, keeping its lease.
        The result is validated as a whole: an update that would make it invalid changes nothing."""
        validate_ref(ref)
        await self._check_owner(ref.vip)
        key = self.keys.instance(ref)
        removed = set(remove_metadata)
        for _ in range(_FENCE_RETRIES):
            current = await self._etcd(self.store.get, key)
            if current is None:
                raise NotFound(f"instance {ref} is not registered")
            old = codec.decode_instance(current.value)
            metadata = {k: v for k, v in old.metadata.items() if k not in removed}
            metadata.update(set_metadata or {})
            inst = replace(old, status=old.status if status is None else status, metadata=metadata)
            validate_instance(inst)
            if inst == old:
                return old, current.mod_revision
            try:
                revision = await self._etcd(
                    self.store.replace, key, codec.encode_instance(inst), current.mod_revision, current.lease
                )
            except Conflict:
                continue
            self._apply(ref, Stored(inst, revision, current.lease))
            if status is not None and status != old.status:
                self.counters["status_changes"] += 1
            self._log.info(
                "instance updated", ref=str(ref), status=inst.status.value,
                metadata_changed=metadata != old.metadata, revision=revision,
            )  # fmt: skip
            return inst, revision
        raise Conflict(f"{ref} kept changing under concurrent writes; try again")

    async def _etcd(self, op: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run one store call, retrying while etcd is briefly unavailable (member failover, leader election)."""
        deadline = time.monotonic() + self.settings.etcd_retry_s
        delay = 0.05
        while True:
            try:
                return await op(*args)
            except Unavailable:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _revoke_quietly(self, lease_id: int) -> None:
        try:
            await self.store.revoke_lease(lease_id)
        except MeshError as exc:
            self._log.warning("could not revoke lease (etcd expires it by itself)", lease=lease_id, error=str(exc))

    # ---- introspection -----------------------------------------------------------------------------------------

    def instances(self) -> list[Instance]:
        return [s.instance for s in self._stored.values()]

    def statistics(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "ready": self.ready,
            "instances": len(self._stored),
            **self.book.statistics(),
            "loaded_revision": self.loaded_revision,
            **self.counters,
            "watch": asdict(self._feed.statistics()) if self._feed is not None else {},
        }


def _may_replace(existing: Instance, new: Instance) -> None:
    """PermissionDenied unless `new`'s registrant may replace `existing` (meshactors.auth.model.may_replace)."""
    if not may_replace(existing.registered_by, new.registered_by):
        raise PermissionDenied(
            f"instance {existing.ref} was registered by {existing.registered_by}; "
            f"{new.registered_by or 'this caller'} may not replace it (choose another instance id)"
        )
