"""The `peer` benchmark's shared loop: whole-tree CPU accounting, the fixed window per change, one summary."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from benchmarks import peer_loop
from benchmarks.common import Deadline, percentile

BURN_IN_A_REAPED_CHILD = (
    "import subprocess, sys\n"
    "subprocess.run([sys.executable, '-c', 'import time\\nend = time.process_time() + 0.3\\n"
    "while time.process_time() < end: pass'], check=True)\n"
    "print('reaped', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_tree_cpu_counts_the_children_a_control_plane_already_reaped() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURN_IN_A_REAPED_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "reaped"
        assert peer_loop.processes_of(proc.pid) == [proc.pid]  # the child is gone, its CPU is not
        assert peer_loop.tree_cpu_seconds(proc.pid) >= 0.3
    finally:
        proc.kill()
        proc.wait()


class _FakeEnvoy:
    """Shows the endpoints it was given `delay_s` after the change."""

    def __init__(self, state: dict[str, Any], delay_s: float) -> None:
        self.state, self.delay_s = state, delay_s

    def endpoints(self, cluster: str) -> set[tuple[str, int]]:
        if time.monotonic() - self.state["at"] >= self.delay_s:
            return self.state["want"]
        return self.state["before"]


def test_every_change_gets_the_same_window_and_an_idle_one_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_loop, "GAP_S", (0.0, 0.01))
    state: dict[str, Any] = {"at": 0.0, "want": set(), "before": set()}

    def change(k: int) -> set[tuple[str, int]]:
        want = {("127.0.0.1", 19000 + k)}
        state.update(at=time.monotonic(), before=state["want"], want=want)
        return want

    envoys = [_FakeEnvoy(state, 0.01), _FakeEnvoy(state, 0.05)]
    started = time.monotonic()
    out = peer_loop.measure_changes(
        change,
        envoys,
        "c",
        1,
        changes=3,
        deadline=Deadline(30, "test"),
        window_s=0.2,  # type: ignore[arg-type]
    )
    assert time.monotonic() - started >= 3 * 2 * 0.2  # a change window and an idle window per change
    lat, cpu = out["latency_s"], out["cpu_s"]
    assert lat["n"] == 3 and all(0.05 <= v < 0.2 for v in lat["per_change"])
    assert 0.01 <= lat["first_envoy_median"] < lat["median"]
    assert cpu["window_s"] == 0.2 and cpu["windows_extended"] == 0 and cpu["longest_window_s"] >= 0.2
    assert len(cpu["per_change"]) == len(cpu["idle_per_change"]) == 3


def test_a_delivery_longer_than_the_window_extends_it_and_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_loop, "GAP_S", (0.0, 0.01))
    state: dict[str, Any] = {"at": 0.0, "want": set(), "before": set()}

    def change(k: int) -> set[tuple[str, int]]:
        state.update(at=time.monotonic(), before=state["want"], want={("127.0.0.1", 19000 + k)})
        return state["want"]

    out = peer_loop.measure_changes(
        change,
        [_FakeEnvoy(state, 0.15)],
        "c",
        1,
        2,
        Deadline(30, "test"),
        window_s=0.05,  # type: ignore[list-item]
    )
    assert out["cpu_s"]["windows_extended"] == 2 and out["cpu_s"]["longest_window_s"] >= 0.15


def test_summary_uses_the_shared_percentile() -> None:
    values = [0.5, 0.1, 0.3, 0.9, 0.7]
    s = peer_loop.summary_s(values)
    assert s["median"] == round(percentile(values, 50), 4) == 0.5
    assert s["p90"] == round(percentile(values, 90), 4) and s["max"] == 0.9 and s["n"] == 5


def test_parse_clusters_reads_the_hosts_of_one_cluster() -> None:
    text = (
        "peer-svc::127.0.0.1:19001::health_flags::healthy\n"
        "peer-svc::127.0.0.1:19001::weight::1\n"
        "other::127.0.0.1:19009::health_flags::healthy\n"
        "peer-svc::127.0.0.1:19002::health_flags::healthy\n"
    )
    assert peer_loop.parse_clusters(text, "peer-svc") == {("127.0.0.1", 19001), ("127.0.0.1", 19002)}
