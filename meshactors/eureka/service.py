"""EurekaRegistry: the Eureka operations on the meshactors registry (writes to the owning shards, reads from a view).

Every write names the identity that makes it: it must own every VIP/SVIP the instance's records serve (or be an
admin's), a registration records it as `registered_by`, and a registration may not replace (or drop the VIPs of) an
instance another identity registered. All of it is checked against the view before anything is written; the shards
check the replacement again against etcd."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from meshactors import log
from meshactors.auth.model import Identity, may_replace, require_names
from meshactors.errors import InvalidArgument, NotFound, PermissionDenied
from meshactors.eureka import codec
from meshactors.eureka.view import EurekaView
from meshactors.model import Instance, InstanceRef, Status
from meshactors.registry.service import ShardBackend
from meshactors.registry.shardmap import ShardMap
from meshactors.store.base import Store
from meshactors.store.feed import Batch, Registered, RegistryFeed
from meshactors.store.keys import KeySchema

_log = log.get("eureka.registry")
T = TypeVar("T")


class EurekaRegistry:
    """What a Eureka server does, on meshactors records. Instances are found by (app, id) in the view; every
    record of an instance (one per VIP, see codec) is written through the shard that owns its VIP."""

    def __init__(self, backend: ShardBackend, shard_map: ShardMap, view: EurekaView) -> None:
        self.backend = backend
        self.shard_map = shard_map
        self.view = view

    def _owner(self, ref: InstanceRef) -> str:
        return self.shard_map.owner(ref.vip)

    def _records(self, app: str, instance_id: str) -> list[Instance]:
        records = self.view.find(app, instance_id)
        if not records:
            raise NotFound(f"instance {instance_id!r} of app {app.upper()!r} is not registered")
        return records

    async def register(self, who: Identity, app: str, info: dict[str, Any]) -> list[Instance]:
        """Register (or re-register) one Eureka instance. Input and permissions are checked in full before anything
        is written. A status override set on the instance stays (as in Eureka), unless the client reports DOWN or
        STARTING."""
        records = codec.records_from_info(info, app)
        app_name, instance_id = codec.group_key(records[0])
        require_names(who, _names(records), f"Eureka register of {app_name}/{instance_id} under {_shown(records)}")
        previous = self.view.find(app_name, instance_id)
        for old in previous:
            if not may_replace(old.registered_by, who.principal):
                raise PermissionDenied(
                    f"Eureka register of {app_name}/{instance_id}: that instance was registered by "
                    f"{old.registered_by} under {old.routing_name!r}; {who.principal} may not replace it "
                    "(choose another instance id)"
                )
        fresh = {r.ref for r in records}
        stale = [r for r in previous if r.ref not in fresh]  # it no longer serves those VIPs
        require_names(who, _names(stale), f"Eureka register of {app_name}/{instance_id} dropping {_shown(stale)}")
        records = [replace(r, registered_by=who.principal) for r in records]
        override = next((r.metadata[codec.OVERRIDE_KEY] for r in previous if codec.OVERRIDE_KEY in r.metadata), "")
        if override and override != codec.UNKNOWN:
            keep = records[0].status if records[0].status in (Status.DOWN, Status.STARTING) else Status(override)
            records = [replace(r, status=keep, metadata={**r.metadata, codec.OVERRIDE_KEY: override}) for r in records]

        async def one(inst: Instance) -> None:
            stored, revision = await self.backend.register(self._owner(inst.ref), inst)
            self.view.put(stored, revision)

        await _all(one(r) for r in records)
        if stale:
            await _all(self._deregister(r.ref) for r in stale)
        _log.info("eureka instance registered", app=records[0].app, instance_id=records[0].instance_id,
                  vips=[r.routing_name for r in records], status=records[0].status.value,
                  by=who.principal)  # fmt: skip
        return records

    def _owned(self, who: Identity, app: str, instance_id: str, what: str) -> list[Instance]:
        """The records of an instance that `who` may write: it owns every VIP they serve (PermissionDenied naming
        the others)."""
        records = self._records(app, instance_id)
        require_names(who, _names(records), f"Eureka {what} of {app.upper()}/{instance_id} under {_shown(records)}")
        return records

    async def renew(self, who: Identity, app: str, instance_id: str) -> None:
        """A heartbeat. NotFound makes the client register again: also after its status override was removed
        without a new value (Eureka answers the same, so the client re-sends its own status)."""
        records = self._owned(who, app, instance_id, "heartbeat")
        if any(r.metadata.get(codec.OVERRIDE_KEY) == codec.UNKNOWN for r in records):
            raise NotFound(f"instance {instance_id!r}: its status override was removed; register again")

        await _all(self.backend.heartbeat(self._owner(r.ref), r.ref) for r in records)

    async def cancel(self, who: Identity, app: str, instance_id: str) -> None:
        records = self._owned(who, app, instance_id, "cancel")
        await _all(self._deregister(r.ref) for r in records)
        _log.info("eureka instance cancelled", app=app.upper(), instance_id=instance_id, by=who.principal)

    async def _deregister(self, ref: InstanceRef) -> None:
        try:
            revision = await self.backend.deregister(self._owner(ref), ref)
        except NotFound:
            return  # already gone from etcd; the watch tells the view
        self.view.delete(ref, revision)

    async def override_status(self, who: Identity, app: str, instance_id: str, value: str) -> None:
        if not value:
            raise InvalidArgument("value", "is required (the status to override with)")
        if value.strip().upper() == codec.UNKNOWN:
            raise InvalidArgument("value", "UNKNOWN is not a status to override with; DELETE the override instead")
        status = codec.parse_eureka_status(value, "value")
        await self._update(who, "status override", app, instance_id, status, {codec.OVERRIDE_KEY: status.value}, [])

    async def delete_override(self, who: Identity, app: str, instance_id: str, value: str) -> None:
        """With `value`, that becomes the status; without, the next heartbeat asks the client to register again."""
        what = "status override removal"
        if value:
            status = codec.parse_eureka_status(value, "value")
            await self._update(who, what, app, instance_id, status, {}, [codec.OVERRIDE_KEY])
        else:
            await self._update(who, what, app, instance_id, None, {codec.OVERRIDE_KEY: codec.UNKNOWN}, [])

    async def update_metadata(self, who: Identity, app: str, instance_id: str, metadata: Mapping[str, str]) -> None:
        if not metadata:
            raise InvalidArgument("metadata", "give at least one key=value query parameter")
        for key in metadata:
            if key.startswith(codec.RESERVED):
                raise InvalidArgument(f"metadata.{key}", f"the {codec.RESERVED!r} prefix is reserved for meshactors")
        await self._update(who, "metadata update", app, instance_id, None, dict(metadata), [])

    async def _update(
        self,
        who: Identity,
        what: str,
        app: str,
        instance_id: str,
        status: Status | None,
        set_metadata: dict[str, str],
        remove: list[str],
    ) -> None:
        records = self._owned(who, app, instance_id, what)

        async def one(inst: Instance) -> None:
            stored, revision = await self.backend.update(self._owner(inst.ref), inst.ref, status, set_metadata, remove)
            self.view.put(stored, revision)

        await _all(one(r) for r in records)


def _names(records: list[Instance]) -> list[str]:
    return sorted({name for r in records for name in r.names()})


def _shown(records: list[Instance]) -> str:
    names = _names(records)
    return ", ".join(repr(n[:80]) for n in names[:5]) + (" ..." if len(names) > 5 else "")


async def _all(coros: Any) -> None:
    """Run concurrently; raise the first failure (after all have finished, so none is left running)."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def follow(view: EurekaView, store: Store, keys: KeySchema, on_error: Callable[[], Awaitable[None]]) -> None:
    """Keep `view` current from etcd: a full listing first (and after compaction), then every change.
    The loop logs and never dies; `on_error` paces its restarts."""
    feed = RegistryFeed(store, keys, None, name="eureka")
    while True:
        try:
            async for change in feed:
                if isinstance(change, Batch):
                    for ev in change.events:
                        if isinstance(ev, Registered):
                            view.put(ev.instance, ev.revision)
                        else:
                            view.delete(ev.ref, ev.revision)
                    view.advance(change.revision)
                else:
                    view.replace_all(((r.instance, r.revision) for r in change.items), change.revision)
                    _log.info("eureka view loaded", instances=len(view), revision=change.revision)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.exception("eureka view watch failed; restarting", error=repr(exc))
            await on_error()
