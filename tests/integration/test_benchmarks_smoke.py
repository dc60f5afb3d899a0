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
    for name in ("odcds", "propagation", "sessions", "registry", "eureka", "peer"):
        assert _has(results, name, "versions", "envoy_binary")
        assert _has(results, name, "seconds") is not None
    for mode in ("discovery", "discovery_vip_held", "bare_ads_floor", "static", "direct"):
        for kind in ("first_request", "warm"):
            for key in ("p50_ms", "p95_ms", "p99_ms"):
                assert isinstance(_has(results, "odcds", "figures", mode, kind, key), float)
    assert isinstance(_has(results, "odcds", "figures", "discovery", "added_cost_first_minus_warm", "p50_ms"), float)
    [row] = _has(results, "propagation", "figures", "by_sessions")
    for key in ("p50_ms", "p99_ms"):
        assert isinstance(row["write_to_session_ack"][key], float)
    assert isinstance(row["cpu_s_per_change"], float) and row["changes"] == 3
    sess = _has(results, "sessions", "figures")
    assert sess["sessions"] == 50 and sess["bytes_per_session"] > 0 and sess["seconds_to_accept"] > 0
    for op in ("registrations", "heartbeats"):
        fig = _has(results, "registry", "figures", op)
        assert fig["per_second"] > 0 and fig["p99_ms"] > 0 and fig["errors"] == 0
        fig = _has(results, "eureka", "figures", op)
        assert fig["per_second"] > 0 and fig["p99_ms"] > 0 and fig["errors"] == 0
    for fetch in ("apps_json", "apps_xml", "delta_json"):
        assert _has(results, "eureka", "figures", "fetch_with_all_registered", fetch, "bytes") > 0
    for side in ("meshactors", "sovereign"):
        assert _has(results, "peer", "figures", side, "latency_s", "median") > 0
        assert _has(results, "peer", "figures", side, "cpu_s", "mean_per_change") >= 0
    assert _has(results, "peer", "figures", "speedup_median_latency") > 0
    md = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "First request" in md and "Propagation" in md and "Eureka" in md and "sovereign" in md
    assert (tmp_path / "docs" / "benchmarks.png").stat().st_size > 10_000
