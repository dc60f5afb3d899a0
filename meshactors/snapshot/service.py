"""The SnapshotBuilder gRPC service (xDS servers' on-demand fetch and update streams) and its wire conversions.

`snapshot_to_pb` / `snapshot_from_pb` and `versions_to_pb` / `versions_from_pb` are the one translation between
the resource contract (meshactors.resources) and the internal proto; both ends of the link use them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import grpc

from meshactors import log
from meshactors.errors import MeshError
from meshactors.resources.snapshot import PolicySummary, PolicyVariant, Snapshot, Versions
from meshactors.resources.types import VersionedResource
from meshactors.snapshot.publisher import SnapshotBuilderCore
from meshactors.v1 import snapshot_pb2 as pb
from meshactors.v1 import snapshot_pb2_grpc as pb_grpc

_log = log.get("snapshot.service")


def _res_to_pb(res: VersionedResource) -> pb.Resource:
    return pb.Resource(
        type_url=res.type_url,
        name=res.name,
        version=res.version,
        body=res.body or b"",
        absent=res.body is None,
        aliases=res.aliases,
        variant=res.variant,
        refs=[pb.ResourceRef(type_url=t, name=n) for t, n in res.refs],
    )


def _res_from_pb(msg: pb.Resource) -> VersionedResource:
    return VersionedResource(
        type_url=msg.type_url,
        name=msg.name,
        version=msg.version,
        body=None if msg.absent else msg.body,
        aliases=tuple(msg.aliases),
        variant=msg.variant,
        refs=tuple((r.type_url, r.name) for r in msg.refs),
    )


def _policy_to_pb(policy: PolicySummary) -> pb.SnapshotPolicy:
    return pb.SnapshotPolicy(
        digest=policy.digest,
        revisions=[pb.PolicyRevision(document=d, revision=r) for d, r in policy.revisions],
        variants=[pb.PolicyVariant(kind=v.kind, left_out=v.left_out) for v in policy.variants],
    )


def _policy_from_pb(msg: pb.SnapshotPolicy) -> PolicySummary:
    return PolicySummary(
        digest=msg.digest,
        revisions=tuple((r.document, r.revision) for r in msg.revisions),
        variants=tuple(PolicyVariant(v.kind, tuple(v.left_out)) for v in msg.variants),
    )


def snapshot_to_pb(snap: Snapshot) -> pb.Snapshot:
    return pb.Snapshot(
        key=snap.key,
        resources=[_res_to_pb(r) for r in snap.resources],
        changed_at=snap.changed_at,
        policy=_policy_to_pb(snap.policy) if snap.policy is not None else None,
    )


def snapshot_from_pb(msg: pb.Snapshot) -> Snapshot:
    policy = _policy_from_pb(msg.policy) if msg.HasField("policy") else None
    snap = Snapshot.of(msg.key, (_res_from_pb(r) for r in msg.resources), policy=policy)
    return snap.stamped(msg.changed_at) if msg.changed_at > 0 else snap


def versions_to_pb(held: Mapping[str, Versions]) -> dict[str, pb.HeldVersions]:
    return {
        key: pb.HeldVersions(
            resources=[pb.ResourceVersion(type_url=t, name=n, variant=v, version=ver) for (t, n, v), ver in vs.items()]
        )
        for key, vs in held.items()
    }


def versions_from_pb(held: Mapping[str, pb.HeldVersions]) -> dict[str, Versions]:
    return {key: {(r.type_url, r.name, r.variant): r.version for r in hv.resources} for key, hv in held.items()}


async def _abort(context: grpc.aio.ServicerContext, exc: MeshError) -> None:
    await context.abort(getattr(grpc.StatusCode, exc.grpc_code_name, grpc.StatusCode.INTERNAL), exc.message)


class SnapshotService(pb_grpc.SnapshotBuilderServicer):
    def __init__(self, core: SnapshotBuilderCore) -> None:
        self.core = core

    async def Subscribe(self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext) -> pb.SubscribeResponse:
        try:
            got = self.core.subscribe(request.host, request.incarnation, list(request.keys))
        except MeshError as exc:
            await _abort(context, exc)
            raise
        return pb.SubscribeResponse(snapshots=[snapshot_to_pb(s) for s in got])

    async def Unsubscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubscribeResponse:
        self.core.unsubscribe(request.host, request.incarnation, list(request.keys))
        return pb.SubscribeResponse()

    async def Updates(
        self, request: pb.UpdatesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SubscribeResponse]:
        held = versions_from_pb(request.held)
        try:
            box, differ = self.core.open_updates(request.host, request.incarnation, held)
        except MeshError as exc:
            await _abort(context, exc)
            raise
        _log.info("update stream opened", host=request.host, held=len(held), resent=len(differ))
        try:
            yield pb.SubscribeResponse(snapshots=[snapshot_to_pb(s) for s in differ])
            while not box.closed:
                batch = await box.take()
                if batch:
                    yield pb.SubscribeResponse(snapshots=[snapshot_to_pb(s) for s in batch])
        finally:
            self.core.close_updates(box)
            _log.info("update stream closed", host=request.host)
