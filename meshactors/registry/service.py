"""The Registry gRPC servicer: validates input, routes writes to the owning shard, serves List/Watch from etcd."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Protocol

import grpc

from meshactors import log
from meshactors.auth.guard import Authenticator
from meshactors.auth.model import Identity, require_discovery, require_names
from meshactors.errors import InvalidArgument, MeshError, PermissionDenied
from meshactors.model import Instance, InstanceRef, Status, validate_instance, validate_ref, validate_vip_name
from meshactors.model.validate import refuse_reserved_metadata
from meshactors.registry import convert
from meshactors.registry.shard_service import heartbeat_result
from meshactors.registry.shardmap import ShardMap
from meshactors.store.base import Store
from meshactors.store.feed import Batch, Event, Loaded, RegistryFeed, Removed, load_instances
from meshactors.store.keys import KeySchema
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc

_log = log.get("registry.api")
MAX_BATCH = 10_000
# A page of List holds at most this many instances: 500 of the largest (4 KB of metadata) stay under 4 MB.
MAX_PAGE_SIZE = 500
_TOKEN_VERSION = "p1"
_stream_ids = itertools.count(1)


class ShardBackend(Protocol):
    """How the API reaches the shard that owns a VIP (GrpcShardBackend: the shard actor's internal gRPC service)."""

    async def register(self, shard: str, instance: Instance) -> tuple[Instance, int]: ...

    async def heartbeat(self, shard: str, ref: InstanceRef) -> int: ...

    async def heartbeat_many(self, shard: str, refs: list[InstanceRef]) -> list[int | MeshError]: ...

    async def deregister(self, shard: str, ref: InstanceRef) -> int: ...

    async def set_status(self, shard: str, ref: InstanceRef, status: Status) -> tuple[Instance, int]: ...

    async def update(
        self, shard: str, ref: InstanceRef, status: Status | None, set_metadata: dict[str, str], remove: list[str]
    ) -> tuple[Instance, int]: ...


def grpc_code(err: MeshError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.grpc_code_name, grpc.StatusCode.INTERNAL)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, MeshError):
        await context.abort(grpc_code(exc), exc.message)
    _log.exception("unexpected error in registry API", method=method, error=repr(exc))
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {exc!r}")


def _ref(msg: pb.InstanceRef, present: bool) -> InstanceRef:
    if not present:
        raise InvalidArgument("ref", "is required")
    ref = convert.ref_from_pb(msg)
    try:
        return validate_ref(ref)
    except InvalidArgument as exc:
        raise InvalidArgument(f"ref.{exc.field}", exc.reason) from None


def identity(auth: Authenticator, context: grpc.aio.ServicerContext) -> Identity:
    """Who calls: the token of the call's `authorization: Bearer` metadata (Unauthenticated without one)."""
    return auth.identify(context.invocation_metadata())


class RegistryService(pb_grpc.RegistryServicer):
    """Every call needs a token: writes one that owns the instance's VIPs (or an admin's), reads any valid one."""

    def __init__(
        self, backend: ShardBackend, shard_map: ShardMap, store: Store, keys: KeySchema, auth: Authenticator
    ) -> None:
        self.backend = backend
        self.shard_map = shard_map
        self.store = store
        self.keys = keys
        self.auth = auth

    async def Register(self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext) -> pb.RegisterResponse:
        try:
            who = identity(self.auth, context)
            if not request.HasField("instance"):
                raise InvalidArgument("instance", "is required")
            try:
                inst = validate_instance(convert.instance_from_pb(request.instance))
                refuse_reserved_metadata(inst.metadata, "metadata")
            except InvalidArgument as exc:
                field = exc.field if exc.field.startswith("instance.") else f"instance.{exc.field}"
                raise InvalidArgument(field, exc.reason) from None
            require_names(who, inst.names(), "Register")
            inst = replace(inst, registered_by=who.principal)
            stored, revision = await self.backend.register(self.shard_map.owner(inst.routing_name), inst)
            return pb.RegisterResponse(
                instance=convert.instance_to_pb(stored, revision), ref=convert.ref_to_pb(stored.ref), revision=revision
            )
        except Exception as exc:
            await _abort(context, exc, "Register")
            raise

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext) -> pb.HeartbeatResponse:
        try:
            who = identity(self.auth, context)
            ref = _ref(request.ref, request.HasField("ref"))
            require_names(who, [ref.vip], "Heartbeat")
            ttl = await self.backend.heartbeat(self.shard_map.owner(ref.vip), ref)
            return pb.HeartbeatResponse(ttl_seconds=ttl)
        except Exception as exc:
            await _abort(context, exc, "Heartbeat")
            raise

    async def HeartbeatBatch(
        self, request: pb.HeartbeatBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatBatchResponse:
        try:
            who = identity(self.auth, context)
            if len(request.refs) > MAX_BATCH:
                raise InvalidArgument("refs", f"{len(request.refs)} refs, at most {MAX_BATCH} in one batch")
            results: list[int | MeshError] = [0] * len(request.refs)
            by_shard: dict[str, list[tuple[int, InstanceRef]]] = {}
            for i, msg in enumerate(request.refs):
                try:
                    ref = validate_ref(convert.ref_from_pb(msg))
                except InvalidArgument as exc:
                    results[i] = InvalidArgument(f"refs[{i}].{exc.field}", exc.reason)
                    continue
                try:
                    require_names(who, [ref.vip], f"HeartbeatBatch refs[{i}]")
                except PermissionDenied as exc:
                    results[i] = exc
                    continue
                by_shard.setdefault(self.shard_map.owner(ref.vip), []).append((i, ref))

            async def one_shard(shard: str, items: list[tuple[int, InstanceRef]]) -> None:
                got = await self.backend.heartbeat_many(shard, [ref for _, ref in items])
                for (i, _), outcome in zip(items, got, strict=True):
                    results[i] = outcome

            await asyncio.gather(*(one_shard(s, items) for s, items in by_shard.items()))
            return pb.HeartbeatBatchResponse(results=[heartbeat_result(r) for r in results])
        except Exception as exc:
            await _abort(context, exc, "HeartbeatBatch")
            raise

    async def Deregister(
        self, request: pb.DeregisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeregisterResponse:
        try:
            who = identity(self.auth, context)
            ref = _ref(request.ref, request.HasField("ref"))
            require_names(who, [ref.vip], "Deregister")
            revision = await self.backend.deregister(self.shard_map.owner(ref.vip), ref)
            return pb.DeregisterResponse(revision=revision)
        except Exception as exc:
            await _abort(context, exc, "Deregister")
            raise

    async def SetStatus(self, request: pb.SetStatusRequest, context: grpc.aio.ServicerContext) -> pb.SetStatusResponse:
        try:
            who = identity(self.auth, context)
            ref = _ref(request.ref, request.HasField("ref"))
            require_names(who, [ref.vip], "SetStatus")
            status = convert.status_from_pb(request.status, "status")
            inst, revision = await self.backend.set_status(self.shard_map.owner(ref.vip), ref, status)
            return pb.SetStatusResponse(instance=convert.instance_to_pb(inst, revision), revision=revision)
        except Exception as exc:
            await _abort(context, exc, "SetStatus")
            raise

    async def Update(self, request: pb.UpdateRequest, context: grpc.aio.ServicerContext) -> pb.UpdateResponse:
        try:
            who = identity(self.auth, context)
            ref = _ref(request.ref, request.HasField("ref"))
            require_names(who, [ref.vip], "Update")
            status = convert.status_from_pb(request.status, "status") if request.status else None
            refuse_reserved_metadata(request.set_metadata, "set_metadata")
            refuse_reserved_metadata(request.remove_metadata, "remove_metadata")
            inst, revision = await self.backend.update(
                self.shard_map.owner(ref.vip), ref, status, dict(request.set_metadata), list(request.remove_metadata)
            )
            return pb.UpdateResponse(instance=convert.instance_to_pb(inst, revision), revision=revision)
        except Exception as exc:
            await _abort(context, exc, "Update")
            raise

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext) -> pb.ListResponse:
        try:
            require_discovery(identity(self.auth, context), "List")
            if request.vip:
                validate_vip_name(request.vip, "vip")
            if request.page_size < 0:
                raise InvalidArgument("page_size", f"{request.page_size} is negative (0: everything at once)")
            after = _page_start(request.page_token)
            items, revision = await load_instances(self.store, self.keys, name="api-list")
            matched = sorted(
                (r for r in items if _matches(r.instance, request.vip, request.app)),
                key=lambda r: (r.ref.vip, r.ref.instance_id),
            )
            next_token = ""
            if request.page_size or after is not None:
                if after is not None:
                    matched = [r for r in matched if (r.ref.vip, r.ref.instance_id) > after]
                size = min(request.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
                if len(matched) > size:
                    matched = matched[:size]
                    next_token = _page_token(matched[-1].ref)
            out = [convert.instance_to_pb(r.instance, r.revision) for r in matched]
            return pb.ListResponse(instances=out, revision=revision, next_page_token=next_token)
        except Exception as exc:
            await _abort(context, exc, "List")
            raise

    async def Watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.WatchEvent]:
        stream_id = next(_stream_ids)
        slog = _log.bind(stream=stream_id, start_revision=request.start_revision, vip=request.vip)
        try:
            require_discovery(identity(self.auth, context), "Watch")
            if request.start_revision < 0:
                raise InvalidArgument("start_revision", "must be 0 (current state) or a positive revision")
            if request.vip:
                validate_vip_name(request.vip, "vip")
            feed = RegistryFeed(self.store, self.keys, request.start_revision or None, name=f"api-{stream_id}")
            sent: set[InstanceRef] = set()
            first = True
            slog.info("registry watch opened")
            async for change in feed:
                if isinstance(change, Loaded):
                    if not first or request.start_revision:
                        await context.abort(
                            grpc.StatusCode.OUT_OF_RANGE,
                            "etcd compacted the history this watch needed; List (or Watch from 0) again",
                        )
                    for item in change.items:
                        inst = item.instance
                        if _matches(inst, request.vip, ""):
                            sent.add(inst.ref)
                            yield pb.WatchEvent(
                                type=pb.WatchEvent.SNAPSHOT,
                                instance=convert.instance_to_pb(inst, item.revision),
                                ref=convert.ref_to_pb(inst.ref),
                                revision=item.revision,
                            )
                    yield pb.WatchEvent(type=pb.WatchEvent.SYNCED, revision=change.revision)
                elif isinstance(change, Batch):
                    for ev in change.events:
                        for out in _events(ev, request.vip, sent):
                            yield out
                first = False
        except Exception as exc:
            slog.info("registry watch closed", reason=repr(exc))
            await _abort(context, exc, "Watch")
            raise


def _events(ev: Event, vip: str, sent: set[InstanceRef]) -> list[pb.WatchEvent]:
    """The Watch events one registration change means to a stream filtered on `vip` ("" = every VIP);
    `sent` holds the refs the stream has told about (and not yet deleted)."""
    ref = ev.ref
    if isinstance(ev, Removed):
        served = ev.previous is not None and _matches(ev.previous, vip, "")
        if vip and ref not in sent and ref.vip != vip and not served:
            return []
        sent.discard(ref)
        return [pb.WatchEvent(type=pb.WatchEvent.DELETE, ref=convert.ref_to_pb(ref), revision=ev.revision)]
    inst = ev.instance
    if not _matches(inst, vip, ""):
        if ref in sent:  # it stopped serving the filtered name
            sent.discard(ref)
            return [pb.WatchEvent(type=pb.WatchEvent.DELETE, ref=convert.ref_to_pb(ref), revision=ev.revision)]
        return []
    sent.add(ref)
    return [
        pb.WatchEvent(
            type=pb.WatchEvent.PUT,
            instance=convert.instance_to_pb(inst, ev.revision),
            ref=convert.ref_to_pb(ref),
            revision=ev.revision,
        )
    ]


def _page_token(last: InstanceRef) -> str:
    """Where the next page starts (after `last`, in key order), opaque to clients."""
    return base64.urlsafe_b64encode(f"{_TOKEN_VERSION}\n{last.vip}\n{last.instance_id}".encode()).decode()


def _page_start(token: str) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        version, vip, instance_id = base64.urlsafe_b64decode(token.encode()).decode().split("\n")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise InvalidArgument("page_token", "is not a token this API gave out (use next_page_token as sent)") from None
    if version != _TOKEN_VERSION:
        raise InvalidArgument("page_token", "is not a token this API gave out (use next_page_token as sent)")
    return vip, instance_id


def _matches(inst: Instance, vip: str, app: str) -> bool:
    if vip and vip not in (inst.vip, inst.svip):
        return False
    return not (app and app != inst.app)
