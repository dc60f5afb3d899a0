"""What the dashboard shows, as pure functions and bounded state: registrations, events, samples and the API's JSON."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshactors.model import Instance, InstanceRef
from meshactors.policy.load import to_document
from meshactors.policy.model import Policy
from meshactors.store.feed import Batch, Loaded, Registered

MAX_EVENTS = 500  # the events ring buffer
MAX_SAMPLES = 300  # samples kept for the line plots (10 minutes at one sample every 2 s)
MAX_BUCKETS = 64  # bars of one histogram row
MAX_SERIES = 32  # lines of one plot
MAX_TEXT = 300  # characters of a client-written text (a NACK message, an error) shown


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# ---- registrations -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One registration as etcd holds it: the instance, its lease id and the revision it was written at."""

    instance: Instance
    lease: int
    revision: int


@dataclass(frozen=True, slots=True)
class Change:
    """Something that happened to the registry, for the events view."""

    kind: str  # registered | updated | removed | loaded
    vip: str
    detail: str


class Registrations:
    """Every registration, kept from a RegistryFeed (`apply` each Loaded / Batch), and what changed."""

    def __init__(self) -> None:
        self.entries: dict[InstanceRef, Entry] = {}
        self.revision = 0
        self.loaded = False

    def apply(self, change: Loaded | Batch) -> list[Change]:
        if isinstance(change, Loaded):
            new = {r.ref: Entry(r.instance, r.lease, r.revision) for r in change.items}
            if not self.loaded:
                out = [Change("loaded", "", f"{len(new)} registrations at revision {change.revision}")]
            else:  # a re-listing: what it changed
                out = [
                    _registered(ref, e.instance, ref in self.entries)
                    for ref, e in new.items()
                    if self.entries.get(ref) != e
                ]
                out += [Change("removed", ref.vip, f"{ref.instance_id} removed") for ref in self.entries.keys() - new]
            self.entries, self.revision, self.loaded = new, change.revision, True
            return out
        out = []
        for ev in change.events:
            if isinstance(ev, Registered):
                before = self.entries.get(ev.ref)
                self.entries[ev.ref] = Entry(ev.instance, ev.lease, ev.revision)
                if before is not None and before.instance.status != ev.instance.status:
                    out.append(Change("updated", ev.ref.vip, f"{ev.ref.instance_id} is {ev.instance.status.value}"))
                elif before is None:
                    out.append(_registered(ev.ref, ev.instance, False))
            else:
                self.entries.pop(ev.ref, None)
                out.append(Change("removed", ev.ref.vip, f"{ev.ref.instance_id} deregistered or its lease expired"))
        self.revision = max(self.revision, change.revision)
        return out

    def by_vip(self) -> dict[str, list[Entry]]:
        """Every name (VIP and SVIP) -> the registrations serving it."""
        out: dict[str, list[Entry]] = {}
        for entry in self.entries.values():
            for name in entry.instance.names():
                out.setdefault(name, []).append(entry)
        return out


def _registered(ref: InstanceRef, inst: Instance, existed: bool) -> Change:
    kind = "updated" if existed else "registered"
    return Change(kind, ref.vip, f"{ref.instance_id} at {inst.host}:{inst.port or inst.secure_port} ({inst.status})")


# ---- events --------------------------------------------------------------------------------------------------------


class Events:
    """A bounded ring buffer of what happened, newest last; each event has a sequence number to poll from."""

    def __init__(self, limit: int = MAX_EVENTS) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=limit)
        self.seq = 0

    def add(self, kind: str, detail: str, *, vip: str = "", at: float | None = None) -> None:
        self.seq += 1
        self._items.append(
            {
                "seq": self.seq,
                "at": time.time() if at is None else at,
                "kind": kind,
                "vip": vip,
                "detail": _clip(detail),
            }
        )

    def since(self, seq: int = 0, limit: int = MAX_EVENTS) -> list[dict[str, Any]]:
        """Events after `seq`, newest first, at most `limit`."""
        out = [e for e in reversed(self._items) if e["seq"] > seq]
        return out[: max(0, limit)]


# ---- overview and VIP detail ---------------------------------------------------------------------------------------

GOLDEN_FIELDS = ("rps", "error_pct", "p50_ms", "p99_ms")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def overview(
    by_vip: Mapping[str, Sequence[Instance]], golden: Iterable[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """One row per registered VIP: instances UP/total and the golden signals (None where unknown), worst first.

    Worst: no instance UP, then the highest error rate, then the smallest share UP, then by name."""
    signals = {str(r.get("vip")): r for r in golden or () if isinstance(r, Mapping)}
    rows = []
    for vip, instances in by_vip.items():
        up = sum(1 for i in instances if i.status.value == "UP")
        sig = signals.get(vip, {})
        row: dict[str, Any] = {"vip": vip, "up": up, "total": len(instances)}
        row.update({f: _number(sig.get(f)) for f in GOLDEN_FIELDS})
        rows.append(row)
    rows.sort(key=_severity)
    return rows


def _severity(row: Mapping[str, Any]) -> tuple[int, float, float, str]:
    err = row["error_pct"] or 0.0
    share = row["up"] / row["total"] if row["total"] else 0.0
    rank = 0 if row["up"] == 0 else 1 if err > 0 else 2 if share < 1 else 3
    return rank, -err, share, row["vip"]


def vip_detail(
    vip: str, entries: Sequence[Entry], now: float, own: Policy | None, effective: Policy | None
) -> dict[str, Any]:
    """A VIP's instances (status, zone, version, weight, lease age, registered_by), the endpoints the snapshot
    builder pushes for it (UP instances with an IP and a port, one per address) and its policy documents."""
    instances = []
    for e in sorted(entries, key=lambda e: e.instance.instance_id):
        inst = e.instance
        age = max(0.0, now - inst.registered_at_ms / 1000) if inst.registered_at_ms else None
        instances.append(
            {
                "instance_id": inst.instance_id,
                "app": inst.app,
                "host": inst.host,
                "port": inst.port if inst.vip == vip else inst.secure_port,
                "status": inst.status.value,
                "zone": inst.zone,
                "version": inst.version_label,
                "weight": inst.weight,
                "lease_age_s": None if age is None else round(age, 1),
                "lease_duration_s": inst.lease.duration_s,
                "registered_by": inst.registered_by,
            }
        )
    # here, not at the top: the builder's module loads the Envoy protos, which only this view of one VIP needs
    from meshactors.snapshot.builder import select_endpoints

    endpoints, skipped = select_endpoints(vip, (e.instance for e in entries))
    return {
        "vip": vip,
        "instances": instances,
        "endpoints": [
            {
                "host": ep.host,
                "port": ep.port,
                "zone": ep.zone,
                "weight": ep.weight,
                "instance_id": ep.instance_id,
                "version": ep.version_label,
            }
            for ep in endpoints
        ],
        "skipped": [{"instance_id": i, "reason": why} for i, why in skipped],
        "policy": to_document(own) if own is not None else None,
        "effective_policy": to_document(effective) if effective is not None else None,
    }


# ---- proxies and control-plane health ------------------------------------------------------------------------------


def _age(at: Any, now: float) -> float | None:
    value = _number(at)
    return None if value is None else round(max(0.0, now - value), 1)


def proxy_rows(rows: Iterable[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """meshactors.runtime.status.proxy_status rows with a list of types, each with its ACK and NACK ages."""
    out = []
    for row in rows:
        if "error" in row:
            out.append({"xds_server": row.get("xds_server", "?"), "error": _clip(str(row["error"]))})
            continue
        types = []
        for url, t in (row.get("types") or {}).items():
            types.append(
                {
                    "type_url": url,
                    "type": url.rsplit("/", 1)[-1].rsplit(".", 1)[-1],
                    "status": t.get("status"),
                    "responses": t.get("responses"),
                    "names": t.get("names"),
                    "last_ack_at": _number(t.get("last_ack_at")),
                    "last_ack_age_s": _age(t.get("last_ack_at"), now),
                    "last_nack_at": _number(t.get("last_nack_at")),
                    "last_nack_age_s": _age(t.get("last_nack_at"), now),
                    "last_nack": _clip(str(t.get("last_nack") or "")),
                }
            )
        out.append(
            {
                **{
                    k: row.get(k)
                    for k in ("node_id", "xds_server", "stream_id", "stream", "client_kind", "peer", "opened_at")
                },
                "types": types,
            }
        )
    return out


def health(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`meshactors status --json`'s actor rows, with the totals the page heads them with."""
    return {
        "actors": list(rows),
        "restarts": sum(int(r.get("restarts") or 0) for r in rows),
        "not_alive": sorted(str(r.get("name")) for r in rows if r.get("state") != "ALIVE"),
    }


def _stats(row: Mapping[str, Any]) -> Mapping[str, Any]:
    stats = row.get("stats")
    return stats if isinstance(stats, Mapping) else {}


def health_changes(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> list[Change]:
    """Restarts, self-preservation switching and lease expiries between two samples of the actor rows."""
    old = {r.get("name"): r for r in before}
    out = []
    for row in after:
        name = str(row.get("name"))
        prev = old.get(name)
        if prev is None:
            continue
        if int(row.get("restarts") or 0) > int(prev.get("restarts") or 0):
            out.append(Change("restart", "", f"{name} restarted (restart {row.get('restarts')})"))
        now_s, was_s = _stats(row), _stats(prev)
        if "self_preservation" in now_s and "self_preservation" in was_s:
            if bool(now_s["self_preservation"]) != bool(was_s["self_preservation"]):
                state = "entered" if now_s["self_preservation"] else "left"
                out.append(Change("self-preservation", "", f"{name} {state} self-preservation"))
        expired = int(now_s.get("expired") or 0) - int(was_s.get("expired") or 0)
        if expired > 0 and "expired" in was_s:
            out.append(Change("expired", "", f"{name}: {expired} lease(s) expired"))
    return out


def nack_changes(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> list[Change]:
    """A NACK event for every (session, type) whose last NACK is newer than in the previous sample."""
    seen = {(r.get("stream_id"), t["type_url"]): t.get("last_nack_at") for r in before for t in r.get("types", ())}
    out = []
    for row in after:
        for t in row.get("types", ()):
            at = t.get("last_nack_at")
            if at is None:
                continue
            if at != seen.get((row.get("stream_id"), t["type_url"])):
                node = row.get("node_id") or "(no node)"
                out.append(Change("nack", "", f"{node} NACKed {t['type']}: {t['last_nack']}"))
    return out


# ---- plots ---------------------------------------------------------------------------------------------------------


def histogram(title: str, unit: str, buckets: Iterable[tuple[Any, Any]], cumulative: bool = False) -> dict[str, Any]:
    """A histogram row the page draws as bars: `buckets` are (label or upper bound, count) in order; cumulative
    counts (Prometheus `le` buckets) are turned into counts per bucket. At most MAX_BUCKETS bars."""
    bars, previous = [], 0.0
    for label, count in list(buckets)[:MAX_BUCKETS]:
        value = _number(count) or 0.0
        bars.append(
            {
                "label": _bound(label) if cumulative else _clip(str(label), 40),
                "count": max(0.0, value - previous) if cumulative else value,
            }
        )
        previous = value if cumulative else previous
    return {"title": _clip(title, 80), "unit": _clip(unit, 16), "bars": bars}


def _bound(le: Any) -> str:
    value = _number(le)
    if value is None:
        return "+Inf" if str(le) in ("+Inf", "inf") else _clip(str(le), 40)
    return f"≤{value:g}"


class Samples:
    """What the control plane looked like over time (bounded): sessions per xDS server, registrations, responses."""

    def __init__(self, limit: int = MAX_SAMPLES) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=limit)

    def add(self, at: float, actors: Sequence[Mapping[str, Any]], instances: int) -> None:
        sessions: dict[str, float] = {}
        responses: dict[str, float] = {}
        for row in actors:
            host = _stats(row).get("host")
            if row.get("kind") != "xds-server" or not isinstance(host, Mapping):
                continue
            sessions[str(row.get("name"))] = _number(host.get("sessions")) or 0.0
            for url, n in (host.get("responses_by_type") or {}).items():
                short = str(url).rsplit("/", 1)[-1].rsplit(".", 1)[-1]
                responses[short] = responses.get(short, 0.0) + (_number(n) or 0.0)
        self._items.append({"t": at, "sessions": sessions, "instances": instances, "responses": responses})

    def lines(self) -> list[dict[str, Any]]:
        """Line plots: xDS sessions per server and registered instances over time."""
        items = list(self._items)
        servers = sorted({s for i in items for s in i["sessions"]})[:MAX_SERIES]
        return [
            {
                "title": "xDS sessions",
                "unit": "",
                "series": [
                    {"name": s, "points": [[i["t"], i["sessions"].get(s, 0.0)] for i in items]} for s in servers
                ],
            },
            {
                "title": "registered instances",
                "unit": "",
                "series": [{"name": "instances", "points": [[i["t"], float(i["instances"])] for i in items]}],
            },
        ]

    def histograms(self) -> list[dict[str, Any]]:
        """The xDS responses (pushes and answers) sent so far, per type URL, as bars."""
        last = self._items[-1]["responses"] if self._items else {}
        return [histogram("xDS responses by type (all servers)", "", sorted(last.items()))]


def plots(samples: Samples, extra_histograms: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Everything the control-plane view draws: line plots, then histogram rows (ours, then any given)."""
    extra = [
        histogram(str(h.get("title", "")), str(h.get("unit", "")), h.get("buckets", ()), bool(h.get("cumulative")))
        for h in extra_histograms
    ]
    return {"lines": samples.lines(), "histograms": [*samples.histograms(), *extra]}


def xds_histograms(actors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The convergence-time and first-request fetch-time histograms of every xDS server (`status` rows), summed
    bucket by bucket (the servers share their bounds), as rows `plots` draws: seconds per bucket upper bound."""
    wanted = (
        ("convergence_time", "Convergence time: a change to the last ACK of every session (all servers)"),
        ("fetch_time", "First-request fetch time from the builders (all servers)"),
    )
    out = []
    for key, title in wanted:
        bounds: tuple[Any, ...] | None = None
        counts: list[float] = []
        for row in actors:
            data = ((row.get("stats") or {}).get("host") or {}).get(key) if row.get("kind") == "xds-server" else None
            if not isinstance(data, Mapping) or not data.get("bounds"):
                continue
            these = tuple(data["bounds"])
            if bounds is None:
                bounds, counts = these, [0.0] * (len(these) + 1)
            if these != bounds:
                continue  # another build's buckets: not summable
            for i, n in enumerate(data.get("counts") or ()):
                if i < len(counts):
                    counts[i] += _number(n) or 0.0
        if bounds is not None:
            labels = [_bound(b) for b in bounds] + ["+Inf"]
            out.append({"title": title, "unit": "s", "buckets": list(zip(labels, counts, strict=True))})
    return out
