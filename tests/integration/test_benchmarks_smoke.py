"""Every benchmark at a tiny size, through its one entry point: the JSON carries every figure.

The figures themselves are not asserted here (they are checked by running the benchmarks at full size).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def _has(d: dict, *path: str) -> object:
    for key in path:
        assert isinstance(d, dict) and key in d, f"missing {'.'.join(path)}"
        d = d[key]
    return d


def test_report_runs_every_benchmark_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "report", "--tiny", "--out-dir", str(tmp_path / "docs"),
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=880, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    report = json.loads(out.read_text())
    results = _has(report, "results")
    for name in results:  # progress on stderr: each benchmark says when it starts and when it is done
        assert f"benchmark {name} (tiny): running" in proc.stderr and f"benchmark {name}: done in" in proc.stderr
    for name in ("odcds", "propagation", "sessions", "registry", "eureka", "peer", "footprint", "scale"):
        assert _has(results, name, "versions", "envoy_binary")
        assert _has(results, name, "seconds") is not None
    for mode in ("discovery", "discovery_routing_policy", "discovery_vip_held", "bare_ads_floor", "static", "direct"):
        for kind in ("first_request", "warm"):
            for key in ("p50_ms", "p95_ms", "p99_ms"):
                assert isinstance(_has(results, "odcds", "figures", mode, kind, key), float)
    assert isinstance(_has(results, "odcds", "figures", "discovery", "added_cost_first_minus_warm", "p50_ms"), float)
    assert isinstance(_has(results, "odcds", "figures", "routing_policy_first_request_ratio_p50"), float)
    [row] = _has(results, "propagation", "figures", "by_sessions")
    [policy_row] = _has(results, "propagation", "figures", "policy_change_by_sessions")
    for r in (row, policy_row):
        for key in ("p50_ms", "p99_ms"):
            assert isinstance(r["write_to_session_ack"][key], float)
        assert isinstance(r["cpu_s_per_change"], float) and r["changes"] == 3
    assert policy_row["change"] == "policy"
    floor = row["floor"]
    assert floor["change"] == "bare fan-out floor" and floor["changes"] == 3 and floor["sessions"] == row["sessions"]
    assert isinstance(floor["cpu_s_per_change"], float) and isinstance(floor["write_to_session_ack"]["p99_ms"], float)
    for r in (row, policy_row):
        assert r["ratio_to_floor"]["p99_ms"] == round(
            r["write_to_session_ack"]["p99_ms"] / floor["write_to_session_ack"]["p99_ms"], 2
        )
    sess = _has(results, "sessions", "figures")
    assert sess["sessions"] == 50 and sess["bytes_per_session"] > 0 and sess["seconds_to_accept"] > 0
    for op in ("registrations", "heartbeats"):
        fig = _has(results, "registry", "figures", op)
        assert fig["per_second"] > 0 and fig["p99_ms"] > 0 and fig["errors"] == 0
        fig = _has(results, "eureka", "figures", op)
        assert fig["per_second"] > 0 and fig["p99_ms"] > 0 and fig["errors"] == 0
    for fetch in ("apps_json", "apps_xml", "delta_json"):
        assert _has(results, "eureka", "figures", "fetch_with_all_registered", fetch, "bytes") > 0
    for side in ("meshactors", "sovereign", "sovereign_best"):  # sovereign: its default setting
        assert _has(results, "peer", "figures", side, "latency_s", "median") > 0
        assert _has(results, "peer", "figures", side, "cpu_s", "mean_per_change") >= 0
        assert (
            _has(results, "peer", "figures", side, "cpu_s", "window_s") == results["peer"]["settings"]["cpu_window_s"]
        )
        assert _has(results, "peer", "figures", side, "settings", "changes") == results["peer"]["settings"]["changes"]
    for vs in ("vs_default", "vs_best"):
        assert _has(results, "peer", "figures", vs, "speedup_median_latency") > 0
        assert _has(results, "peer", "figures", vs, "cpu_per_change_ratio") > 0
    assert (
        _has(results, "peer", "figures", "speedup_median_latency")
        == results["peer"]["figures"]["vs_best"]["speedup_median_latency"]
    )
    fp = _has(results, "footprint", "figures", "embedded_default")
    assert fp["seconds_to_ready"] > 0
    for phase in ("idle", "loaded"):
        snap = fp[phase]
        roles = {row["role"] for row in snap["per_process"]}
        assert {"up (driver)", "etcd", "ray gcs", "ray raylet", "actor"} <= roles, roles
        # what the local Ray of `up` no longer starts (issue 19): idle prestarted workers, the autoscaler monitor,
        # the log monitor and the dashboard head
        assert not roles & {"ray idle worker", "ray autoscaler monitor", "ray log monitor", "ray dashboard"}, roles
        assert snap["processes"] == len(snap["per_process"]) and snap["pss_mib"] > 0
        assert snap["pss_mib"] <= snap["rss_mib"]
    # the embedded default is co-hosted: one actor process, the mesh host, running every role
    [host] = [row for row in fp["idle"]["per_process"] if row["role"] == "actor"]
    assert host["name"] == "mesh-host", host
    assert {"controller", "registry-api", "registry-shard-0", "xds-server-0", "dashboard"} <= set(host["roles"]), host
    md = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "First request" in md and "Propagation" in md and "Eureka" in md and "sovereign" in md
    _scale_figures(results["scale"])
    assert "Footprint" in md and "Cold start over a large registry" in md
    assert (tmp_path / "docs" / "benchmarks.png").stat().st_size > 10_000


def _scale_figures(scale: dict) -> None:
    """The scale benchmark's JSON: each figure, its floor and its ratio, and every target row (not their values)."""
    fig = _has(scale, "figures")
    assert _has(scale, "settings", "vips") and _has(scale, "settings", "instances")
    assert _has(fig, "load", "instances") == scale["settings"]["instances"] and _has(fig, "load", "seconds") > 0
    floor = _has(fig, "floor")
    assert floor["keys"] == scale["settings"]["instances"] and floor["range_read_s"] > 0
    assert fig["ready_s"] > 0 and fig["ready_ratio_to_range_read"] == round(fig["ready_s"] / floor["range_read_s"], 1)
    assert _has(fig, "empty", "ready_s") > 0 and fig["ready_ratio_to_empty"] > 0
    steps = {s["step"] for s in _has(fig, "ready_steps")}
    assert {"Ray started (local)", "registry shards ready (2)", "meshactors is up"} <= steps, steps
    for phase in ("ready", "after_requests"):
        snap = _has(fig, "memory", phase)
        roles = {row["role"] for row in snap["per_process"]}
        assert {"up (driver)", "etcd", "ray gcs", "ray raylet", "actor"} <= roles, roles
        assert 0 < snap["pss_mib"] <= snap["rss_mib"]
    first = _has(fig, "first_request")
    assert first["errors"] == [] and first["first"]["p50_ms"] > 0 and first["first_ratio_to_warm_p50"] > 0
    fetch = _has(fig, "eureka_fetch")
    assert fetch["status"] == 200 and fetch["instances"] == scale["settings"]["instances"]
    assert fetch["first_ms"] > 0 and fetch["floor_json_dumps_ms"] > 0 and fetch["first_ratio_to_floor"] > 0
    for name in ("ready_s", "total_rss", "total_pss", "first_request_p50"):
        assert isinstance(_has(fig, "targets", name, "met"), bool)
    assert scale["processes_left"] == []
