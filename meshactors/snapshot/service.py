"""The SnapshotBuilder gRPC service (xDS servers' on-demand fetch and update streams) and its conversions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from meshactors import log
from meshactors.errors import MeshError
from meshactors.snapshot.builder import VipResources
from meshactors.snapshot.publisher import SnapshotBuilderCore
from meshactors.v1 import snapshot_pb2 as pb
from meshactors.v1 import snapshot_pb2_grpc as pb_grpc
from meshactors.xds.types import VersionedResource

_log = log.get("snapshot.service")


def _res_to_pb(res: VersionedResource) -> pb.Resource:
    return pb.Resource(type_url=res.type_url, name=res.name, version=res.version, body=res.body or b"")


def _res_from_pb(msg: pb.Resource) -> VersionedResource:
    return VersionedResource(msg.type_url, msg.name, msg.version, msg.body)


def to_pb(vr: VipResources) -> pb.VipSnapshot:
    return pb.VipSnapshot(
        vip=vr.vip,
        cluster=_res_to_pb(vr.cluster),
        load_assignment=_res_to_pb(vr.load_assignment),
        listener=_res_to_pb(vr.listener),
    )


def from_pb(msg: pb.VipSnapshot) -> VipResources:
    return VipResources(
        vip=msg.vip,
        cluster=_res_from_pb(msg.cluster),
        load_assignment=_res_from_pb(msg.load_assignment),
        listener=_res_from_pb(msg.listener),
    )


async def _abort(context: grpc.aio.ServicerContext, exc: MeshError) -> None:
    await context.abort(getattr(grpc.StatusCode, exc.grpc_code_name, grpc.StatusCode.INTERNAL), exc.message)


class SnapshotService(pb_grpc.SnapshotBuilderServicer):
    def __init__(self, core: SnapshotBuilderCore) -> None:
        self.core = core

    async def Subscribe(self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext) -> pb.SubscribeResponse:
        try:
            got = self.core.subscribe(request.host, request.incarnation, list(request.vips))
        except MeshError as exc:
            await _abort(context, exc)
            raise
        return pb.SubscribeResponse(snapshots=[to_pb(r) for r in got])

    async def Unsubscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubscribeResponse:
        self.core.unsubscribe(request.host, request.incarnation, list(request.vips))
        return pb.SubscribeResponse()

    async def Updates(
        self, request: pb.UpdatesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SubscribeResponse]:
        held = {vip: (v.cluster, v.load_assignment) for vip, v in request.held.items()}
        try:
            box, differ = self.core.open_updates(request.host, request.incarnation, held)
        except MeshError as exc:
            await _abort(context, exc)
            raise
        _log.info("update stream opened", host=request.host, held=len(held), resent=len(differ))
        try:
            yield pb.SubscribeResponse(snapshots=[to_pb(r) for r in differ])
            while not box.closed:
                batch = await box.take()
                if batch:
                    yield pb.SubscribeResponse(snapshots=[to_pb(r) for r in batch])
        finally:
            self.core.close_updates(box)
            _log.info("update stream closed", host=request.host)
