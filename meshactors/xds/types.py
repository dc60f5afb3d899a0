"""Plain xDS value types shared by state machines, hosts and codecs: no protobuf, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

# The resource contract lives below both the xDS side and the read side; re-exported for the state machines.
from meshactors.resources.types import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    ROUTE,
    SECRET,
    SEND_ORDER,
    TYPE_PREFIX,
    VIRTUAL_HOST,
    VersionedResource,
    content_version,
)

WILDCARD = "*"

# A node's `locality.zone` is kept when it is at most this long and printable (a registry zone is at most 64
# letters, digits and `._-`); anything else is dropped, and the node is served as one without a zone.
MAX_ZONE_CHARS = 64


def node_zone(zone: str) -> str:
    """`zone` when it may be kept, else "" (no zone)."""
    return zone if len(zone) <= MAX_ZONE_CHARS and zone.isprintable() else ""


@dataclass(frozen=True, slots=True)
class Node:
    """The node of an ADS request. `token` is the credential from its metadata (`meshactors_token`): it is never
    shown (repr), kept by a session, or logged; every other metadata field is dropped by the codec."""

    id: str
    cluster: str = ""
    user_agent_name: str = ""
    token: str = field(default="", repr=False, compare=False)
    zone: str = ""  # `locality.zone`, checked by `node_zone` (locality failover prefers it)


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """The `error_detail` of a NACK (a google.rpc.Status)."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class DeltaRequest:
    type_url: str
    node: Node | None = None
    response_nonce: str = ""
    error_detail: ErrorDetail | None = None
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()
    initial_resource_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeltaResponse:
    type_url: str
    nonce: str
    resources: tuple[VersionedResource, ...] = ()
    removed: tuple[str, ...] = ()
    system_version_info: str = ""


@dataclass(frozen=True, slots=True)
class SotwRequest:
    type_url: str
    node: Node | None = None
    version_info: str = ""
    resource_names: tuple[str, ...] = ()
    response_nonce: str = ""
    error_detail: ErrorDetail | None = None


@dataclass(frozen=True, slots=True)
class SotwResponse:
    type_url: str
    version_info: str
    nonce: str
    resources: tuple[VersionedResource, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client may make a stream hold (design invariant 10)."""

    max_names_per_type: int = 10_000
    max_name_length: int = 253
    max_type_urls: int = 16


@dataclass(frozen=True, slots=True)
class RejectedName:
    """A subscribed name that was not stored (failed validation or over a bound), with the reason."""

    type_url: str
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class NackRecord:
    """What a client rejected: the NACKed response's nonce, the error it sent, and the content it refused.

    `rejected` holds the (name, version) pairs the NACKed response carried that differed from what the
    client had ACKed (a NACK does not say which resource was bad, so all of them are suspect).
    `version_info` is the SotW version of the rejected response ("" for delta).
    """

    type_url: str
    nonce: str
    code: int
    message: str
    rejected: tuple[tuple[str, str], ...]
    at: float
    version_info: str = ""


ResponseT = TypeVar("ResponseT", DeltaResponse, SotwResponse)


@dataclass(frozen=True)
class Outcome(Generic[ResponseT]):
    """What a stream state machine decided for one request.

    `responses` go out in this order. `interest_added` / `interest_removed` are (type URL, name) pairs,
    name `"*"` for wildcard, so the host can fetch or drop resources. `ack` says the request ACKed a
    response in flight; `nack` is set when the request was a NACK; `stale` says the request's nonce was
    not one this stream is waiting for (SotW ignores such requests, delta still applies subscriptions).
    """

    responses: tuple[ResponseT, ...] = ()
    interest_added: tuple[tuple[str, str], ...] = ()
    interest_removed: tuple[tuple[str, str], ...] = ()
    rejected: tuple[RejectedName, ...] = ()
    ack: bool = False
    nack: NackRecord | None = None
    stale: bool = False


__all__ = [
    "CLUSTER", "ENDPOINT", "EXTENSION_CONFIG", "LISTENER", "MAX_ZONE_CHARS", "ROUTE", "SECRET", "SEND_ORDER",
    "TYPE_PREFIX", "VIRTUAL_HOST", "WILDCARD",
    "DeltaRequest", "DeltaResponse", "ErrorDetail", "Limits", "NackRecord", "Node", "Outcome", "RejectedName",
    "ResponseT", "SotwRequest", "SotwResponse", "VersionedResource", "content_version",
    "node_zone",
]  # fmt: skip
