"""Data-plane golden signals per VIP: what Envoy's metrics sink reports, summed per (caller, destination VIP)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric of a reported family: a counter or gauge `value`, or a histogram (`value` is its sample count,
    `buckets` its (upper bound, cumulative count) pairs, `total` its sum)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    histogram: bool = False
    buckets: tuple[tuple[float, int], ...] = ()
    total: float = 0.0


@dataclass(frozen=True, slots=True)
class ReportNode:
    """The node a metrics stream names on its first message. `token`: its metadata's `meshactors_token`, never
    shown."""

    id: str
    cluster: str = ""
    token: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class MetricsReport:
    """One StreamMetricsMessage: the node (first message of a stream only) and its samples."""

    node: ReportNode | None
    samples: tuple[Sample, ...] = ()
    size: int = field(default=0, compare=False)


# ---- what Envoy's sink sends (the bootstrap's stats inclusion list asks for exactly these) -----------------------

CLUSTER_LABEL = "envoy.cluster_name"  # emit_tags_as_labels: the tag-extracted cluster name, a label
CODE_CLASS_LABEL = "envoy.response_code_class"
REQUESTS_STAT = "cluster.upstream_rq_total"
LATENCY_STAT = "cluster.upstream_rq_time"  # a histogram in milliseconds; per flush (interval), like the counters
CODE_CLASS_STAT = "cluster.upstream_rq_xx"  # `upstream_rq_5xx` after tag extraction, class "5"

ERROR_5XX = "5xx"
# error class -> the per-cluster counters (tag-extracted names) it sums. 5xx is what error % counts: Envoy answers a
# timeout (504), a reset or an overflow (503) with a 5xx too, so the other classes say why, they are not added.
ERROR_STATS: dict[str, tuple[str, ...]] = {
    "timeout": ("cluster.upstream_rq_timeout",),
    "reset": ("cluster.upstream_rq_rx_reset", "cluster.upstream_rq_tx_reset"),
    "connect_fail": ("cluster.upstream_cx_connect_fail",),
    "overflow": ("cluster.upstream_rq_pending_overflow",),  # the circuit breaker's pending-request limit
    "ejection": ("cluster.outlier_detection.ejections_enforced_total",),
}
ERROR_CLASSES = (ERROR_5XX, *ERROR_STATS)
_CLASS_OF_STAT = {stat: cls for cls, stats in ERROR_STATS.items() for stat in stats}
# the per-cluster stats (full names, before tag extraction) the bootstrap's inclusion list keeps
CLUSTER_STATS = (
    "upstream_rq_total", "upstream_rq_5xx", "upstream_rq_time", "upstream_rq_timeout", "upstream_rq_rx_reset",
    "upstream_rq_tx_reset", "upstream_cx_connect_fail", "upstream_rq_pending_overflow",
    "outlier_detection.ejections_enforced_total",
)  # fmt: skip

OTHER = "other"  # where VIPs (or callers) past the bound are counted
UNKNOWN = "unknown"  # the caller of a proxy whose node names no known VIP

DEFAULT_MAX_VIPS = 1000
DEFAULT_MAX_CALLERS_PER_VIP = 64
DEFAULT_WINDOW_S = 60.0
DEFAULT_SLOT_S = 5.0


def stat_name(cluster: str) -> str:
    """The dot-free `alt_stat_name` of a cluster: Envoy's tag extraction takes a cluster's stat name up to its first
    dot, so `dotted.vip.example` would be reported as `dotted`. VIP names have no `_`, so `_` stands for `.`."""
    return cluster.replace(".", "_")


def vip_of_stat(stat: str) -> str:
    """The VIP a reported cluster stat name belongs to: `stat_name` undone; a version cluster (`vip~v1`) counts
    for its VIP."""
    return stat.partition("~")[0].replace("_", ".")


def _bucket_counts(buckets: tuple[tuple[float, int], ...], count: float) -> dict[float, int]:
    """Envoy's cumulative (upper bound, count) pairs -> per-bucket counts; what is above the last bound goes to
    +Inf."""
    out: dict[float, int] = {}
    below = 0
    for le, cumulative in sorted(buckets):
        n = max(0, int(cumulative) - below)
        if n:
            out[float(le)] = out.get(float(le), 0) + n
        below = max(below, int(cumulative))
    if int(count) > below:
        out[math.inf] = int(count) - below
    return out


def percentile(buckets: Mapping[float, int], q: float) -> float | None:
    """The q-quantile (0..1) of per-bucket counts, interpolated inside its bucket like Prometheus'
    histogram_quantile; None without samples. One in the +Inf bucket is the highest finite bound."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = q * total
    seen, lower = 0, 0.0
    bounds = sorted(buckets)
    for le in bounds:
        n = buckets[le]
        if n and seen + n >= rank:
            if math.isinf(le):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            return lower + (le - lower) * max(0.0, rank - seen) / n
        seen += n
        if not math.isinf(le):
            lower = le
    return lower


@dataclass
class _Counts:
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, other: _Counts) -> None:
        self.requests += other.requests
        for cls, n in other.errors.items():
            self.errors[cls] = self.errors.get(cls, 0) + n


@dataclass
class _Latency:
    buckets: dict[float, int] = field(default_factory=dict)  # upper bound (ms) -> count in that bucket
    count: int = 0
    sum_ms: float = 0.0

    def add(self, buckets: Mapping[float, int], count: int, sum_ms: float) -> None:
        for le, n in buckets.items():
            self.buckets[le] = self.buckets.get(le, 0) + n
        self.count += count
        self.sum_ms += sum_ms


@dataclass
class _Slot:
    pairs: dict[tuple[str, str], _Counts] = field(default_factory=dict)
    latency: dict[str, _Latency] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallerSignals:
    caller: str
    requests: int  # since the server started
    errors: int  # 5xx, since the server started
    errors_by_class: dict[str, int]
    window_requests: int
    window_errors: int


@dataclass(frozen=True, slots=True)
class VipSignals:
    """One destination VIP as one xDS server saw it: totals since it started (what its Prometheus counters say)
    and the last window's counts and latency buckets (upper bound in ms, +Inf as math.inf -> count)."""

    vip: str
    requests: int
    errors: int
    errors_by_class: dict[str, int]
    window_requests: int
    window_errors: int
    window_buckets: tuple[tuple[float, int], ...]
    total_buckets: tuple[tuple[float, int], ...]
    total_count: int
    total_sum_ms: float
    callers: tuple[CallerSignals, ...]


@dataclass(frozen=True, slots=True)
class GoldenStatistics:
    """What one xDS server aggregated from the metrics streams of its proxies."""

    window_s: float  # the span the window counts cover (shorter just after a start)
    streams: int  # metrics streams connected now
    reports: int  # StreamMetricsMessages absorbed
    report_bytes: int
    foreign_samples: int  # samples of clusters that are no known VIP (the xDS cluster, ...), dropped
    folded: int  # samples whose VIP or caller was past its bound, counted as "other"
    vips: tuple[VipSignals, ...]


class GoldenSignals:
    """Sums the reports of every proxy per (destination VIP, caller VIP): counters (Envoy sends deltas) and latency
    histograms (Envoy sends each flush's interval), into totals and a sliding window of `window_s` in `slot_s`
    slots. Nothing is kept per proxy, so a proxy that goes away simply stops adding. Bounded: at most `max_vips`
    destination VIPs (later ones count as "other") and `max_callers_per_vip` callers of each."""

    def __init__(
        self,
        *,
        max_vips: int = DEFAULT_MAX_VIPS,
        max_callers_per_vip: int = DEFAULT_MAX_CALLERS_PER_VIP,
        window_s: float = DEFAULT_WINDOW_S,
        slot_s: float = DEFAULT_SLOT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_vips < 1 or max_callers_per_vip < 1:
            raise ValueError("max_vips and max_callers_per_vip must be at least 1")
        if slot_s <= 0 or window_s < slot_s:
            raise ValueError("need 0 < slot_s <= window_s")
        self.max_vips, self.max_callers = max_vips, max_callers_per_vip
        self.window_s, self.slot_s = window_s, slot_s
        self._clock = clock
        self._started = clock()
        self._totals: dict[tuple[str, str], _Counts] = {}
        self._latency: dict[str, _Latency] = {}
        self._callers: dict[str, set[str]] = {}
        self._slots: dict[int, _Slot] = {}
        self.streams = 0
        self.reports = 0
        self.report_bytes = 0
        self.foreign_samples = 0
        self.folded = 0

    # ---- bounds --------------------------------------------------------------------------------------------------

    def _vip(self, vip: str) -> str:
        if vip in self._callers:
            return vip
        if len(self._callers) >= self.max_vips:
            self.folded += 1
            vip = OTHER
        self._callers.setdefault(vip, set())
        return vip

    def _caller(self, vip: str, caller: str) -> str:
        seen = self._callers[vip]
        if caller in seen:
            return caller
        if len(seen) >= self.max_callers:
            self.folded += 1
            caller = OTHER
        seen.add(caller)
        return caller

    def caller_of(self, node: ReportNode | None, known: Collection[str]) -> str:
        """A proxy's caller VIP: its node's cluster when that is a known VIP, else "unknown" (bounded)."""
        if node is not None and node.cluster in known:
            return node.cluster
        return UNKNOWN

    # ---- absorbing -----------------------------------------------------------------------------------------------

    def _slot(self, now: float) -> _Slot:
        index = int(now // self.slot_s)
        oldest = index - math.ceil(self.window_s / self.slot_s) + 1
        for old in [i for i in self._slots if i < oldest]:
            del self._slots[old]
        return self._slots.setdefault(index, _Slot())

    def absorb(self, caller: str, report: MetricsReport, known: Collection[str]) -> None:
        """Add one report of a proxy whose caller VIP is `caller`; clusters that are no VIP in `known` are
        dropped."""
        self.reports += 1
        self.report_bytes += report.size
        pairs: dict[tuple[str, str], _Counts] = {}
        latency: dict[str, tuple[dict[float, int], int, float]] = {}
        for s in report.samples:
            labels = dict(s.labels)
            cluster = labels.get(CLUSTER_LABEL)
            if cluster is None:
                continue
            is_latency = s.histogram and s.name == LATENCY_STAT
            cls = ERROR_5XX if s.name == CODE_CLASS_STAT and labels.get(CODE_CLASS_LABEL) == "5" else None
            cls = cls or _CLASS_OF_STAT.get(s.name)
            if not (is_latency or cls or s.name == REQUESTS_STAT):
                continue
            vip = vip_of_stat(cluster)
            if vip not in known:
                self.foreign_samples += 1
                continue
            if not s.value:
                continue  # a used stat with nothing new this flush
            vip = self._vip(vip)
            if is_latency:
                buckets, count, total = latency.get(vip, ({}, 0, 0.0))
                for le, n in _bucket_counts(s.buckets, s.value).items():
                    buckets[le] = buckets.get(le, 0) + n
                latency[vip] = (buckets, count + int(s.value), total + s.total)
                continue
            counts = pairs.setdefault((vip, self._caller(vip, caller)), _Counts())
            n = int(s.value)
            if cls is None:
                counts.requests += n
            else:
                counts.errors[cls] = counts.errors.get(cls, 0) + n
        if not pairs and not latency:
            return
        slot = self._slot(self._clock())
        for key, counts in pairs.items():
            self._totals.setdefault(key, _Counts()).add(counts)
            slot.pairs.setdefault(key, _Counts()).add(counts)
        for vip, (buckets, count, total) in latency.items():
            self._latency.setdefault(vip, _Latency()).add(buckets, count, total)
            slot.latency.setdefault(vip, _Latency()).add(buckets, count, total)

    # ---- reading -------------------------------------------------------------------------------------------------

    def statistics(self) -> GoldenStatistics:
        now = self._clock()
        self._slot(now)  # drops what left the window
        window = _Slot()
        for slot in self._slots.values():
            for key, counts in slot.pairs.items():
                window.pairs.setdefault(key, _Counts()).add(counts)
            for vip, lat in slot.latency.items():
                window.latency.setdefault(vip, _Latency()).add(lat.buckets, lat.count, lat.sum_ms)
        vips = []
        for vip in sorted(self._callers):
            callers = []
            for caller in sorted(self._callers[vip]):
                total = self._totals.get((vip, caller), _Counts())
                recent = window.pairs.get((vip, caller), _Counts())
                callers.append(
                    CallerSignals(
                        caller,
                        total.requests,
                        total.errors.get(ERROR_5XX, 0),
                        dict(total.errors),
                        recent.requests,
                        recent.errors.get(ERROR_5XX, 0),
                    )
                )
            by_class: dict[str, int] = {}
            for c in callers:
                for cls, n in c.errors_by_class.items():
                    by_class[cls] = by_class.get(cls, 0) + n
            lat = self._latency.get(vip, _Latency())
            recent_lat = window.latency.get(vip, _Latency())
            vips.append(
                VipSignals(
                    vip=vip,
                    requests=sum(c.requests for c in callers),
                    errors=sum(c.errors for c in callers),
                    errors_by_class=by_class,
                    window_requests=sum(c.window_requests for c in callers),
                    window_errors=sum(c.window_errors for c in callers),
                    window_buckets=tuple(sorted(recent_lat.buckets.items())),
                    total_buckets=tuple(sorted(lat.buckets.items())),
                    total_count=lat.count,
                    total_sum_ms=lat.sum_ms,
                    callers=tuple(callers),
                )
            )
        return GoldenStatistics(
            window_s=max(self.slot_s, min(self.window_s, now - self._started)),
            streams=self.streams,
            reports=self.reports,
            report_bytes=self.report_bytes,
            foreign_samples=self.foreign_samples,
            folded=self.folded,
            vips=tuple(vips),
        )


# ---- merging the xDS servers' views (what `meshactors top` and the dashboard show) --------------------------------


def _pct(errors: int, requests: int) -> float:
    return round(100.0 * errors / requests, 3) if requests else 0.0


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def rows(servers: Iterable[GoldenStatistics]) -> list[dict[str, Any]]:
    """One row per destination VIP, summed over every xDS server, worst first (error %, then p99):

    {"vip", "rps", "error_pct", "p50_ms", "p95_ms", "p99_ms", "requests", "errors", "errors_by_class",
     "callers": [{"caller", "rps", "error_pct"}]}

    `rps`, `error_pct` and the percentiles cover the last window (about a minute); `requests`, `errors` (5xx) and
    `errors_by_class` count since the servers started, as their Prometheus counters do."""
    window_s = 0.0
    acc: dict[str, dict[str, Any]] = {}
    for stats in servers:
        window_s = max(window_s, stats.window_s)
        for v in stats.vips:
            row = acc.setdefault(
                v.vip, {"requests": 0, "errors": 0, "by_class": {}, "wreq": 0, "werr": 0, "buckets": {}, "callers": {}}
            )
            row["requests"] += v.requests
            row["errors"] += v.errors
            row["wreq"] += v.window_requests
            row["werr"] += v.window_errors
            for cls, n in v.errors_by_class.items():
                row["by_class"][cls] = row["by_class"].get(cls, 0) + n
            for le, n in v.window_buckets:
                row["buckets"][le] = row["buckets"].get(le, 0) + n
            for c in v.callers:
                wreq, werr = row["callers"].get(c.caller, (0, 0))
                row["callers"][c.caller] = (wreq + c.window_requests, werr + c.window_errors)
    out = []
    per_s = window_s or DEFAULT_WINDOW_S
    for vip, row in acc.items():
        p50, p95, p99 = (percentile(row["buckets"], q) for q in (0.5, 0.95, 0.99))
        callers = [
            {"caller": caller, "rps": round(wreq / per_s, 3), "error_pct": _pct(werr, wreq)}
            for caller, (wreq, werr) in row["callers"].items()
        ]
        callers.sort(key=lambda c: (-c["rps"], c["caller"]))
        out.append(
            {
                "vip": vip,
                "rps": round(row["wreq"] / per_s, 3),
                "error_pct": _pct(row["werr"], row["wreq"]),
                "p50_ms": _ms(p50),
                "p95_ms": _ms(p95),
                "p99_ms": _ms(p99),
                "requests": row["requests"],
                "errors": row["errors"],
                "errors_by_class": {cls: row["by_class"].get(cls, 0) for cls in ERROR_CLASSES},
                "callers": callers,
            }
        )
    out.sort(key=lambda r: (-r["error_pct"], -(r["p99_ms"] or 0.0), r["vip"]))
    return out


def format_top(table: list[dict[str, Any]], limit: int | None = None) -> str:
    """The aligned table `meshactors top` prints: worst VIPs first."""
    head = (
        f"{'VIP':<32} {'RPS':>9} {'ERR%':>7} {'P50ms':>9} {'P95ms':>9} {'P99ms':>9} {'REQUESTS':>10} {'ERRORS':>8}"
        "  TOP CALLERS"
    )
    lines = [head]
    for r in table[:limit] if limit else table:

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        callers = ", ".join(f"{c['caller']}({c['rps']:g}/s)" for c in r["callers"][:3])
        lines.append(
            f"{r['vip'][:32]:<32} {r['rps']:>9.2f} {r['error_pct']:>7.2f} {num(r['p50_ms']):>9} "
            f"{num(r['p95_ms']):>9} {num(r['p99_ms']):>9} {r['requests']:>10} {r['errors']:>8}  {callers}"
        )
    if not table:
        lines.append("(no traffic reported yet: proxies flush their statistics every few seconds)")
    return "\n".join(lines)


# ---- Prometheus (on each xDS server's /metrics; sum over servers in PromQL) ---------------------------------------


def _seconds(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le / 1000.0)


def families(actor: str, stats: GoldenStatistics) -> list[Metric]:
    """`meshactors_vip_requests_total{actor,vip,caller}`, `meshactors_vip_errors_total{actor,vip,caller,class}`,
    `meshactors_vip_request_duration_seconds{actor,vip}` (a histogram) and the sink's own counters. `actor` is
    the xDS server (sum it away in PromQL); VIPs are bounded by max_vips, callers by max_callers_per_vip; never a
    proxy or an instance."""
    requests = CounterMetricFamily(
        "meshactors_vip_requests", "Requests proxies sent to a VIP, by caller VIP", labels=["actor", "vip", "caller"]
    )
    errors = CounterMetricFamily(
        "meshactors_vip_errors",
        "Failed requests to a VIP by caller and class (5xx; timeout, reset, connect_fail, overflow, ejection say why)",
        labels=["actor", "vip", "caller", "class"],
    )
    duration = HistogramMetricFamily(
        "meshactors_vip_request_duration_seconds",
        "Upstream request time to a VIP, summed over proxies",
        labels=["actor", "vip"],
    )
    for v in stats.vips:
        for c in v.callers:
            requests.add_metric([actor, v.vip, c.caller], c.requests)
            for cls in ERROR_CLASSES:
                errors.add_metric([actor, v.vip, c.caller, cls], c.errors_by_class.get(cls, 0))
        if v.total_count:
            cumulative, buckets = 0, []
            for le, n in v.total_buckets:
                cumulative += n
                if not math.isinf(le):
                    buckets.append((_seconds(le), cumulative))
            buckets.append(("+Inf", v.total_count))
            duration.add_metric([actor, v.vip], buckets, sum_value=v.total_sum_ms / 1000.0)
    streams = GaugeMetricFamily("meshactors_telemetry_streams", "Connected Envoy metrics streams", labels=["actor"])
    streams.add_metric([actor], stats.streams)
    reports = CounterMetricFamily("meshactors_telemetry_reports", "Metrics flushes received", labels=["actor"])
    reports.add_metric([actor], stats.reports)
    size = CounterMetricFamily("meshactors_telemetry_report_bytes", "Bytes of metrics flushes", labels=["actor"])
    size.add_metric([actor], stats.report_bytes)
    folded = CounterMetricFamily(
        "meshactors_telemetry_folded", 'Samples counted as VIP or caller "other" (past the bound)', labels=["actor"]
    )
    folded.add_metric([actor], stats.folded)
    return [requests, errors, duration, streams, reports, size, folded]
