"""Reports the control plane's actors: name, kind, state, restart count, node, and each actor's own statistics.

Actors answer `statistics()` with frozen dataclasses (or, for some still, dicts); `to_json` renders either, and
`format_table` turns the rows into the text `meshactors status` prints.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Mapping
from typing import Any

from meshactors.errors import MeshError
from meshactors.runtime.calls import call_sync
from meshactors.runtime.topology import REGISTRY_SHARD, SNAPSHOT_BUILDER, XDS_SERVER, locate
from meshactors.xds.sync import session_sync, short_type


def to_json(obj: Any) -> Any:
    """A JSON-ready copy of `obj`: dataclasses become dicts (recursively, also inside dicts and sequences), tuples
    and sets become lists, enums their values; anything else that JSON cannot hold becomes its str()."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_json(dataclasses.asdict(obj))
    if isinstance(obj, enum.Enum):
        return to_json(obj.value)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json(v) for v in obj]
    return str(obj)


def actor_status(namespace: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """One record per named actor of the namespace, with its statistics (as `to_json` renders them) when alive."""
    rows = []
    for actor in locate(namespace):
        obs = actor.observed
        row: dict[str, Any] = {
            "name": obs.name,
            "kind": actor.kind,
            "state": obs.state,
            "restarts": obs.restarts,
            "node_id": obs.node_id,
            "pid": obs.pid,
        }
        if obs.state == "ALIVE":
            try:
                row["stats"] = to_json(call_sync(actor.handle, "statistics", timeout_s=timeout_s))
            except MeshError as exc:
                row["stats"] = {"error": str(exc)}
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """One line per actor; the details are the statistics' scalar fields."""
    lines = [f"{'ACTOR':<24} {'STATE':<14} {'RESTARTS':>8}  DETAILS"]
    for row in rows:
        stats = to_json(row.get("stats") or {})
        details = " ".join(f"{k}={v}" for k, v in stats.items() if not isinstance(v, dict | list))
        lines.append(f"{row['name']:<24} {row['state']:<14} {row['restarts']:>8}  {details}")
    return "\n".join(lines)


# ---- proxy sync status (like `istioctl proxy-status`) -------------------------------------------------------------


def proxy_status(namespace: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """One record per connected xDS session of every live xDS server: who it is and a sync status per type URL
    (Istio's rule, meshactors.xds.sync). A server that does not answer gets one record with its error."""
    rows: list[dict[str, Any]] = []
    for actor in locate(namespace):
        if actor.kind != XDS_SERVER or actor.observed.state != "ALIVE":
            continue
        try:
            sessions = call_sync(actor.handle, "sessions", timeout_s=timeout_s)
        except MeshError as exc:
            rows.append({"xds_server": actor.observed.name, "error": str(exc)})
            continue
        for s in sessions:
            rows.append(
                {
                    "node_id": s["node_id"],
                    "xds_server": actor.observed.name,
                    "stream_id": s["stream_id"],
                    "stream": s["kind"],
                    "client_kind": s["client_kind"],
                    "peer": s["peer"],
                    "opened_at": s["opened_at"],
                    "types": {t.type_url: to_json(t) for t in session_sync(s["protocol"])},
                }
            )
    rows.sort(key=lambda r: (r.get("node_id", ""), r["xds_server"], r.get("stream_id", "")))
    return rows


def _age(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    seconds = max(0.0, now - at)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def format_proxy_status(rows: list[dict[str, Any]], now: float | None = None) -> str:
    """A line per session: node, server, stream kind, client kind, then STATUS (last ACK age) per type URL."""
    now = time.time() if now is None else now
    lines = [f"{'NODE':<28} {'XDS SERVER':<13} {'STREAM':<6} {'CLIENT':<8} TYPES (status, last ACK)"]
    for row in rows:
        if "error" in row:
            lines.append(f"{'?':<28} {row['xds_server']:<13} error: {row['error']}")
            continue
        types = "  ".join(
            f"{short_type(url)}={t['status']}({_age(t['last_ack_at'], now)})" for url, t in row["types"].items()
        )
        node = row["node_id"] or "(no node)"
        lines.append(f"{node:<28} {row['xds_server']:<13} {row['stream']:<6} {row['client_kind']:<8} {types}")
    return "\n".join(lines)


def metrics_urls(namespace: str, timeout_s: float = 5.0) -> dict[str, str]:
    """actor name -> its Prometheus /metrics URL, for every live actor that serves one (shards, builders, xDS)."""
    urls = {}
    for actor in locate(namespace):
        if actor.kind in (REGISTRY_SHARD, SNAPSHOT_BUILDER, XDS_SERVER) and actor.observed.state == "ALIVE":
            try:
                urls[actor.observed.name] = str(call_sync(actor.handle, "metrics_url", timeout_s=timeout_s))
            except MeshError:
                continue
    return dict(sorted(urls.items()))
