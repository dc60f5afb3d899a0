"""The internal gRPC face of one registry shard: the Registry write methods, for the registry API to forward to."""

from __future__ import annotations

import asyncio

import grpc

from meshactors import log
from meshactors.errors import MeshError
from meshactors.registry import convert
from meshactors.registry.shard import RegistryShardCore
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc

_log = log.get("registry.shard_service")

# Set on every error the shard answers itself, so the caller can tell it from a transport failure.
APP_ERROR_KEY = "meshactors-app-error"


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    context.set_trailing_metadata(((APP_ERROR_KEY, "1"),))
    if isinstance(exc, MeshError):
        await context.abort(getattr(grpc.StatusCode, exc.grpc_code_name, grpc.StatusCode.INTERNAL), exc.message)
    _log.exception("unexpected error in shard", method=method, error=repr(exc))
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {exc!r}")


def heartbeat_result(outcome: int | BaseException) -> pb.HeartbeatResult:
    if isinstance(outcome, BaseException):
        if not isinstance(outcome, MeshError):
            _log.error("unexpected heartbeat failure", error=repr(outcome))
            return pb.HeartbeatResult(code=grpc.StatusCode.INTERNAL.value[0], message=repr(outcome))
        code = getattr(grpc.StatusCode, outcome.grpc_code_name, grpc.StatusCode.INTERNAL)
        return pb.HeartbeatResult(code=code.value[0], message=outcome.message)
    return pb.HeartbeatResult(ttl_seconds=outcome)


class ShardService(pb_grpc.RegistryServicer):
    def __init__(self, core: RegistryShardCore) -> None:
        self.core = core

    async def Register(self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext) -> pb.RegisterResponse:
        try:
            inst, revision = await self.core.register(convert.instance_from_pb(request.instance))
        except Exception as exc:
            await _abort(context, exc, "Register")
            raise
        return pb.RegisterResponse(
            instance=convert.instance_to_pb(inst, revision), ref=convert.ref_to_pb(inst.ref), revision=revision
        )

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext) -> pb.HeartbeatResponse:
        try:
            ttl = await self.core.heartbeat(convert.ref_from_pb(request.ref))
        except Exception as exc:
            await _abort(context, exc, "Heartbeat")
            raise
        return pb.HeartbeatResponse(ttl_seconds=ttl)

    async def HeartbeatBatch(
        self, request: pb.HeartbeatBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatBatchResponse:
        results = await asyncio.gather(
            *(self.core.heartbeat(convert.ref_from_pb(ref)) for ref in request.refs), return_exceptions=True
        )
        return pb.HeartbeatBatchResponse(results=[heartbeat_result(r) for r in results])

    async def Deregister(
        self, request: pb.DeregisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeregisterResponse:
        try:
            revision = await self.core.deregister(convert.ref_from_pb(request.ref))
        except Exception as exc:
            await _abort(context, exc, "Deregister")
            raise
        return pb.DeregisterResponse(revision=revision)

    async def SetStatus(self, request: pb.SetStatusRequest, context: grpc.aio.ServicerContext) -> pb.SetStatusResponse:
        try:
            status = convert.status_from_pb(request.status, "status")
            inst, revision = await self.core.set_status(convert.ref_from_pb(request.ref), status)
        except Exception as exc:
            await _abort(context, exc, "SetStatus")
            raise
        return pb.SetStatusResponse(instance=convert.instance_to_pb(inst, revision), revision=revision)

    async def Update(self, request: pb.UpdateRequest, context: grpc.aio.ServicerContext) -> pb.UpdateResponse:
        try:
            status = convert.status_from_pb(request.status, "status") if request.status else None
            inst, revision = await self.core.update(
                convert.ref_from_pb(request.ref), status, dict(request.set_metadata), list(request.remove_metadata)
            )
        except Exception as exc:
            await _abort(context, exc, "Update")
            raise
        return pb.UpdateResponse(instance=convert.instance_to_pb(inst, revision), revision=revision)
