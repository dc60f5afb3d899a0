"""A person's first run: a plain `meshactors up`, then every command with no address, the logs, and a terminal."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshactors.store.server import free_port
from meshactors.testing.stack import UpProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PORTS = ["--registry-port", "0", "--eureka-port", "0", "--dashboard-port", "0", "--xds-port", "0"]
START_S = 120.0  # how long an `up` may take to start on the 2-core machine


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshactors.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def home(session_dir: Path) -> Path:
    """A HOME of its own, so that `~/.meshactors` (the default state dir) is this module's."""
    path = session_dir / f"home-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def plain_up(home: Path) -> Iterator[UpProcess]:
    """`meshactors up` as the README runs it: no --ready-file, the default state dir (of this HOME), free ports."""
    up = UpProcess(
        home / ".meshactors",
        args=[*PORTS, "--namespace", f"firstrun-{uuid.uuid4().hex[:6]}"],
        env={"HOME": str(home)},
        pass_ready_file=False,
    )
    up.start(timeout_s=START_S)
    try:
        yield up
    finally:
        up.stop()


def test_commands_find_the_running_mesh_with_no_address(plain_up: UpProcess, home: Path) -> None:
    vip = f"first-{uuid.uuid4().hex[:6]}"
    by_home = {"HOME": str(home)}  # the default state dir
    by_flag = ["--state-dir", str(plain_up.state_dir)]
    out = ok(cli("register", "--vip", vip, "--host", "127.0.0.1", "--port", "8080", "--once", env=by_home))
    assert f"registered {vip}/127.0.0.1:8080" in out
    for env, flags in ((by_home, []), (None, by_flag)):
        listed = json.loads(ok(cli("ls", *flags, "--vip", vip, "--json", env=env)))
        assert [(i["vip"], i["port"]) for i in listed["instances"]] == [(vip, 8080)]
    report = json.loads(ok(cli("status", "--json", env=by_home)))
    assert {"registry-shard-0", "registry-api", "xds-server-0", "controller"} <= {a["name"] for a in report["actors"]}
    assert report["namespace"] == plain_up.info["namespace"]
    assert "xds_servers" in json.loads(ok(cli("bootstrap", *by_flag, "--node-id", "n1", "--grpc")))
    ok(cli("deregister", *by_flag, "--vip", vip, "--instance-id", "127.0.0.1:8080"))


def test_up_off_a_terminal_prints_structured_records(plain_up: UpProcess) -> None:
    lines = plain_up.log_file.read_text(errors="replace").splitlines()
    assert any('"component": "registry.shard"' in line for line in lines), "the actors' JSON records are forwarded"
    assert any(line.startswith("meshactors is up: registry ") for line in lines)
    ready = json.loads(plain_up.ready_file.read_text())
    assert ready["pid"] == plain_up.proc.pid if plain_up.proc else False
    assert (plain_up.ready_file.stat().st_mode & 0o077) == 0, "the ready file is its owner's only"


def test_logs_shows_one_actors_records(plain_up: UpProcess) -> None:
    out = ok(cli("logs", "--state-dir", str(plain_up.state_dir), "registry-shard-0", "-n", "0"))
    lines = out.splitlines()
    assert lines and all(line.startswith("registry-shard-0 ") for line in lines), out
    assert any("shard loaded" in line for line in lines)
    raw = ok(cli("logs", "--state-dir", str(plain_up.state_dir), "registry-shard-0", "--json", "-n", "0"))
    assert all(json.loads(line)["shard"] == "registry-shard-0" for line in raw.splitlines() if '"shard"' in line)
    kinds = ok(cli("logs", "--state-dir", str(plain_up.state_dir), "registry-shard", "--since", "1h", "-n", "0"))
    assert {line.split()[0] for line in kinds.splitlines()} == {"registry-shard-0", "registry-shard-1"}
    unknown = cli("logs", "--state-dir", str(plain_up.state_dir), "nobody")
    assert unknown.returncode == 2 and "no logs for 'nobody'" in unknown.stderr
    # As on a cluster: each actor reads its own file, through Ray.
    via_ray = ok(cli("logs", "--state-dir", str(plain_up.state_dir), "registry-shard-0", "--via", "ray", "-n", "0"))
    assert via_ray.splitlines() == lines


def _lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_logs_follow_streams_a_new_record_within_a_second(plain_up: UpProcess) -> None:
    vip = f"follow-{uuid.uuid4().hex[:6]}"
    follower = subprocess.Popen(
        [sys.executable, "-m", "meshactors.cli", "logs", "--state-dir", str(plain_up.state_dir), "registry-shard",
         "--follow", "-n", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        lines = _lines_of(follower)
        lines.get(timeout=30)  # the history's last record: from here on it follows
        ok(cli("register", "--state-dir", str(plain_up.state_dir), "--vip", vip, "--host", "127.0.0.1",
               "--port", "8090", "--once"))  # fmt: skip
        registered = time.monotonic()
        while True:
            line = lines.get(timeout=max(0.01, registered + 1.0 - time.monotonic()))
            if vip in line:
                break
        assert time.monotonic() - registered < 1.0
        assert "registered" in line
    finally:
        os.killpg(follower.pid, signal.SIGKILL)
        follower.wait(10)
        cli("deregister", "--state-dir", str(plain_up.state_dir), "--vip", vip, "--instance-id", "127.0.0.1:8090")


def test_with_up_stopped_commands_say_the_mesh_is_not_running(plain_up: UpProcess, home: Path) -> None:
    """Last in the module: it stops the module's `up`."""
    ready_text = plain_up.ready_file.read_text()
    pid = json.loads(ready_text)["pid"]
    plain_up.stop()
    assert not plain_up.ready_file.exists(), "a clean stop removes the ready file"
    by_home = {"HOME": str(home)}
    for args in (["status"], ["ls"], ["register", "--vip", "x", "--host", "127.0.0.1", "--port", "1", "--once"]):
        proc = cli(*args, env=by_home)
        assert proc.returncode == 1, proc
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        assert proc.stderr.startswith("meshactors is not running (state dir ") and "no ready file" in proc.stderr
    plain_up.ready_file.write_text(ready_text)  # as a killed `up` leaves it
    for args in (["status"], ["ls"], ["register", "--vip", "x", "--host", "127.0.0.1", "--port", "1", "--once"]):
        proc = cli(*args, "--state-dir", str(plain_up.state_dir))
        assert proc.returncode == 1, proc
        assert proc.stderr.strip() == (
            f"meshactors is not running (state dir {plain_up.state_dir}: up pid {pid} is gone); "
            "start it with `meshactors up`"
        )
    plain_up.ready_file.unlink()


def test_up_on_a_terminal_shows_progress_and_a_summary_and_no_records(session_dir: Path) -> None:
    state_dir = session_dir / f"pty-{uuid.uuid4().hex[:6]}"
    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "meshactors.cli", "up", "--state-dir", str(state_dir), *PORTS,
           "--namespace", f"firstrun-pty-{free_port()}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MESHACTORS_LOG_JSON"}
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            out.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    text = lambda: b"".join(out).decode(errors="replace").replace("\r\n", "\n")  # noqa: E731
    try:
        deadline = time.monotonic() + START_S
        while "Ctrl-C stops everything" not in text():
            assert proc.poll() is None, f"up exited with {proc.returncode}:\n{text()}"
            assert time.monotonic() < deadline, f"no summary within {START_S} s:\n{text()}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(master)
    screen = re.sub(r"\x1b\[[0-9;]*m", "", text())  # colour codes (Ray resets the colour as it exits) show nothing
    assert proc.returncode == 0, screen
    assert '{"' not in screen, f"a JSON record reached the terminal:\n{screen}"
    for step in ("etcd started", "Ray started", "registry shards ready", "xDS servers ready", "registry API ready"):
        assert step in screen, screen
    assert "meshactors is up in " in screen and "meshactors ls --state-dir" in screen
    password = json.loads((state_dir / "etcd" / "credentials").read_text())["password"]
    assert password not in screen and "etcd          http://root:***@127.0.0.1:" in screen, screen
    assert screen.rstrip().endswith("stopped."), screen
    assert not (state_dir / "ready.json").exists()
    assert (state_dir / "logs" / "registry-shard-0.log").stat().st_size > 0, "the records went to the files"
