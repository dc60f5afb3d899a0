"""Proxy sync status per type URL (Istio's proxy-status rule) from a stream's protocol statistics."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SyncStatus(enum.StrEnum):
    SYNCED = "SYNCED"
    NOT_SENT = "NOT_SENT"
    STALE = "STALE"
    ERROR = "ERROR"


def sync_status(*, sent: bool, unacked: bool, nacked: bool) -> SyncStatus:
    """ERROR if the last request carried a NACK, NOT_SENT if nothing was sent, SYNCED if everything sent was
    ACKed, else STALE."""
    if nacked:
        return SyncStatus.ERROR
    if not sent:
        return SyncStatus.NOT_SENT
    return SyncStatus.STALE if unacked else SyncStatus.SYNCED


@dataclass(frozen=True, slots=True)
class TypeSync:
    type_url: str
    status: SyncStatus
    responses: int
    names: int  # names subscribed (or held, for a wildcard type)
    last_ack_at: float | None
    last_nack_at: float | None
    last_nack: str  # the last NACK's error message, bounded ("" if none)


def type_sync(t: Mapping[str, Any]) -> TypeSync:
    """The sync status of one type URL of a delta or SotW stream, from its statistics rendered as a dict."""
    delta = "pending_nonces" in t
    if delta:
        sent = bool(t.get("responses")) or bool(t.get("acked")) or bool(t.get("pending_nonces"))
        unacked = bool(t.get("pending_nonces"))
        names = len(t.get("subscribed") or ()) or len(t.get("acked") or ())
    else:
        sent = t.get("last_nonce") is not None
        unacked = t.get("unacked_version_info") is not None
        names = len(t.get("names") or ()) or len(t.get("acked") or ())
    nack = t.get("last_nack") or {}
    return TypeSync(
        type_url=str(t.get("type_url", "")),
        status=sync_status(sent=sent, unacked=unacked, nacked=bool(t.get("last_request_nacked"))),
        responses=int(t.get("responses") or 0),
        names=names,
        last_ack_at=t.get("last_ack_at"),
        last_nack_at=nack.get("at") if nack else None,
        last_nack=str(nack.get("message", ""))[:300] if nack else "",
    )


def session_sync(protocol: Mapping[str, Any]) -> tuple[TypeSync, ...]:
    """Every type URL of one stream (its state machine's statistics as a dict), in the stream's order."""
    return tuple(type_sync(t) for t in protocol.get("types") or ())


def short_type(type_url: str) -> str:
    """`type.googleapis.com/envoy.config.cluster.v3.Cluster` -> `Cluster` (for tables; JSON keeps the URL)."""
    return type_url.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
