"""The cluster secret of the actors' internal gRPC APIs: how it is made and checked, and how clients send it.

Every actor of a deployment gets the same secret inside its MeshSettings. The internal servers (a registry shard's
Registry service, a snapshot builder's service) refuse any call that does not carry it as gRPC metadata
`x-meshactors-cluster`, before the servicer sees the request; the internal clients send it on every call.
The secret itself never appears in a message, a log line or a repr.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from meshactors.errors import ConfigError

METADATA_KEY = "x-meshactors-cluster"
REFUSED = "internal API: missing or wrong cluster secret"
MIN_LENGTH = 32
MAX_LENGTH = 256  # a gRPC metadata value; far more than any real secret needs


def new_secret() -> str:
    """A fresh random secret for one deployment (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def problem(secret: str) -> str | None:
    """What is wrong with `secret` as a cluster secret, or None. Never quotes the value."""
    if not MIN_LENGTH <= len(secret) <= MAX_LENGTH:
        return f"must be {MIN_LENGTH} to {MAX_LENGTH} characters long (got {len(secret)})"
    if not all(33 <= ord(c) <= 126 for c in secret):
        return "must be printable ASCII without spaces (it travels as gRPC metadata)"
    return None


def call_metadata(secret: str) -> tuple[tuple[str, str], ...]:
    """The metadata an internal client sends on every call."""
    return ((METADATA_KEY, secret),)


def accepts(secret: str, metadata: Iterable[tuple[str, Any]] | None) -> bool:
    """Whether `metadata` carries `secret` (compared in constant time). An empty `secret` accepts nothing."""
    if not secret:
        return False
    for key, value in metadata or ():
        if key == METADATA_KEY:
            given = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(given, secret.encode())
    return False


async def _refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSED)


def _refusing(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED without reading the request (no
    deserializer: a caller without the secret costs no parsing)."""
    if handler is not None and handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse)
    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_refuse)
    return grpc.unary_unary_rpc_method_handler(_refuse)


class ClusterSecretInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through to the servicer only when it carries the cluster secret; `refused` counts the others."""

    def __init__(self, secret: str) -> None:
        if reason := problem(secret):
            raise ConfigError(f"cluster_secret: {reason}")
        self._secret = secret
        self.refused = 0

    def __repr__(self) -> str:
        return f"ClusterSecretInterceptor(refused={self.refused})"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if accepts(self._secret, handler_call_details.invocation_metadata):  # type: ignore[attr-defined]
            return await continuation(handler_call_details)
        self.refused += 1
        return _refusing(await continuation(handler_call_details))
