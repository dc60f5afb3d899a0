"""A small synchronous client of the Registry gRPC API (CLI, sidecar, tests); maps gRPC codes to our errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

import grpc

from meshactors.errors import (
    Compacted,
    ConfigError,
    Conflict,
    InvalidArgument,
    MeshError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from meshactors.model import Instance, InstanceRef, Status
from meshactors.registry import convert
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc

# Instances per List page: at most ~2.5 MB even with the largest metadata (the server caps pages at 500).
LIST_PAGE_SIZE = 500


def error_from_rpc(exc: grpc.RpcError, target: str) -> MeshError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return error_from_status(code, details or "", target)


def error_from_status(code: grpc.StatusCode | None, details: str, target: str) -> MeshError:
    """The MeshError for a gRPC status (the inverse of MeshError.grpc_code_name)."""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, reason = (details or "").partition(": ")
        return InvalidArgument(field, reason) if reason else InvalidArgument("request", details or "")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details or "not found")
    if code == grpc.StatusCode.ABORTED:
        return Conflict(details or "conflict")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(f"{target}: {details or 'unauthenticated'}")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"{target}: {details or 'permission denied'}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(details or "resource exhausted")
    if code == grpc.StatusCode.OUT_OF_RANGE:
        err = Compacted(0, 0)
        err.message = details or err.message
        err.args = (err.message,)
        return err
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"registry at {target} is unavailable: {details}")
    return MeshError(f"registry at {target}: {code.name if code else '?'}: {details}")


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def batch_result(result: pb.HeartbeatResult, target: str) -> int | MeshError:
    if result.code == 0:
        return int(result.ttl_seconds)
    return error_from_status(_CODES.get(result.code), result.message, target)


def channel_to(target: str, tls_ca: str | None = None) -> grpc.Channel:
    """A channel to `target`: TLS verifying the server's certificate (for the host of `target`) against the PEM
    CA bundle in the file `tls_ca`, or plaintext when it is None."""
    if tls_ca is None:
        return grpc.insecure_channel(target)
    try:
        with open(tls_ca, "rb") as f:
            roots = f.read(1 << 20)
    except OSError as exc:
        raise ConfigError(f"--tls-ca: cannot read {tls_ca}: {exc.strerror or exc}") from exc
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))


class GrpcClient:
    """One channel to a control-plane API and the one way its calls map errors (`error_from_rpc`); the API
    clients (registry, policy, token) are this with their stub. `token` travels on every call as
    `authorization: Bearer <token>` (see `meshactors token create`); `tls_ca`: the CA file to verify a TLS
    server with (None: plaintext)."""

    stub_class: Any = None

    def __init__(self, target: str, timeout_s: float = 10.0, token: str = "", tls_ca: str | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.channel = channel_to(target, tls_ca)
        self.stub = self.stub_class(self.channel)
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from exc


class RegistryClient(GrpcClient):
    stub_class = pb_grpc.RegistryStub

    def register(self, instance: Instance | pb.Instance) -> tuple[InstanceRef, pb.Instance]:
        msg = instance if isinstance(instance, pb.Instance) else convert.instance_to_pb(instance)
        resp = self._call("Register", pb.RegisterRequest(instance=msg))
        return convert.ref_from_pb(resp.ref), resp.instance

    def heartbeat(self, ref: InstanceRef) -> int:
        return int(self._call("Heartbeat", pb.HeartbeatRequest(ref=convert.ref_to_pb(ref))).ttl_seconds)

    def heartbeat_batch(self, refs: list[InstanceRef]) -> list[int | MeshError]:
        """Heartbeat many instances in one call: per ref its TTL, or the error for that ref alone."""
        resp = self._call("HeartbeatBatch", pb.HeartbeatBatchRequest(refs=[convert.ref_to_pb(r) for r in refs]))
        return [batch_result(r, self.target) for r in resp.results]

    def deregister(self, ref: InstanceRef) -> int:
        return int(self._call("Deregister", pb.DeregisterRequest(ref=convert.ref_to_pb(ref))).revision)

    def set_status(self, ref: InstanceRef, status: Status) -> pb.Instance:
        req = pb.SetStatusRequest(ref=convert.ref_to_pb(ref), status=convert.status_to_pb(status))
        return self._call("SetStatus", req).instance

    def update(
        self,
        ref: InstanceRef,
        status: Status | None = None,
        set_metadata: dict[str, str] | None = None,
        remove_metadata: list[str] | None = None,
    ) -> pb.Instance:
        req = pb.UpdateRequest(
            ref=convert.ref_to_pb(ref),
            status=convert.status_to_pb(status) if status is not None else pb.STATUS_UNSPECIFIED,
            set_metadata=set_metadata or {},
            remove_metadata=remove_metadata or [],
        )
        return self._call("Update", req).instance

    def list(self, vip: str = "", app: str = "", page_size: int = LIST_PAGE_SIZE) -> tuple[list[pb.Instance], int]:
        """Every matching instance, read in pages (one response could pass gRPC's 4 MB message bound) and the
        revision of the first page: watching from it + 1 misses nothing. page_size 0 asks for one response."""
        out: list[pb.Instance] = []
        token, revision = "", 0
        while True:
            resp = self._call("List", pb.ListRequest(vip=vip, app=app, page_size=page_size, page_token=token))
            out.extend(resp.instances)
            revision = revision or int(resp.revision)
            token = resp.next_page_token
            if not token:
                return out, revision

    def watch(self, start_revision: int = 0, vip: str = "", timeout_s: float | None = None) -> Iterator[pb.WatchEvent]:
        try:
            yield from self.stub.Watch(
                pb.WatchRequest(start_revision=start_revision, vip=vip), timeout=timeout_s, metadata=self.metadata
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from exc
