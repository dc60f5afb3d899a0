"""Prometheus metric families from the actors' statistics (plain dicts); labels are bounded: actor and type URL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from meshactors.xds.sync import SyncStatus, session_sync

PREFIX = "meshactors"


def _counter(name: str, doc: str, actor: str, value: float) -> CounterMetricFamily:
    fam = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["actor"])
    fam.add_metric([actor], value)
    return fam


def _gauge(name: str, doc: str, actor: str, value: float) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["actor"])
    fam.add_metric([actor], value)
    return fam


def xds_server(actor: str, host: Mapping[str, Any], type_urls: Iterable[str]) -> list[Metric]:
    """An xDS server's host statistics (`HostStatistics` as a dict, with its sessions); type URLs outside
    `type_urls` (those its sources serve) are counted as "other"."""
    sessions = GaugeMetricFamily(f"{PREFIX}_xds_sessions", "Connected ADS streams", labels=["actor", "stream"])
    by_kind = {"delta": 0, "sotw": 0}
    status = GaugeMetricFamily(
        f"{PREFIX}_xds_session_types",
        "Connected streams per type URL by sync status (Istio's rule: SYNCED, STALE, NOT_SENT, ERROR)",
        labels=["actor", "type_url", "status"],
    )
    counts: dict[tuple[str, str], int] = {}
    known = set(type_urls)
    for s in host.get("streams") or ():
        by_kind[s["kind"]] = by_kind.get(s["kind"], 0) + 1
        for t in session_sync(s["protocol"]):
            url = t.type_url if t.type_url in known else "other"
            counts[url, t.status.value] = counts.get((url, t.status.value), 0) + 1
    for kind, n in by_kind.items():
        sessions.add_metric([actor, kind], n)
    for url in sorted({u for u, _ in counts}):
        for st in SyncStatus:
            status.add_metric([actor, url, st.value], counts.get((url, st.value), 0))
    responses = CounterMetricFamily(
        f"{PREFIX}_xds_responses", "xDS responses (pushes and answers) sent, per type URL", labels=["actor", "type_url"]
    )
    for url, n in sorted((host.get("responses_by_type") or {}).items()):
        responses.add_metric([actor, url], n)
    nacks = CounterMetricFamily(f"{PREFIX}_xds_nacks", "NACKs received, per type URL", labels=["actor", "type_url"])
    for url, n in sorted((host.get("nacks_by_type") or {}).items()):
        nacks.add_metric([actor, url], n)
    refused = CounterMetricFamily(
        f"{PREFIX}_xds_refused", "Streams or names refused, by reason", labels=["actor", "reason"]
    )
    for reason, key in (("not_ready", "refused_not_ready"), ("rate", "refused_rate"), ("name", "names_refused")):
        refused.add_metric([actor, reason], host.get(key, 0))
    return [
        sessions,
        status,
        responses,
        nacks,
        refused,
        _gauge("xds_ready", "1 once the xDS server accepts streams", actor, 1 if host.get("ready") else 0),
        _counter("xds_streams_opened", "ADS streams accepted", actor, host.get("streams_opened", 0)),
        _counter("xds_fetch_failures", "On-demand snapshot fetches that failed", actor, host.get("fetch_failures", 0)),
        _counter("xds_stream_errors", "Streams ended by a server-side bug", actor, host.get("stream_errors", 0)),
        _gauge("xds_snapshots_held", "Per-VIP snapshots held in the xDS cache", actor, host.get("snapshots_held", 0)),
    ]


def snapshot_builder(actor: str, builder: Mapping[str, Any], etcd_revision: int | None) -> list[Metric]:
    """A snapshot builder's statistics (`BuilderStatistics` as a dict) and, if known, etcd's current revision."""
    out: list[Metric] = [
        _gauge("builder_ready", "1 once the builder has loaded every registration", actor, int(bool(builder["ready"]))),
        _counter("builder_builds", "Per-VIP snapshot builds", actor, builder.get("builds", 0)),
        _counter("builder_pushes", "Snapshots pushed to xDS servers", actor, builder.get("pushes", 0)),
        _counter("builder_events", "Registry watch events applied", actor, builder.get("events", 0)),
        _counter(
            "builder_resyncs", "Full reloads after a compaction or a broken watch", actor, builder.get("resyncs", 0)
        ),
        _gauge("builder_instances", "Registrations in the builder's view", actor, builder.get("instances", 0)),
        _gauge("builder_vips_with_interest", "VIPs some xDS server holds", actor, builder.get("vips_with_interest", 0)),
        _gauge("builder_revision", "Last etcd revision the builder applied", actor, builder.get("revision", 0)),
    ]
    if etcd_revision is not None:
        out.append(watch_lag(actor, etcd_revision, int(builder.get("revision", 0))))
    return out


def watch_lag(actor: str, etcd_revision: int, applied: int) -> GaugeMetricFamily:
    """Revisions the actor's view is behind etcd (0 when current; events of other keys also count, as in etcd)."""
    return _gauge(
        "watch_lag_revisions", "etcd revisions not yet applied by this actor's watch", actor,
        max(0, etcd_revision - applied),
    )  # fmt: skip


def registry_shard(actor: str, shard: Mapping[str, Any], etcd_revision: int | None) -> list[Metric]:
    """A registry shard's statistics (a dict: counters, instances, self-preservation, its watch's revision)."""
    out: list[Metric] = [
        _gauge("registry_ready", "1 once the shard has loaded", actor, int(bool(shard.get("ready")))),
        _gauge("registry_instances", "Registrations owned by the shard", actor, shard.get("instances", 0)),
        _gauge(
            "registry_self_preservation",
            "1 while the shard stops expiring leases (too many missed heartbeats)",
            actor,
            int(bool(shard.get("self_preservation"))),
        ),
        _counter("registry_registrations", "Registrations accepted", actor, shard.get("registered", 0)),
        _counter("registry_heartbeats", "Heartbeats accepted", actor, shard.get("heartbeats", 0)),
        _counter("registry_expiries", "Registrations expired (missed heartbeats)", actor, shard.get("expired", 0)),
        _counter("registry_deregistrations", "Registrations removed by request", actor, shard.get("deregistered", 0)),
    ]
    applied = (shard.get("watch") or {}).get("revision")
    if etcd_revision is not None and applied is not None:
        out.append(watch_lag(actor, etcd_revision, int(applied)))
    return out


class _Once:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(families: Iterable[Metric]) -> bytes:
    """The Prometheus text exposition of `families`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once(families))
    return generate_latest(registry)
