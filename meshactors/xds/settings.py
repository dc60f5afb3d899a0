"""The xDS host's settings record: bounds and timings only, no gRPC or protobuf, cheap to unpickle.

Every actor unpickles `MeshSettings`, which holds it; meshactors.xds.host (gRPC, the Envoy codec) re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshactors.xds.types import Limits


@dataclass(frozen=True, slots=True)
class HostSettings:
    limits: Limits = field(default_factory=Limits)
    max_new_streams_per_s: float = 1000.0
    fetch_timeout_s: float = 5.0
    fetch_retry_s: float = 1.0
    unsubscribe_grace_s: float = 30.0
    # a session STALE or ERROR on a type URL for longer than this counts in the out-of-sync gauge
    out_of_sync_after_s: float = 30.0
    # A VIP an Envoy sent no request to for this long has its clusters collected from it (0: never); known from the
    # proxy's metrics reports, which must reach this server with no gap over `idle_report_gap_s`.
    cluster_idle_s: float = 3600.0
    idle_report_gap_s: float = 20.0
