"""Prometheus metric families from the actors' statistics (plain dicts).

Labels are bounded by the code or the deployment's size, never by VIPs, proxies or instances: `actor` (one of the
deployment's actors), `type_url` (those the sources serve, else "other"), and a kind or reason from a fixed set
(`stream`, `client_kind`, `status`, `reason`). `FAMILIES` names every family this module renders."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from meshactors.resources.types import DEFAULT_KIND, ENVOY_KIND, GRPC_KIND
from meshactors.telemetry.histogram import HistogramData
from meshactors.xds.sync import SyncStatus, out_of_sync, session_sync

PREFIX = "meshactors"
TYPE_URL_PREFIX = "type.googleapis.com/"


def _counter(name: str, doc: str, actor: str, value: float) -> CounterMetricFamily:
    fam = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["actor"])
    fam.add_metric([actor], value)
    return fam


def _gauge(name: str, doc: str, actor: str, value: float) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["actor"])
    fam.add_metric([actor], value)
    return fam


def _histogram(name: str, doc: str, actor: str, data: Mapping[str, Any] | None) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(f"{PREFIX}_{name}", doc, labels=["actor"])
    if data is not None:
        hist = HistogramData.from_dict(data)
        fam.add_metric([actor], hist.cumulative(), sum_value=hist.sum)
    return fam


def _by_type(name: str, doc: str, actor: str, counts: Mapping[str, int], known: set[str], counter: bool) -> Metric:
    """A family labelled by type URL; URLs outside `known` are summed as "other"."""
    cls = CounterMetricFamily if counter else GaugeMetricFamily
    fam = cls(f"{PREFIX}_{name}", doc, labels=["actor", "type_url"])
    folded: dict[str, int] = {}
    for url, n in counts.items():
        label = url if url in known else "other"
        folded[label] = folded.get(label, 0) + n
    for url, n in sorted(folded.items()):
        fam.add_metric([actor, url], n)
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
    clients = GaugeMetricFamily(
        f"{PREFIX}_xds_sessions_by_client", "Connected ADS streams by client kind", labels=["actor", "client_kind"]
    )
    by_client = {ENVOY_KIND: 0, GRPC_KIND: 0, "default": 0}
    for s in host.get("streams") or ():
        by_kind[s["kind"]] = by_kind.get(s["kind"], 0) + 1
        client = s.get("client_kind", DEFAULT_KIND)
        by_client[client if client in by_client else "default"] += 1
        for t in session_sync(s["protocol"]):
            url = t.type_url if t.type_url in known else "other"
            counts[url, t.status.value] = counts.get((url, t.status.value), 0) + 1
    for kind, n in by_kind.items():
        sessions.add_metric([actor, kind], n)
    for client, n in by_client.items():
        clients.add_metric([actor, client], n)
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
    for reason, key in (
        ("not_ready", "refused_not_ready"), ("rate", "refused_rate"), ("name", "names_refused"),
        ("unauthenticated", "refused_unauthenticated"), ("permission", "refused_permission"),
        ("revoked", "ended_revoked"),
    ):  # fmt: skip
        refused.add_metric([actor, reason], host.get(key, 0))
    return [
        sessions,
        clients,
        status,
        responses,
        nacks,
        refused,
        _by_type(
            "xds_resources_held",
            "Resources in the snapshots the xDS cache holds, per type URL",
            actor,
            host.get("resources_held_by_type") or {},
            known,
            counter=False,
        ),
        _histogram(
            "xds_convergence_time_seconds",
            "From a registry or policy change seen by its builder to the last ACK of every session holding the VIP",
            actor,
            host.get("convergence_time"),
        ),
        _histogram(
            "xds_fetch_time_seconds",
            "On-demand fetch of snapshots not held (a proxy's first request for a name waits on it)",
            actor,
            host.get("fetch_time"),
        ),
        _gauge(
            "xds_converging",
            "VIPs with a change not yet ACKed by every session holding them",
            actor,
            host.get("converging", 0),
        ),
        _counter(
            "xds_clusters_collected",
            "Times a VIP's clusters were collected from an Envoy that sent it no request for the idle time",
            actor,
            host.get("clusters_collected", 0),
        ),
        _counter(
            "xds_convergence_abandoned",
            "Changes given up on: not ACKed in time, or every waiter closed",
            actor,
            host.get("convergence_abandoned", 0),
        ),
        _gauge("xds_ready", "1 once the xDS server accepts streams", actor, 1 if host.get("ready") else 0),
        _counter("xds_streams_opened", "ADS streams accepted", actor, host.get("streams_opened", 0)),
        _counter("xds_fetch_failures", "On-demand snapshot fetches that failed", actor, host.get("fetch_failures", 0)),
        _counter("xds_stream_errors", "Streams ended by a server-side bug", actor, host.get("stream_errors", 0)),
        _gauge("xds_snapshots_held", "Per-VIP snapshots held in the xDS cache", actor, host.get("snapshots_held", 0)),
    ]


def xds_out_of_sync(
    actor: str, host: Mapping[str, Any], type_urls: Iterable[str], after_s: float, now: float
) -> GaugeMetricFamily:
    """Sessions STALE or ERROR on a type URL for longer than `after_s` (one sample per served type URL, 0 included,
    so an alert sees the series; others count as "other")."""
    fam = GaugeMetricFamily(
        f"{PREFIX}_xds_sessions_out_of_sync",
        f"Connected streams STALE or ERROR on a type URL for longer than {after_s:g} s",
        labels=["actor", "type_url"],
    )
    known = set(type_urls)
    counts = dict.fromkeys(sorted(known), 0)
    for url, n in out_of_sync(host.get("streams") or (), after_s, now).items():
        label = url if url in known else "other"
        counts[label] = counts.get(label, 0) + n
    for url, n in counts.items():
        fam.add_metric([actor, url], n)
    return fam


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
        _counter("builder_policy_changes", "Policy watch changes applied", actor, builder.get("policy_changes", 0)),
    ]
    known = set(builder.get("resources_held_by_type") or {}) | set(builder.get("resources_changed_by_type") or {})
    known = {u for u in known if u.startswith(TYPE_URL_PREFIX)}  # the builder's own types, fixed by its code
    out += [
        _by_type("builder_resources_changed", "Resources a build gave a new version, per type URL", actor,
                 builder.get("resources_changed_by_type") or {}, known, counter=True),
        _by_type("builder_resources_pushed", "Changed resources pushed to xDS servers (one per server), per type URL",
                 actor, builder.get("resources_pushed_by_type") or {}, known, counter=True),
        _by_type("builder_resources_held", "Resources in the snapshots the builder keeps, per type URL", actor,
                 builder.get("resources_held_by_type") or {}, known, counter=False),
    ]  # fmt: skip
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


def api(actor: str, ready: bool, tokens: int) -> list[Metric]:
    """The registry API's state: its token table."""
    return [
        _gauge("api_ready", "1 once the API's token table has loaded", actor, int(ready)),
        _gauge("api_tokens", "Token records the API checks calls against", actor, tokens),
    ]


def eureka_api(
    actor: str, eureka: Mapping[str, Any], ready: bool, tokens: int, etcd_revision: int | None
) -> list[Metric]:
    """The Eureka API's view of etcd (`EurekaApiStatistics` as a dict) and its token table."""
    out: list[Metric] = [
        *api(actor, ready, tokens),
        _gauge("eureka_instances", "Registrations in the Eureka API's view", actor, eureka.get("instances", 0)),
        _counter("eureka_view_changes", "Changes of the view (its versions__delta)", actor, eureka.get("version", 0)),
    ]
    if etcd_revision is not None:
        out.append(watch_lag(actor, etcd_revision, int(eureka.get("revision", 0))))
    return out


def controller(actor: str, converged: bool, rounds: int, actors: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """The controller's view of the deployment (`ActorSummary` dicts); `actor` labels the supervised actor here,
    one of the deployment's (bounded by its size)."""
    restarts = CounterMetricFamily(
        f"{PREFIX}_actor_restarts",
        "Restarts of an actor: by Ray, plus re-creations by the controller",
        labels=["actor"],
    )
    ready = GaugeMetricFamily(f"{PREFIX}_actor_ready", "1 while the actor is alive and ready", labels=["actor"])
    for a in actors:
        restarts.add_metric([a["name"]], int(a.get("restarts", 0)) + int(a.get("recreated", 0)))
        ready.add_metric([a["name"]], int(a.get("state") == "ALIVE" and bool(a.get("ready"))))
    return [
        restarts,
        ready,
        _gauge("controller_converged", "1 while every actor is alive and ready", actor, int(converged)),
        _counter("controller_rounds", "Reconcile rounds", actor, rounds),
    ]


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
