"""The one exception hierarchy of meshactors; every boundary maps foreign errors into it with `raise ... from`.

MeshError
 +-- InvalidArgument      bad input; names the field and the reason        -> gRPC INVALID_ARGUMENT
 +-- NotFound             the named instance / resource does not exist     -> gRPC NOT_FOUND
 +-- Conflict             a fenced write lost its race (retry may succeed) -> gRPC ABORTED
 +-- Unavailable          etcd, an actor or a server cannot answer now     -> gRPC UNAVAILABLE
 |    +-- NotReady        a component has not finished loading its state
 +-- ResourceExhausted    a bound was hit (subscriptions, streams/s)       -> gRPC RESOURCE_EXHAUSTED
 +-- Unauthenticated      no, a malformed, an unknown or a revoked credential -> gRPC UNAUTHENTICATED, HTTP 401
 |    +-- StoreUnauthenticated   etcd refused the control plane's own credentials -> gRPC UNAVAILABLE
 +-- PermissionDenied     a valid credential that does not allow this      -> gRPC PERMISSION_DENIED, HTTP 403
 |    +-- StorePermissionDenied  etcd refused an operation to the control plane's user -> gRPC UNAVAILABLE
 +-- CodecError           a stored value cannot be decoded (e.g. unknown schema version)
 +-- Compacted            a watch asked for a revision etcd has compacted away
 +-- ConfigError          bad settings or command-line flags

A caller's request never fails with UNAUTHENTICATED because of the control plane's own etcd credentials: to
the caller that is the store being unavailable (the message says why).
"""

from __future__ import annotations


class MeshError(Exception):
    """Root of every error meshactors raises on purpose."""

    grpc_code_name = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # Keep errors picklable across Ray actor boundaries with their own constructor arguments.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[MeshError], state: dict[str, object]) -> MeshError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class InvalidArgument(MeshError):
    """Input failed validation. `field` is the dotted path of the offending field."""

    grpc_code_name = "INVALID_ARGUMENT"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(MeshError):
    grpc_code_name = "NOT_FOUND"


class Conflict(MeshError):
    grpc_code_name = "ABORTED"


class Unavailable(MeshError):
    grpc_code_name = "UNAVAILABLE"


class NotReady(Unavailable):
    pass


class ResourceExhausted(MeshError):
    grpc_code_name = "RESOURCE_EXHAUSTED"


class CodecError(MeshError):
    grpc_code_name = "DATA_LOSS"


class Compacted(MeshError):
    grpc_code_name = "OUT_OF_RANGE"

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} was compacted (etcd keeps history from revision {compact_revision}); "
            "list again and watch from the list's revision"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class ConfigError(MeshError):
    grpc_code_name = "INVALID_ARGUMENT"


class Unauthenticated(MeshError):
    """No credentials, or credentials that were not accepted (says which, never the secret itself)."""

    grpc_code_name = "UNAUTHENTICATED"


class PermissionDenied(MeshError):
    """The credentials were accepted but do not allow this operation (says what was refused)."""

    grpc_code_name = "PERMISSION_DENIED"


class StoreUnauthenticated(Unauthenticated):
    """etcd refused the control plane's own credentials (a deployment problem, not the API caller's)."""

    grpc_code_name = "UNAVAILABLE"


class StorePermissionDenied(PermissionDenied):
    """etcd refused an operation to the control plane's etcd user (a deployment problem, not the API caller's)."""

    grpc_code_name = "UNAVAILABLE"
