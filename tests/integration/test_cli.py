"""The `meshactors` command as people use it, against the running `up` stack."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from meshactors.testing.stack import registry_flags

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"meshactors {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def test_register_once_then_ls_shows_it(stack: dict[str, Any]) -> None:
    vip = f"cli-{uuid.uuid4().hex[:6]}"
    ready = str(Path(stack["state_dir"]) / "ready.json")
    out = run("register", "--ready-file", ready, "--vip", vip, "--host", "127.0.0.1", "--port", "8080",
              "--zone", "z1", "--metadata", "team=blue", "--once")  # fmt: skip
    assert f"registered {vip}/127.0.0.1:8080" in out.stdout
    listed = json.loads(run("ls", *registry_flags(stack), "--vip", vip, "--json").stdout)
    assert [(i["vip"], i["host"], i["port"], i["zone"], i["metadata"]) for i in listed["instances"]] == [
        (vip, "127.0.0.1", 8080, "z1", {"team": "blue"})
    ]
    table = run("ls", *registry_flags(stack), "--vip", vip).stdout
    assert vip in table and "UP" in table and "1 instance(s)" in table
    run(
        "deregister",
        *registry_flags(stack),
        "--vip",
        vip,
        "--instance-id",
        "127.0.0.1:8080",
    )
    assert json.loads(run("ls", *registry_flags(stack), "--vip", vip, "--json").stdout)["instances"] == []


def test_errors_are_one_clear_line_and_non_zero(stack: dict[str, Any]) -> None:
    bad = run("register", *registry_flags(stack), "--vip", "Bad_Name", "--host", "127.0.0.1",
              "--port", "80", "--once", check=False)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "instance.vip" in bad.stderr and "lowercase DNS name" in bad.stderr
    missing = run(
        "deregister",
        *registry_flags(stack),
        "--vip",
        "nobody",
        "--instance-id",
        "x",
        check=False,
    )
    assert missing.returncode == 1 and "not registered" in missing.stderr
    down = run("ls", "--registry", "127.0.0.1:1", check=False, timeout=30)
    assert down.returncode == 1 and "unavailable" in down.stderr
    assert down.stderr.strip().count("\n") == 0


def test_status_lists_actors_with_states_and_restarts(stack: dict[str, Any]) -> None:
    ready = str(Path(stack["state_dir"]) / "ready.json")
    report = json.loads(run("status", "--ready-file", ready, "--json").stdout)
    names = {a["name"]: a for a in report["actors"]}
    assert {"registry-shard-0", "registry-shard-1", "registry-api"} <= set(names)
    for actor in names.values():
        assert actor["state"] == "ALIVE"
        assert isinstance(actor["restarts"], int)
    assert names["registry-shard-0"]["stats"]["ready"] is True
    table = run("status", "--ready-file", ready).stdout
    assert "registry-shard-1" in table and "RESTARTS" in table


def test_register_keeps_heartbeating_until_interrupted(stack: dict[str, Any]) -> None:
    import signal
    import time

    vip = f"cli-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshactors.cli", "register", *registry_flags(stack), "--vip", vip,
         "--host", "127.0.0.1", "--port", "8081", "--lease-renewal", "1", "--lease-duration", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(6)  # twice the lease duration
        listed = json.loads(run("ls", *registry_flags(stack), "--vip", vip, "--json").stdout)
        assert len(listed["instances"]) == 1, "heartbeats kept it alive"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "deregistered" in out
    assert json.loads(run("ls", *registry_flags(stack), "--vip", vip, "--json").stdout)["instances"] == []
