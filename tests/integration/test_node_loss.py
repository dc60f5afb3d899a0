"""Removing the Ray node that hosts xDS servers and snapshot builders: they come back elsewhere, traffic flows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_node_loss(stack: dict[str, Any], session_dir: Path) -> None:
    work = session_dir / "nodeloss"
    work.mkdir(exist_ok=True)
    scenario = Path(__file__).with_name("node_loss_scenario.py")
    proc = subprocess.run(
        [sys.executable, str(scenario), stack["etcd"], str(work)],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    moved = result["on_victim_before"]
    assert any(n.startswith("xds-server-") for n in moved) and any(n.startswith("snapshot-builder-") for n in moved)
    after = result["placement_after"]
    for name in moved:
        assert after[name] and after[name] != result["victim_node"], (name, after)
    assert result["converged_s"] is not None and result["converged_s"] < 30, result
    assert result["sent"] > 100 and result["failures"] == [], result["failures"]
    assert result["late_routable"], result
