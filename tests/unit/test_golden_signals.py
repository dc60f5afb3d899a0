"""Golden signals: the metrics sink in the bootstrap (real `envoy --mode validate`), the wire codec, the dot-free
stat names, and the aggregation (summing deltas over proxies, percentiles from buckets, bounds, departed proxies)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshactors.envoy.bootstrap import DEFAULT_STATS_FLUSH_S, envoy_bootstrap
from meshactors.envoy.metrics_codec import decode_stream_metrics, encode_stream_metrics
from meshactors.envoy.resources import eds_cluster_message
from meshactors.errors import CodecError
from meshactors.telemetry import golden
from meshactors.telemetry.golden import (
    CLUSTER_LABEL,
    CODE_CLASS_LABEL,
    CODE_CLASS_STAT,
    LATENCY_STAT,
    REQUESTS_STAT,
    GoldenSignals,
    MetricsReport,
    ReportNode,
    Sample,
)
from meshactors.telemetry.metrics import render
from tests.unit.test_envoy_bootstrap import as_json, check_golden, envoy_validate

KNOWN = frozenset({"a", "b", "dotted.vip.example", "web"})
# Envoy's default histogram bounds (ms), the first few
BOUNDS = (0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counter(name: str, cluster: str, value: float, **labels: str) -> Sample:
    return Sample(name, ((CLUSTER_LABEL, cluster), *labels.items()), value)


def latency(cluster: str, per_bucket: dict[float, int], over: int = 0) -> Sample:
    """A flush's latency histogram as Envoy sends it: cumulative counts per bound; `over` above the last bound."""
    cumulative, pairs = 0, []
    for le in BOUNDS:
        cumulative += per_bucket.get(le, 0)
        pairs.append((le, cumulative))
    return Sample(LATENCY_STAT, ((CLUSTER_LABEL, cluster),), float(cumulative + over), True, tuple(pairs), 1.0)


def report(*samples: Sample) -> MetricsReport:
    return MetricsReport(node=None, samples=samples, size=100)


def five_xx(cluster: str, value: float) -> Sample:
    return counter(CODE_CLASS_STAT, cluster, value, **{CODE_CLASS_LABEL: "5"})


# ---- bootstrap -------------------------------------------------------------------------------------------------


def test_bootstrap_with_the_sink_golden_and_real_envoy_accepts_it(tmp_path: Path) -> None:
    config = envoy_bootstrap(
        [("127.0.0.1", 18000)], "sidecar-1", node_cluster="web", token="tok", stats_flush_s=DEFAULT_STATS_FLUSH_S
    )
    check_golden("envoy_bootstrap_metrics_sink.json", as_json(config))
    sink = config["stats_sinks"][0]
    assert sink["name"] == "envoy.stat_sinks.metrics_service"
    assert sink["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "meshactors_xds"
    assert sink["typed_config"]["grpc_service"]["initial_metadata"] == [{"key": "authorization", "value": "Bearer tok"}]
    assert config["stats_flush_interval"] == "5s"
    proc = envoy_validate(config, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bootstrap_without_the_sink_is_unchanged() -> None:
    config = envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1")
    assert not {"stats_sinks", "stats_config", "stats_flush_interval"} & set(config)


def test_the_inclusion_list_keeps_the_golden_stats_and_what_operators_read_only() -> None:
    patterns = envoy_bootstrap([("127.0.0.1", 18000)], "n", stats_flush_s=5)["stats_config"]["stats_matcher"]
    patterns = patterns["inclusion_list"]["patterns"]

    def kept(stat: str) -> bool:
        for p in patterns:
            if "safe_regex" in p and re.search(p["safe_regex"]["regex"], stat):
                return True
            if stat.startswith(p.get("prefix", "\0")) or stat.endswith(p.get("suffix", "\0")):
                return True
        return False

    for stat in (
        "upstream_rq_total",
        "upstream_rq_5xx",
        "upstream_rq_time",
        "outlier_detection.ejections_enforced_total",
    ):
        assert kept(f"cluster.dotted_vip_example.{stat}"), stat
    for stat in ("cluster_manager.odcds.update_success", "control_plane.connected_state", "server.uptime"):
        assert kept(stat), stat
    for stat in ("cluster.web.upstream_rq_2xx", "cluster.web.upstream_cx_active", "http.outbound.downstream_rq_total"):
        assert not kept(stat), stat


# ---- names and codec -------------------------------------------------------------------------------------------


def test_dotted_clusters_get_a_dot_free_stat_name_that_maps_back() -> None:
    assert eds_cluster_message("dotted.vip.example").alt_stat_name == "dotted_vip_example"
    assert eds_cluster_message("plain").alt_stat_name == ""  # already dot-free: its own stat name
    assert golden.vip_of_stat("dotted_vip_example") == "dotted.vip.example"
    assert golden.vip_of_stat(golden.stat_name("a.b~v1.2")) == "a.b"  # a version cluster counts for its VIP


def test_codec_round_trip_and_bad_bytes() -> None:
    sent = MetricsReport(
        node=ReportNode("n1", "web", token="secret"),
        samples=(counter(REQUESTS_STAT, "a", 3.0), latency("a", {1.0: 2, 5.0: 1})),
    )
    got = decode_stream_metrics(encode_stream_metrics(sent))
    assert got.node == ReportNode("n1", "web") and got.node.token == "secret"
    assert got.samples == sent.samples
    with pytest.raises(CodecError):
        decode_stream_metrics(b"\x0a\xff\xff")


# ---- aggregation -----------------------------------------------------------------------------------------------


def test_deltas_from_several_proxies_add_up_per_caller_and_vip() -> None:
    clock = Clock()
    g = GoldenSignals(clock=clock)
    g.absorb("web", report(counter(REQUESTS_STAT, "a", 10), five_xx("a", 2)), KNOWN)
    g.absorb("web", report(counter(REQUESTS_STAT, "a", 5)), KNOWN)  # another proxy of web, or the next flush
    g.absorb("unknown", report(counter(REQUESTS_STAT, "a", 4), counter("cluster.upstream_rq_timeout", "a", 1)), KNOWN)
    clock.now += 30
    [row] = golden.rows([g.statistics()])
    assert (row["vip"], row["requests"], row["errors"]) == ("a", 19, 2)
    assert row["errors_by_class"]["5xx"] == 2 and row["errors_by_class"]["timeout"] == 1
    assert row["rps"] == pytest.approx(19 / 30, abs=1e-3)
    assert row["error_pct"] == pytest.approx(100 * 2 / 19, abs=1e-3)
    assert {c["caller"]: c["error_pct"] for c in row["callers"]} == {"web": pytest.approx(100 * 2 / 15, abs=1e-3),
                                                                      "unknown": 0.0}  # fmt: skip


def test_two_servers_merge_and_the_worst_vip_comes_first() -> None:
    s1, s2 = GoldenSignals(), GoldenSignals()
    s1.absorb("web", report(counter(REQUESTS_STAT, "a", 100), latency("a", {1.0: 100})), KNOWN)
    s2.absorb("web", report(counter(REQUESTS_STAT, "b", 10), five_xx("b", 5), latency("b", {50.0: 10})), KNOWN)
    s2.absorb("web", report(counter(REQUESTS_STAT, "a", 100), latency("a", {100.0: 100})), KNOWN)
    table = golden.rows([s1.statistics(), s2.statistics()])
    assert [r["vip"] for r in table] == ["b", "a"]
    assert table[0]["error_pct"] == 50.0 and table[1]["requests"] == 200
    assert set(table[0]) == {"vip", "rps", "error_pct", "p50_ms", "p95_ms", "p99_ms", "requests", "errors",
                             "errors_by_class", "callers"}  # fmt: skip
    # a: half the requests took <= 1 ms, half 50..100 ms
    assert table[1]["p50_ms"] == pytest.approx(1.0) and 50.0 < table[1]["p99_ms"] <= 100.0


def test_percentiles_from_summed_buckets() -> None:
    buckets = {1.0: 50, 5.0: 40, 10.0: 10}
    assert golden.percentile(buckets, 0.5) == pytest.approx(1.0)
    assert golden.percentile(buckets, 0.9) == pytest.approx(5.0)
    assert golden.percentile(buckets, 0.95) == pytest.approx(7.5)  # halfway into the 5..10 bucket
    assert golden.percentile({}, 0.5) is None
    assert golden.percentile({1.0: 1, math.inf: 99}, 0.99) == 1.0  # beyond the last bound: that bound


def test_a_departed_proxy_stops_contributing_and_the_window_forgets() -> None:
    clock = Clock()
    g = GoldenSignals(clock=clock, window_s=60, slot_s=5)
    g.absorb("web", report(counter(REQUESTS_STAT, "a", 60)), KNOWN)
    clock.now += 61
    [v] = g.statistics().vips
    assert (v.requests, v.window_requests) == (60, 0)  # the total stays, the rate goes
    [row] = golden.rows([g.statistics()])
    assert row["rps"] == 0.0 and row["requests"] == 60


def test_bounds_fold_into_other_and_foreign_clusters_are_dropped() -> None:
    known = frozenset(f"v{i}" for i in range(10)) | {"web"}
    g = GoldenSignals(max_vips=3, max_callers_per_vip=1)
    for i in range(10):
        g.absorb("web", report(counter(REQUESTS_STAT, f"v{i}", 1)), known)
    g.absorb("other-caller", report(counter(REQUESTS_STAT, "v0", 1)), known)
    g.absorb("web", report(counter(REQUESTS_STAT, "meshactors_xds", 9), counter(REQUESTS_STAT, "nosuch", 9)), known)
    stats = g.statistics()
    assert {v.vip for v in stats.vips} == {"v0", "v1", "v2", "other"}
    assert {v.vip: v.requests for v in stats.vips}["other"] == 7
    assert [c.caller for c in next(v for v in stats.vips if v.vip == "v0").callers] == ["other", "web"]
    assert stats.foreign_samples == 2 and stats.folded == 8
    assert g.caller_of(ReportNode("n", "web"), known) == "web"
    assert g.caller_of(ReportNode("n", "meshactors"), known) == "unknown"


def test_prometheus_families_are_labelled_by_vip_and_caller_only() -> None:
    g = GoldenSignals()
    g.absorb("web", report(counter(REQUESTS_STAT, "a", 7), five_xx("a", 1), latency("a", {5.0: 6}, over=1)), KNOWN)
    text = render(golden.families("xds-server-0", g.statistics())).decode()
    samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "actor"))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    assert {s.labels["actor"] for f in text_string_to_metric_families(text) for s in f.samples} == {"xds-server-0"}
    assert samples["meshactors_vip_requests_total", (("caller", "web"), ("vip", "a"))] == 7
    assert samples["meshactors_vip_errors_total", (("caller", "web"), ("class", "5xx"), ("vip", "a"))] == 1
    assert samples["meshactors_vip_request_duration_seconds_bucket", (("le", "0.005"), ("vip", "a"))] == 6
    assert samples["meshactors_vip_request_duration_seconds_bucket", (("le", "+Inf"), ("vip", "a"))] == 7
    assert samples["meshactors_vip_request_duration_seconds_count", (("vip", "a"),)] == 7
    labels = {k for name, pairs in samples if name.startswith("meshactors_vip") for k, _ in pairs}
    assert labels <= {"vip", "caller", "class", "le"}


def test_cardinality_stays_within_the_bound_with_many_vips_and_proxies() -> None:
    known = frozenset(f"vip-{i}" for i in range(1500))
    g = GoldenSignals(max_vips=1000)
    for proxy in range(100):
        samples = tuple(counter(REQUESTS_STAT, f"vip-{(proxy * 15 + j) % 1500}", 1) for j in range(15))
        g.absorb(f"vip-{proxy}", report(*samples), known)
    stats = g.statistics()
    assert len(stats.vips) <= 1001
    assert sum(len(v.callers) for v in stats.vips) <= 1001 * golden.DEFAULT_MAX_CALLERS_PER_VIP
    assert sum(v.requests for v in stats.vips) == 1500
