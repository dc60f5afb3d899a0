"""Proxy sync status per type URL and per resource (Istio's proxy-status rule) from a stream's protocol statistics."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshactors.xds.types import VersionedResource

# A NACK's text as shown per type or resource (the stream keeps up to 1,024 characters of it).
NACK_TEXT_CHARS = 300


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
    since: float | None = None  # when this status began: last ACK (SYNCED), oldest unACKed send, the NACK


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
    status = sync_status(sent=sent, unacked=unacked, nacked=bool(t.get("last_request_nacked")))
    return TypeSync(
        type_url=str(t.get("type_url", "")),
        status=status,
        responses=int(t.get("responses") or 0),
        names=names,
        last_ack_at=t.get("last_ack_at"),
        last_nack_at=nack.get("at") if nack else None,
        last_nack=str(nack.get("message", ""))[:NACK_TEXT_CHARS] if nack else "",
        since=_since(status, t, nack),
    )


def _since(status: SyncStatus, t: Mapping[str, Any], nack: Mapping[str, Any]) -> float | None:
    if status is SyncStatus.ERROR:
        return nack.get("at") if nack else None
    if status is SyncStatus.STALE:
        return t.get("unacked_since")
    if status is SyncStatus.SYNCED:
        return t.get("last_ack_at")
    return None


def session_sync(protocol: Mapping[str, Any]) -> tuple[TypeSync, ...]:
    """Every type URL of one stream (its state machine's statistics as a dict), in the stream's order."""
    return tuple(type_sync(t) for t in protocol.get("types") or ())


def short_type(type_url: str) -> str:
    """`type.googleapis.com/envoy.config.cluster.v3.Cluster` -> `Cluster` (for tables; JSON keeps the URL)."""
    return type_url.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


# ---- per resource (what CSDS reports) -----------------------------------------------------------------------------


class ClientStatus(enum.StrEnum):
    """What the client holds of one resource, as far as the server knows (Envoy's ClientResourceStatus)."""

    REQUESTED = "REQUESTED"  # subscribed; nothing of it ACKed yet
    DOES_NOT_EXIST = "DOES_NOT_EXIST"  # subscribed; the server has loaded its source and it does not exist
    ACKED = "ACKED"  # the client ACKed a version (`acked_version`)
    NACKED = "NACKED"  # the client refused the version sent (`nack_version`)


@dataclass(frozen=True, slots=True)
class ResourceSync:
    """One resource of one stream: what the server sent, what the client ACKed, and its sync status.

    `version` is the latest version sent (for a NACKed resource: the last one ACKed, "" if none); `body` the
    serialized resource of that version when the server still holds that very version (else None: changed since,
    removed, or contents not asked for). A NACK's text and refused version are in `nack_*`, its refused content
    in `nack_body` under the same condition."""

    type_url: str
    name: str
    status: SyncStatus
    client_status: ClientStatus
    version: str
    acked_version: str | None
    since: float | None  # when the status began (see TypeSync.since)
    body: bytes | None = None
    nack_message: str = ""
    nack_version: str = ""
    nack_at: float | None = None
    nack_body: bytes | None = None


# The server's resource of a (type URL, name), None when it is not held; and whether its source is loaded.
Lookup = Callable[[str, str], VersionedResource | None]
Loaded = Callable[[str, str], bool]


def _pairs(items: Iterable[Any] | None) -> dict[str, Any]:
    return {str(name): version for name, version in items or ()}


def resource_sync(t: Mapping[str, Any], lookup: Lookup, loaded: Loaded, *, contents: bool = True) -> list[ResourceSync]:
    """Every resource of one type URL of a delta or SotW stream (its statistics as a dict), by name.

    The rule is the per-type one applied to each name: ERROR when the last request of the type was a NACK that
    refused this name (or named none, so every one is suspect), NOT_SENT when nothing of it was sent, STALE while a
    version (or its removal) sent is not ACKed, else SYNCED."""
    type_url = str(t.get("type_url", ""))
    delta = "pending_nonces" in t
    acked = _pairs(t.get("acked"))
    unacked = _pairs(t.get("unacked"))
    subscribed = [str(n) for n in (t.get("subscribed") if delta else t.get("names")) or ()]
    nack = t.get("last_nack") or {}
    nacked_now = bool(t.get("last_request_nacked")) and bool(nack)
    refused = _pairs(nack.get("rejected")) if nacked_now else {}
    names = sorted({*subscribed, *acked, *unacked, *refused})
    out = []
    for name in names:
        acked_v = acked.get(name)
        if delta:
            stale = name in unacked
            sent_v = unacked[name] if stale else acked_v
        else:  # SotW: the whole latest response is unACKed; a name is stale if its content in it differs
            stale = bool(unacked) and unacked.get(name) != acked_v
            sent_v = unacked.get(name) if unacked else acked_v
        nacked = nacked_now and (name in refused or not refused)
        if nacked:
            status, since = SyncStatus.ERROR, nack.get("at")
        elif stale:
            status, since = SyncStatus.STALE, t.get("unacked_since")
        elif acked_v is None:
            status, since = SyncStatus.NOT_SENT, None
        else:
            status, since = SyncStatus.SYNCED, t.get("last_ack_at")
        held = lookup(type_url, name)
        if nacked:
            client = ClientStatus.NACKED
        elif acked_v is not None:
            client = ClientStatus.ACKED
        elif not stale and (held is None or held.body is None) and loaded(type_url, name):
            client = ClientStatus.DOES_NOT_EXIST
        else:
            client = ClientStatus.REQUESTED
        version = (acked_v or "") if nacked else (sent_v or "")
        body = held.body if contents and held is not None and version and held.version == version else None
        nack_version = str(refused.get(name, "")) if nacked else ""
        nack_body = None
        if contents and nacked and held is not None and nack_version and held.version == nack_version:
            nack_body = held.body
        out.append(
            ResourceSync(
                type_url=type_url,
                name=name,
                status=status,
                client_status=client,
                version=version,
                acked_version=acked_v,
                since=since,
                body=body,
                nack_message=str(nack.get("message", ""))[:NACK_TEXT_CHARS] if nacked else "",
                nack_version=nack_version,
                nack_at=nack.get("at") if nacked else None,
                nack_body=nack_body,
            )
        )
    return out


def worst(statuses: Iterable[SyncStatus]) -> SyncStatus:
    """The status of a type from its resources' (ERROR, then STALE, then SYNCED if any was sent, else NOT_SENT)."""
    seen = set(statuses)
    for status in (SyncStatus.ERROR, SyncStatus.STALE, SyncStatus.SYNCED):
        if status in seen:
            return status
    return SyncStatus.NOT_SENT


def out_of_sync(streams: Iterable[Mapping[str, Any]], after_s: float, now: float) -> dict[str, int]:
    """type URL -> how many streams (SessionStatistics as dicts) have been STALE or ERROR on it for longer than
    `after_s`. NOT_SENT is not lag (nothing exists to send), so it is not counted."""
    counts: dict[str, int] = {}
    for s in streams:
        for t in session_sync(s["protocol"]):
            if t.status in (SyncStatus.STALE, SyncStatus.ERROR) and t.since is not None and now - t.since > after_s:
                counts[t.type_url] = counts.get(t.type_url, 0) + 1
    return counts
