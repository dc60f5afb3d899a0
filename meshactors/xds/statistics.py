"""The xDS host's statistics records: plain data, no gRPC or protobuf, cheap to unpickle.

An xDS server's `statistics` answer holds them, and the dashboard and `status` that unpickle it need not load the
Envoy protos for that; meshactors.xds.host re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshactors.telemetry.histogram import HistogramData


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """The traffic policy a session holds for one key it holds (a VIP): which one (`policy`: a digest of the
    effective document; `revisions`: the etcd mod revisions of the documents merged into it, by VIP or `*`), the
    variant its client kind reads, and what that variant left out ("field path: reason")."""

    vip: str
    policy: str
    variant: str
    left_out: tuple[str, ...] = ()
    revisions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """One ADS stream as the host sees it; `protocol` is its state machine's own record, as a dict."""

    stream_id: str
    node_id: str
    kind: str
    client_kind: str
    peer: str
    opened_at: float
    resources_sent: int
    bad_messages: int
    protocol: dict[str, Any]
    zone: str = ""  # the node's locality.zone ("": none); ClusterLoadAssignments may have a variant for it
    policies: tuple[SessionPolicy, ...] = ()  # per held VIP with a policy, in name order (at most a bound)
    policies_omitted: int = 0  # held VIPs with a policy past that bound
    metrics_reports: int = 0  # the node's metrics reports idle collection learned from (here or relayed)
    # its outbound listener's fault aborts those reports counted: the known-VIPs guard's 503s for junk Hosts (and
    # any abort fault a VIP's policy injects)
    outbound_aborts: int = 0


@dataclass(frozen=True, slots=True)
class HostStatistics:
    server: str
    ready: bool
    incarnation: str
    sessions: int
    snapshots_held: int
    streams_opened: int
    refused_not_ready: int
    refused_rate: int
    nacks: int
    fetch_failures: int
    stream_errors: int
    names_refused: int  # subscriptions refused by a source's validation or a per-stream bound
    refused_unauthenticated: int = 0  # streams without a valid credential (UNAUTHENTICATED)
    refused_permission: int = 0  # streams whose credential may not discover for their node (PERMISSION_DENIED)
    ended_revoked: int = 0  # streams ended because their token was revoked
    clusters_collected: int = 0  # times a VIP's clusters were collected from a proxy that had not used them
    keys_pinned: int = 0
    streams: tuple[SessionStatistics, ...] = ()
    responses_by_type: dict[str, int] = field(default_factory=dict)
    nacks_by_type: dict[str, int] = field(default_factory=dict)  # type URLs the sources do not serve: "other"
    resources_held_by_type: dict[str, int] = field(default_factory=dict)  # in the snapshots the cache holds
    converging: int = 0  # keys with a change some session holding them has not ACKed yet
    convergence_abandoned: int = 0  # changes given up on (never ACKed in time, or every waiter closed)
    # seconds from a change at its source to the last ACK of every session holding it (xds.convergence)
    convergence_time: HistogramData | None = None
    # seconds an on-demand fetch of keys not held took from the source (a first request waits on it)
    fetch_time: HistogramData | None = None
