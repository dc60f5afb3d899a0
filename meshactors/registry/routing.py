"""GrpcShardBackend: the registry API reaches the owning shard over a direct gRPC channel (found by a resolver)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from meshactors.aio import TaskSet
from meshactors.errors import MeshError, Unavailable
from meshactors.model import Instance, InstanceRef, Status
from meshactors.registry import convert
from meshactors.registry.client import batch_result, error_from_rpc
from meshactors.registry.shard_service import APP_ERROR_KEY
from meshactors.stubs import StubPool
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc

CHANNEL_OPTIONS: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 16 << 20)]


class GrpcShardBackend:
    """A ShardBackend over gRPC. `resolve(shard)` tells where a shard listens (it may block while the shard
    restarts); a transport failure re-resolves and retries until `retry_s` has passed, so a shard restart
    shows up as latency, not as an error. Errors the shard answers itself are passed on as they are."""

    def __init__(
        self,
        resolve: Callable[[str], Awaitable[str]],
        cluster_secret: str,
        retry_s: float = 10.0,
        timeout_s: float = 15.0,
    ):
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self._stubs = StubPool(resolve, pb_grpc.RegistryStub, cluster_secret, CHANNEL_OPTIONS)
        self._pending: dict[str, list[tuple[InstanceRef, asyncio.Future[int | MeshError]]]] = {}
        self._tasks = TaskSet()

    async def _call(self, shard: str, method: str, request: Any) -> Any:
        deadline = time.monotonic() + self.retry_s
        delay = 0.02
        while True:
            stub = await self._stubs.get(shard)
            try:
                return await getattr(stub, method)(request, timeout=self.timeout_s, metadata=self._stubs.metadata)
            except grpc.aio.AioRpcError as exc:
                trailing = dict(exc.trailing_metadata() or ())
                if APP_ERROR_KEY in trailing:
                    raise error_from_rpc(exc, shard) from exc
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:  # our fault, not the caller's: INTERNAL, no retry
                    raise MeshError(
                        f"registry shard {shard} refused this actor's cluster secret (the deployment's actors "
                        "were given different settings)"
                    ) from exc
                await self._stubs.forget(shard)  # transport failure: the shard may be restarting elsewhere
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"registry shard {shard} unreachable: {exc.code().name} {exc.details()}") from exc
            except MeshError:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def register(self, shard: str, instance: Instance) -> tuple[Instance, int]:
        resp = await self._call(shard, "Register", pb.RegisterRequest(instance=convert.instance_to_pb(instance)))
        return convert.instance_from_pb(resp.instance), int(resp.revision)

    async def heartbeat(self, shard: str, ref: InstanceRef) -> int:
        """Heartbeats arriving together for one shard go to it as one batch (no timer: one loop iteration)."""
        fut: asyncio.Future[int | MeshError] = asyncio.get_running_loop().create_future()
        pending = self._pending.setdefault(shard, [])
        pending.append((ref, fut))
        if len(pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush, shard)
        outcome = await fut
        if isinstance(outcome, MeshError):
            raise outcome
        return outcome

    def _flush(self, shard: str) -> None:
        batch = self._pending.pop(shard, [])
        if batch:
            self._tasks.spawn(self._send(shard, batch))

    async def _send(self, shard: str, batch: list[tuple[InstanceRef, asyncio.Future[int | MeshError]]]) -> None:
        try:
            outcomes = await self.heartbeat_many(shard, [ref for ref, _ in batch])
        except MeshError as exc:
            outcomes = [exc] * len(batch)
        except Exception as exc:  # never leave a caller waiting
            outcomes = [MeshError(f"heartbeat batch to {shard} failed: {exc!r}")] * len(batch)
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            if not fut.done():
                fut.set_result(outcome)

    async def heartbeat_many(self, shard: str, refs: list[InstanceRef]) -> list[int | MeshError]:
        request = pb.HeartbeatBatchRequest(refs=[convert.ref_to_pb(r) for r in refs])
        resp = await self._call(shard, "HeartbeatBatch", request)
        return [batch_result(r, shard) for r in resp.results]

    async def deregister(self, shard: str, ref: InstanceRef) -> int:
        resp = await self._call(shard, "Deregister", pb.DeregisterRequest(ref=convert.ref_to_pb(ref)))
        return int(resp.revision)

    async def set_status(self, shard: str, ref: InstanceRef, status: Status) -> tuple[Instance, int]:
        req = pb.SetStatusRequest(ref=convert.ref_to_pb(ref), status=convert.status_to_pb(status))
        resp = await self._call(shard, "SetStatus", req)
        return convert.instance_from_pb(resp.instance), int(resp.revision)

    async def update(
        self, shard: str, ref: InstanceRef, status: Status | None, set_metadata: dict[str, str], remove: list[str]
    ) -> tuple[Instance, int]:
        req = pb.UpdateRequest(
            ref=convert.ref_to_pb(ref),
            status=convert.status_to_pb(status) if status is not None else pb.STATUS_UNSPECIFIED,
            set_metadata=set_metadata,
            remove_metadata=remove,
        )
        resp = await self._call(shard, "Update", req)
        return convert.instance_from_pb(resp.instance), int(resp.revision)
