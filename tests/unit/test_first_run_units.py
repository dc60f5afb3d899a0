"""Pure parts of the first run: finding the mesh from the state dir, bounded log files, reading and following logs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from meshactors import discovery, log, logview
from meshactors.errors import ConfigError


def _write(path: Path, info: dict[str, object]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "ready.json").write_text(json.dumps(info))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_no_ready_file_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(discovery.NotRunning, match=r"^meshactors is not running \(state dir .*: no ready file\); "):
        discovery.find(tmp_path)


def test_a_gone_up_is_named_by_its_pid(tmp_path: Path) -> None:
    pid = _dead_pid()
    _write(tmp_path, {"pid": pid, "hostname": socket.gethostname(), "registry": "127.0.0.1:1"})
    with pytest.raises(discovery.NotRunning) as err:
        discovery.find(tmp_path)
    assert str(err.value) == (
        f"meshactors is not running (state dir {tmp_path}: up pid {pid} is gone); start it with `meshactors up`"
    )


def test_a_live_pid_that_does_not_answer_is_not_running(tmp_path: Path) -> None:
    _write(tmp_path, {"pid": os.getpid(), "hostname": socket.gethostname(), "registry": "127.0.0.1:1"})
    with pytest.raises(discovery.NotRunning, match=r"nothing answers at 127\.0\.0\.1:1"):
        discovery.find(tmp_path)


def test_a_live_mesh_is_found_and_another_hosts_pid_is_not_checked(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        registry = f"127.0.0.1:{server.getsockname()[1]}"
        _write(tmp_path, {"pid": _dead_pid(), "hostname": "some-other-host", "registry": registry})
        assert discovery.find(tmp_path)["registry"] == registry
        other = tmp_path / "copy.json"
        other.write_text((tmp_path / "ready.json").read_text())
        assert discovery.find(tmp_path / "nowhere", ready_file=other)["registry"] == registry


def test_bounded_file_rotates_and_keeps_its_backups(tmp_path: Path) -> None:
    f = log.BoundedFile(tmp_path / "a.log", max_bytes=100, backups=2)
    for i in range(30):
        f.write_line(f"line {i:02d} " + "x" * 20)
    f.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.log", "a.log.1", "a.log.2"]
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 3 * 100 + 40
    assert "line 29" in (tmp_path / "a.log").read_text() or (tmp_path / "a.log").read_text() == ""


def test_durations() -> None:
    assert logview.parse_duration("90") == timedelta(seconds=90)
    assert logview.parse_duration("5m") == timedelta(minutes=5)
    assert logview.parse_duration("2h") == timedelta(hours=2)
    assert logview.parse_duration("250ms") == timedelta(milliseconds=250)
    with pytest.raises(ConfigError, match="--since"):
        logview.parse_duration("soon")


def _rec(ts: str, event: str, **kw: object) -> str:
    return json.dumps({"event": event, "level": "info", "timestamp": ts, **kw})


def test_sources_select_merge_and_render(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "registry-shard-0.log.1").write_text(_rec("2026-01-01T00:00:00Z", "old") + "\n")
    (logs / "registry-shard-0.log").write_text(_rec("2026-01-01T00:00:02Z", "shard loaded", shard="s0") + "\n")
    (logs / "registry-shard-1.log").write_text(_rec("2026-01-01T00:00:01Z", "other") + "\nTraceback (x)\n")
    (logs / "driver.log").write_text(_rec("2026-01-01T00:00:03Z", "up", component="runtime.embedded") + "\n")
    (tmp_path / "etcd").mkdir()
    (tmp_path / "etcd" / "meshactors.etcd.log").write_text(
        '{"level":"warn","ts":"2026-01-01T00:00:04Z","msg":"slow"}\n'
    )
    found = logview.sources(tmp_path)
    assert set(found) == {"registry-shard-0", "registry-shard-1", "driver", "etcd"}
    assert [p.name for p in found["registry-shard-0"]] == ["registry-shard-0.log.1", "registry-shard-0.log"]
    assert set(logview.select(found, "registry-shard", tmp_path)) == {"registry-shard-0", "registry-shard-1"}
    assert set(logview.select(found, "registry-shard-0", tmp_path)) == {"registry-shard-0"}
    with pytest.raises(ConfigError, match="no logs for 'registry'"):
        logview.select(found, "registry", tmp_path)
    records = logview.history(found, since=None, limit=0)
    assert [r.source for r in records] == [
        "registry-shard-0", "registry-shard-1", "registry-shard-1", "registry-shard-0", "driver", "etcd",
    ]  # fmt: skip
    assert records[2].line == "Traceback (x)", "a line without a time stays after its record"
    assert logview.history(found, since=None, limit=2)[-1].source == "etcd"
    text = logview.render(records[3])
    assert text.startswith("registry-shard-0 ") and "shard loaded" in text and "shard=s0" in text
    assert "slow" in logview.render(records[-1]) and "[warn" in logview.render(records[-1])
    assert logview.render(records[3], as_json=True) == (logs / "registry-shard-0.log").read_text().strip()


def test_follow_sees_appends_and_rotation(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "xds-server-0.log"
    path.write_text(_rec("2026-01-01T00:00:00Z", "before") + "\n")
    seen: list[str] = []
    rounds = iter(range(100))

    def stop() -> bool:
        n = next(rounds)
        if n == 1:
            with open(path, "a") as f:
                f.write(_rec("2026-01-01T00:00:01Z", "appended") + "\n")
        if n == 3:
            os.replace(path, logs / "xds-server-0.log.1")
            path.write_text(_rec("2026-01-01T00:00:02Z", "after rotation") + "\n")
        return n >= 6

    logview.follow(tmp_path, "xds-server", lambda r: seen.append(str(r.fields["event"])), stop, poll_s=0)
    assert seen == ["appended", "after rotation"]


def test_read_chunk_reads_whole_lines_and_restarts_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("one\ntwo\nthr")
    inode, offset, text = logview.read_chunk(path, 0, -6, 100)  # starts inside "two": skips to the next line
    assert (text, offset) == ("", 8)
    inode, offset, text = logview.read_chunk(path, 0, 0, 100)
    assert (text, offset) == ("one\ntwo\n", 8)
    with open(path, "a") as f:
        f.write("ee\n")
    assert logview.read_chunk(path, inode, offset, 100)[1:] == (14, "three\n")
    os.replace(path, tmp_path / "a.log.1")
    path.write_text("new\n")
    assert logview.read_chunk(path, inode, 14, 100)[1:] == (4, "new\n")
    assert logview.read_chunk(tmp_path / "missing.log", 0, 0, 100) == (0, 0, "")
