"""ADS stream authentication: which credential a stream carries, and who may discover over it.

A stream's credential is its `authorization: Bearer <token>` metadata (Envoy's `initial_metadata`, a grpcio
client's call credentials), else the `meshactors_token` field of its first request's node metadata (what a
proxyless gRPC bootstrap can carry). The token itself is checked by a callable the runtime injects (its
token table); this module knows no etcd, no Ray and no token table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from meshactors.auth.model import Identity, bearer, require_discovery
from meshactors.envoy.bootstrap import NODE_TOKEN_KEY
from meshactors.errors import PermissionDenied, Unauthenticated
from meshactors.xds.types import Node

# token -> identity; raises Unauthenticated (malformed, unknown, revoked) or NotReady (table still loading)
Authenticate = Callable[[str], Identity]
Metadata = Iterable[tuple[str, str | bytes]]

NO_CREDENTIALS = (
    "no credentials: send `authorization: Bearer <token>` metadata on the ADS stream, or the token as the node "
    f"metadata field `{NODE_TOKEN_KEY}` in the first request (`meshactors bootstrap` writes one; see "
    "`meshactors token create --proxy`)"
)


def authorization(metadata: Metadata | None) -> str | None:
    """The stream's first `authorization` metadata value (keys are lowercase on the wire), None if it has none."""
    for key, value in metadata or ():
        if key == "authorization":
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


def stream_token(authorization: str | None, node_token: str) -> str:
    """The token a stream presents: its authorization metadata when present (a bad one is refused, not passed
    over for the node's), else its node's `meshactors_token`; Unauthenticated when it has neither."""
    if authorization is not None and authorization.strip():
        return bearer(authorization)
    if node_token:
        return node_token
    raise Unauthenticated(NO_CREDENTIALS)


def authorize(authenticate: Authenticate, metadata: Metadata | None, node: Node | None) -> Identity:
    """Who opened a stream with `metadata`, whose first request names `node`, if they may discover for it.

    Any role may discover; a proxy token bound to a node only for that node: a stream whose first request names
    no node is refused too, so the binding cannot be side-stepped by leaving the node out."""
    node_id = node.id if node is not None else ""
    who = authenticate(stream_token(authorization(metadata), node.token if node is not None else ""))
    require_discovery(who, "xDS", node=node_id)
    if who.node and node_id != who.node:
        raise PermissionDenied(
            f"xDS: this proxy token is for node {who.node[:80]!r}; the stream's first request names no node"
        )
    return who
