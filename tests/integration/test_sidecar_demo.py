"""`meshactors sidecar` (how a service owner joins the mesh) and `meshactors demo` (the whole story)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from meshactors.registry.client import RegistryClient
from meshactors.store.server import free_port
from meshactors.testing.backends import get
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_sidecar_registers_runs_envoy_and_cleans_up(
    stack: dict[str, Any], registry: RegistryClient, backends: Any, session_dir: Path
) -> None:
    me, other = f"app-{uuid.uuid4().hex[:6]}", f"dep-{uuid.uuid4().hex[:6]}"
    app, dep = backends(me), backends(other)
    registry.register(pb.Instance(vip=other, host="127.0.0.1", port=dep.port))
    listen, admin = free_port(), free_port()
    ready = Path(stack["state_dir"]) / "ready.json"
    work = session_dir / f"sidecar-{me}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshactors.cli", "sidecar", "--ready-file", str(ready), "--vip", me,
         "--port", str(app.port), "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}",
         "--work-dir", str(work), "--lease-renewal", "1", "--lease-duration", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not registry.list(vip=me)[0]:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "sidecar did not register the app"
            time.sleep(0.1)
        # the app calls another service by its VIP through its sidecar: no per-service configuration
        reply = get(("127.0.0.1", listen), other)
        assert (reply.status, reply.body) == (200, other)
        time.sleep(4)  # longer than the lease: the sidecar's heartbeats keep the app registered
        assert len(registry.list(vip=me)[0]) == 1
        assert (work / "envoy.yaml").exists() and (work / "envoy.log").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "deregistered" in out and "envoy stopped" in out
    assert registry.list(vip=me)[0] == []
    with pytest.raises(OSError):
        get(("127.0.0.1", listen), other, timeout_s=2)  # its Envoy is gone


def test_demo_runs_the_whole_story_and_exits_zero(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "demo", "--keep-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert time.monotonic() - start < 60
    out = proc.stdout
    for step in ("first request", "warm median", "catalog-2 got traffic", "all traffic on catalog-2", "503 in"):
        assert step in out, out
    assert "inventory registered: 200" in out
    ready = tmp_path / "demo" / "control-plane" / "ready.json"
    assert not ready.exists(), "the demo's control plane was stopped"
