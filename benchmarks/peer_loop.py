"""The one measurement loop both sides of `peer` run: change, poll every Envoy, fixed CPU window, same summary."""

from __future__ import annotations

import http.client
import os
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import Deadline, percentile
from benchmarks.footprint import processes_of

Endpoint = tuple[str, int]

_CLK_TCK = os.sysconf("SC_CLK_TCK")

WINDOW_S = 4.0  # the CPU window of every change, on both sides: longer than sovereign's slowest delivery at 1 s
POLL_S = 0.002  # every Envoy's admin /clusters, from its own thread
GAP_S = (0.2, 1.0)  # before each change: 0.2 s + U(0, 1 s), a random phase against any 1 s timer
SEED = 17  # the same gaps, in the same order, for every control plane measured


def parse_clusters(text: str, cluster: str) -> set[Endpoint]:
    """Endpoints of `cluster` in the admin /clusters text format (one `name::ip:port::health_flags::...` per host)."""
    found: set[Endpoint] = set()
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) >= 3 and parts[0] == cluster and parts[2] == "health_flags":
            host, _, port = parts[1].rpartition(":")
            found.add((host, int(port)))
    return found


class AdminPoller:
    """Keeps one HTTP/1.1 connection to an Envoy admin, so polling it every few ms stays cheap."""

    def __init__(self, admin_port: int) -> None:
        self.admin_port = admin_port
        self._conn: http.client.HTTPConnection | None = None

    def endpoints(self, cluster: str) -> set[Endpoint] | None:
        for _ in range(2):  # one retry on a fresh connection if the kept one was closed
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=1.0)
            try:
                self._conn.request("GET", "/clusters")
                resp = self._conn.getresponse()
                body = resp.read().decode()
                if resp.status == 200:
                    return parse_clusters(body, cluster)
                return None
            except (OSError, http.client.HTTPException):
                self.close()
        return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def wait_all(
    pollers: Sequence[AdminPoller],
    cluster: str,
    want: set[Endpoint],
    since: float,
    deadline: Deadline,
    interval_s: float = POLL_S,
) -> list[float]:
    """Seconds from `since` until each Envoy shows exactly `want` for `cluster`: one polling thread per Envoy
    (every `interval_s`), so that polling ten admin APIs one after the other adds no delay to the last one."""

    def one(poller: AdminPoller) -> float:
        while poller.endpoints(cluster) != want:
            deadline.check()
            time.sleep(interval_s)
        return time.monotonic() - since

    with ThreadPoolExecutor(max_workers=len(pollers)) as pool:
        return list(pool.map(one, pollers))


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is field 3, the state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of every process of `root`'s control plane (its session and descendants, as
    `footprint` counts its memory), plus those of the
    children they have already reaped (cutime, cstime): a worker that exits within a window still counts."""
    ticks = 0
    for pid in processes_of(root):
        fields = _stat(pid)
        if fields is not None:  # utime, stime, cutime, cstime are stat fields 14-17
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / _CLK_TCK


def summary_s(values: Iterable[float], digits: int = 4) -> dict[str, Any]:
    """The figures both sides report, from the same percentile code (linear interpolation, common.percentile)."""
    vals = list(values)
    return {
        "n": len(vals),
        "per_change": [round(v, digits) for v in vals],
        "median": round(percentile(vals, 50), digits),
        "p90": round(percentile(vals, 90), digits),
        "max": round(max(vals), digits),
        "mean": round(statistics.fmean(vals), digits),
    }


def measure_changes(
    change: Callable[[int], set[Endpoint]],
    pollers: Sequence[AdminPoller],
    cluster: str,
    cpu_root: int,
    changes: int,
    deadline: Deadline,
    window_s: float = WINDOW_S,
) -> dict[str, Any]:
    """`changes` changes, each made by `change(k)` (which returns the endpoints every Envoy must then show), and
    the same idle window after each; what both sides of `peer` report.

    Per change: a random gap (the same seeded sequence for every control plane), then the clock and the CPU of
    the whole control plane (every process of `cpu_root`'s tree) are read, `change(k)` is called, every Envoy is
    polled until it shows the new endpoints, and the CPU is read again `window_s` after the change (later only if
    the last Envoy took longer: counted in `windows_extended`). Then nothing happens for another `window_s` and
    the CPU of that idle window is read too: window minus idle is what the change itself cost."""
    if changes < 1 or not pollers:
        raise ValueError("need at least one change and one Envoy")
    rng = random.Random(SEED)
    latencies: list[float] = []
    first: list[float] = []
    cpu: list[float] = []
    idle: list[float] = []
    windows: list[float] = []
    extended = 0
    for k in range(changes):
        time.sleep(GAP_S[0] + rng.uniform(0.0, GAP_S[1]))
        cpu0 = tree_cpu_seconds(cpu_root)
        t0 = time.monotonic()
        want = change(k)
        per_envoy = wait_all(pollers, cluster, want, t0, deadline)
        rest = t0 + window_s - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        else:
            extended += 1
        cpu1 = tree_cpu_seconds(cpu_root)
        windows.append(time.monotonic() - t0)
        time.sleep(window_s)
        cpu2 = tree_cpu_seconds(cpu_root)
        latencies.append(max(per_envoy))
        first.append(min(per_envoy))
        cpu.append(cpu1 - cpu0)
        idle.append(cpu2 - cpu1)
    return {
        "latency_s": {**summary_s(latencies), "first_envoy_median": round(percentile(first, 50), 4)},
        "cpu_s": {
            "window_s": window_s,
            "windows_extended": extended,
            "longest_window_s": round(max(windows), 3),
            "per_change": [round(v, 3) for v in cpu],
            "mean_per_change": round(statistics.fmean(cpu), 4),
            "idle_per_change": [round(v, 3) for v in idle],
            "idle_mean_per_window": round(statistics.fmean(idle), 4),
            "marginal_per_change": round(statistics.fmean(cpu) - statistics.fmean(idle), 4),
            "mean_per_change_per_envoy": round(statistics.fmean(cpu) / len(pollers), 5),
            "processes": len(processes_of(cpu_root)),
        },
    }
