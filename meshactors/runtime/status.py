"""Reports the control plane's actors: name, kind, state, restart count, node, and each actor's own statistics.

Actors answer `statistics()` with frozen dataclasses (or, for some still, dicts); `to_json` renders either, and
`format_table` turns the rows into the text `meshactors status` prints.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from meshactors.errors import MeshError, NotFound
from meshactors.runtime.calls import call_sync
from meshactors.runtime.topology import KINDS, XDS_SERVER, locate
from meshactors.xds.sync import session_sync, short_type

if TYPE_CHECKING:
    from meshactors.envoy.config_dump import Held
    from meshactors.xds.host import ClientStatusAnswer

# The dashboard and `up` import this module for the actor and proxy rows; what only `proxy-status NODE` needs (the
# Envoy protos, to show each resource as JSON) is imported by node_status.


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


def actor_status(namespace: str, timeout_s: float = 5.0, sessions: bool = True) -> list[dict[str, Any]]:
    """One record per named actor of the namespace, with its statistics (as `to_json` renders them) when alive;
    without `sessions`, the xDS servers' statistics leave out their per-session records."""
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
                args = () if sessions or actor.kind != XDS_SERVER else (False,)
                row["stats"] = to_json(call_sync(actor.handle, "statistics", *args, timeout_s=timeout_s))
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


NACK_SHOWN_CHARS = 80


def format_proxy_status(rows: list[dict[str, Any]], now: float | None = None) -> str:
    """A line per session: node, server, stream kind, client kind, STATUS(age) per type URL (the age of the status:
    since the last ACK when SYNCED, the oldest unACKed push when STALE, the NACK when ERROR), then the last NACK."""
    now = time.time() if now is None else now
    lines = [f"{'NODE':<28} {'XDS SERVER':<13} {'STREAM':<6} {'CLIENT':<8} TYPES (status, age)  LAST NACK"]
    for row in rows:
        if "error" in row:
            lines.append(f"{'?':<28} {row['xds_server']:<13} error: {row['error']}")
            continue
        types = "  ".join(
            f"{short_type(url)}={t['status']}({_age(t.get('since', t['last_ack_at']), now)})"
            for url, t in row["types"].items()
        )
        nacks = [(t["last_nack_at"], url, t["last_nack"]) for url, t in row["types"].items() if t.get("last_nack_at")]
        if nacks:
            at, url, text = max(nacks)
            text = text if len(text) <= NACK_SHOWN_CHARS else text[: NACK_SHOWN_CHARS - 3] + "..."
            types += f"  {short_type(url)} {_age(at, now)} ago: {' '.join(text.split())!r}"
        node = row["node_id"] or "(no node)"
        lines.append(f"{node:<28} {row['xds_server']:<13} {row['stream']:<6} {row['client_kind']:<8} {types}")
    return "\n".join(lines)


# ---- one node: what was sent next to what the proxy holds --------------------------------------------------------


def node_status(namespace: str, node_id: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every session of `node_id` on every live xDS server, per resource what was sent and ACKed (JSON-ready).
    NotFound when no xDS server holds a session of that node."""
    from meshactors.envoy.csds import resource_json

    sessions: list[dict[str, Any]] = []
    errors = []
    for actor in locate(namespace):
        if actor.kind != XDS_SERVER or actor.observed.state != "ALIVE":
            continue
        try:
            answer: ClientStatusAnswer = call_sync(actor.handle, "client_status", node_id, timeout_s=timeout_s)
        except MeshError as exc:
            errors.append(f"{actor.observed.name}: {exc}")
            continue
        for client in answer.clients:
            resources = []
            for r in client.resources:
                row = to_json({k: v for k, v in dataclasses.asdict(r).items() if k not in ("body", "nack_body")})
                row["sent"] = resource_json(r.type_url, r.body)
                if r.nack_body is not None:
                    row["refused"] = resource_json(r.type_url, r.nack_body)
                resources.append(row)
            sessions.append(
                {
                    "node_id": client.node_id, "xds_server": client.server, "stream_id": client.stream_id,
                    "stream": client.kind, "client_kind": client.client_kind, "peer": client.peer,
                    "opened_at": client.opened_at, "types": {t.type_url: to_json(t) for t in client.types},
                    "resources": resources, "omitted_resources": answer.omitted_resources,
                }
            )  # fmt: skip
    if not sessions:
        unanswered = f" ({len(errors)} xDS servers did not answer: {'; '.join(errors)[:300]})" if errors else ""
        raise NotFound(f"node {node_id[:120]!r} is not connected to any xDS server{unanswered}")
    return sessions


def add_proxy_view(sessions: list[dict[str, Any]], held: dict[str, dict[str, Held]] | None) -> None:
    """Each resource gets `proxy`: what Envoy's config dump holds (`held`), else what the proxy ACKed; resources
    Envoy holds that no session was sent are added with status "NOT_FROM_SESSION"."""
    for s in sessions:
        seen: set[tuple[str, str]] = set()
        for r in s["resources"]:
            seen.add((r["type_url"], r["name"]))
            if held is None:
                same = r["acked_version"] is not None and r["acked_version"] == r["version"]
                r["proxy"] = {"source": "acked", "version": r["acked_version"], "resource": r["sent"] if same else None}
                continue
            h = held.get(r["type_url"], {}).get(r["name"])
            r["proxy"] = {"source": "envoy config_dump", "held": h is not None}
            if h is not None:
                r["proxy"].update(version=h.version, state=h.state, resource=h.resource)
        if held is None:
            continue
        for type_url, by_name in sorted(held.items()):
            for name, h in sorted(by_name.items()):
                if (type_url, name) not in seen:
                    s["resources"].append({
                        "type_url": type_url, "name": name, "status": "NOT_FROM_SESSION", "client_status": "",
                        "version": "", "acked_version": None, "sent": None,
                        "proxy": {"source": "envoy config_dump", "held": True, "version": h.version,
                                  "state": h.state, "resource": h.resource},
                    })  # fmt: skip


def _block(label: str, value: Any) -> list[str]:
    text = json.dumps(value, indent=2, sort_keys=True)
    return [f"    {label}:", *(f"      {line}" for line in text.splitlines())]


def format_node_status(sessions: list[dict[str, Any]], now: float | None = None) -> str:
    """Per session, per type URL and resource: the status, the version sent and its JSON, and what the proxy holds
    (its JSON only where it differs from what was sent)."""
    now = time.time() if now is None else now
    lines: list[str] = []
    for s in sessions:
        lines.append(f"node {s['node_id']}  {s['xds_server']}  {s['stream']} stream {s['stream_id']}  peer {s['peer']}")
        current = ""
        for r in sorted(s["resources"], key=lambda r: (r["type_url"], r["name"])):
            if r["type_url"] != current:
                current = r["type_url"]
                lines.append(f"  {short_type(current)} ({current})")
            lines.append(f"  - {r['name']}: {r['status']} {r['client_status']} ({_age(r.get('since'), now)})")
            if r.get("nack_message") or r["status"] == "ERROR":
                text = " ".join(str(r.get("nack_message", "")).split())
                lines.append(f"    NACK of version {r.get('nack_version') or '-'}: {text}")
                lines.append(f"    last ACKed: version {r['version'] or '- (none)'}")
            else:
                lines.append(f"    sent:  version {r['version'] or '-'}")
            proxy = r.get("proxy") or {}
            source = proxy.get("source", "")
            if source == "acked":
                lines.append(f"    proxy (what it ACKed; give --envoy-admin for Envoy's own view): version "
                             f"{proxy.get('version') or '-'}")  # fmt: skip
            elif not proxy.get("held"):
                lines.append("    envoy: does not hold it")
            else:
                lines.append(f"    envoy: version {proxy.get('version') or '-'} ({proxy.get('state')})")
            if r.get("sent") is not None:
                lines += _block("sent resource", r["sent"])
            if proxy.get("resource") is not None and source != "acked":
                if proxy["resource"] == r.get("sent"):
                    lines.append("    envoy holds the same resource")
                else:
                    lines += _block("envoy holds", proxy["resource"])
    return "\n".join(lines)


# ---- golden signals per VIP (like `top`) ---------------------------------------------------------------------------


def golden_signals(namespace: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """One row per destination VIP, merged over every live xDS server's aggregate, worst first (the shape is
    meshactors.telemetry.golden.rows'). A server that does not answer is left out."""
    from meshactors.telemetry.golden import rows

    servers = []
    for actor in locate(namespace):
        if actor.kind != XDS_SERVER or actor.observed.state != "ALIVE":
            continue
        try:
            servers.append(call_sync(actor.handle, "golden_signals", timeout_s=timeout_s))
        except MeshError:
            continue
    return rows(servers)


def metrics_urls(namespace: str, timeout_s: float = 5.0) -> dict[str, str]:
    """actor name -> its Prometheus /metrics URL, for every live actor of ours (each serves one)."""
    urls = {}
    for actor in locate(namespace):
        if actor.kind in KINDS and actor.observed.state == "ALIVE":
            try:
                urls[actor.observed.name] = str(call_sync(actor.handle, "metrics_url", timeout_s=timeout_s))
            except MeshError:
                continue
    return dict(sorted(urls.items()))
