"""Kill any actor under load through a real Envoy: no failed request, no lost registration, quick convergence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshactors.chaos import ChaosOptions, run_chaos
from meshactors.runtime.topology import KINDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

VICTIMS = ["registry-shard-0", "registry-api", "eureka-api", "snapshot-builder-1", "xds-server-0", "controller"]


@pytest.mark.parametrize("victim", VICTIMS)
def test_killing_one_actor_under_load(stack: dict[str, Any], ray_driver: Any, victim: str) -> None:
    report = run_chaos(
        ChaosOptions(info=stack, duration_s=4.0, interval_s=60.0, first_kill_s=1.0, kill=[victim], rate=60.0)
    )
    req = report["requests"]
    assert req["sent"] >= 4 * 50, req  # at least 50 requests/s to two VIPs, through Envoy, retries off
    assert req["failed"] == 0, report["failures"][:5]
    assert report["registrations_lost"] == []
    [kill] = report["kills"]
    assert kill["actor"] == victim and kill["error"] == ""
    assert kill["converged_s"] is not None and kill["converged_s"] <= 5.0, kill
    assert report["ok"]


def test_chaos_command_kills_every_kind_and_reports(stack: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    ready = Path(stack["state_dir"]) / "ready.json"
    proc = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "chaos", "--ready-file", str(ready), "--duration", "30",
         "--json", str(out)],
        capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip
    report = json.loads(out.read_text()) if out.exists() else {}
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}\nlost: {report.get('registrations_lost')}"
    kinds = report["kinds_killed"]
    assert set(kinds) >= set(KINDS), kinds  # every kind: shards, both APIs, builders, xDS servers, controller
    assert report["requests"]["failed"] == 0 and report["requests"]["sent"] >= 30 * 40
    assert report["registrations_lost"] == []
    assert all(k["converged_s"] is not None and k["converged_s"] <= 5.0 for k in report["kills"]), report["kills"]
    assert "result: OK" in proc.stdout and "registrations lost: 0" in proc.stdout
    # progress for the person watching: a line per step on stderr, one per kill
    assert "chaos: registered" in proc.stderr and "chaos: converged in" in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.count(" killed ") == len(report["kills"]), proc.stderr[-2000:]
