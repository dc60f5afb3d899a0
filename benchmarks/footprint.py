"""footprint: what `meshactors up` costs a machine, per process and in total (RSS, PSS), idle and loaded."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.adsclients import ClientFleet
from benchmarks.common import FREE_PORTS, Deadline, process_names, table, work_dir
from meshactors.registry.client import RegistryClient
from meshactors.testing.stack import UpProcess
from meshactors.v1 import registry_pb2 as pb

LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)
CLUSTER_SHAPE = ("--shape", "separate", "--shards", "3", "--builders", "3", "--xds-servers", "3")  # an actor per role
MIB = 2**20

# (role, pattern on the command line), first match wins; Ray names an actor's process `ray::<ActorClass>`
_ROLES: tuple[tuple[str, str], ...] = (
    ("etcd", r"(^|/)etcd( |$)"),
    ("ray gcs", r"gcs_server"),
    ("ray raylet", r"(^|/)raylet( |$)"),
    ("ray dashboard agent", r"dashboard/agent\.py|^ray::DashboardAgent"),
    ("ray runtime-env agent", r"runtime_env/agent/main\.py|^ray::RuntimeEnvAgent"),
    ("ray autoscaler monitor", r"autoscaler/_private/monitor\.py"),
    ("ray log monitor", r"log_monitor\.py"),
    ("ray dashboard", r"dashboard/dashboard\.py"),
    ("ray idle worker", r"^ray::IDLE"),
    ("actor", r"^ray::"),
    ("up (driver)", r"meshactors\.cli up"),
    ("ray worker", r"default_worker\.py"),
)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _stat(pid: int) -> tuple[int, int]:
    """(ppid, session id) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[3])


def processes_of(root: int) -> list[int]:
    """Every live process of the `up` started as `root` in its own session: its session's members and every
    descendant of it (a child that started a session of its own included)."""
    parent: dict[int, int] = {}
    session: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent[int(entry)], session[int(entry)] = _stat(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found = {pid for pid, sid in session.items() if sid == root} | ({root} if root in parent else set())
    grew = True
    while grew:
        more = {pid for pid, ppid in parent.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    return sorted(found)


def smaps_rollup(pid: int) -> dict[str, int]:
    """Rss, Pss and Private (Private_Clean + Private_Dirty: what killing it would free) in bytes."""
    out = {"rss": 0, "pss": 0, "private": 0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        value = rest.split()
        if not value or not value[0].isdigit():
            continue
        kib = int(value[0]) * 1024
        if key == "Rss":
            out["rss"] = kib
        elif key == "Pss":
            out["pss"] = kib
        elif key in ("Private_Clean", "Private_Dirty"):
            out["private"] += kib
    return out


def role_of(cmdline: str) -> str:
    for role, pattern in _ROLES:
        if re.search(pattern, cmdline):
            return role
    return "other"


def snapshot(root: int, names: dict[int, str], extra: Iterable[int] = ()) -> dict[str, Any]:
    """Every process of the deployment now (and the `extra` ones: an etcd it was pointed at): role, a short
    command line, RSS/PSS/private MiB; and the totals."""
    rows = []
    for pid in sorted(set(processes_of(root)) | set(extra)):
        cmd = _cmdline(pid)
        if not cmd:  # a zombie or a kernel thread: owns no memory
            continue
        try:
            mem = smaps_rollup(pid)
        except OSError:
            continue
        role = role_of(cmd)
        rows.append({
            "pid": pid,
            "role": role,
            "name": names.get(pid, ""),
            "cmd": cmd[:300],
            "rss_mib": round(mem["rss"] / MIB, 1),
            "pss_mib": round(mem["pss"] / MIB, 1),
            "private_mib": round(mem["private"] / MIB, 1),
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["pss_mib"], r["pid"]))
    return {
        "processes": len(rows),
        "rss_mib": round(sum(r["rss_mib"] for r in rows), 1),
        "pss_mib": round(sum(r["pss_mib"] for r in rows), 1),
        "private_mib": round(sum(r["private_mib"] for r in rows), 1),
        "by_role": _by_role(rows),
        "per_process": rows,
    }


def _by_role(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        agg = out.setdefault(r["role"], {"count": 0, "rss_mib": 0.0, "pss_mib": 0.0})
        agg["count"] += 1
        agg["rss_mib"] = round(agg["rss_mib"] + r["rss_mib"], 1)
        agg["pss_mib"] = round(agg["pss_mib"] + r["pss_mib"], 1)
    return out


def _settle(seconds: float) -> None:
    """Let start-up allocations and prestarted workers settle before a measurement (Ray kills idle workers
    above its soft limit after about a second; actors finish their first reconcile)."""
    time.sleep(seconds)


def _load(info: dict[str, Any], vips: int, instances: int, deadline: Deadline) -> float:
    """`instances` instances spread over `vips` VIPs, registered by 16 threads; returns the seconds it took."""
    start = time.monotonic()
    with RegistryClient(info["registry"], token=info["token"], timeout_s=30) as client:

        def one(i: int) -> None:
            deadline.check()
            client.register(pb.Instance(vip=f"fp-{i % vips}", host="127.0.0.1", port=20000 + i // vips,
                                        instance_id=f"i{i}", lease=LEASE))  # fmt: skip

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(instances)))
    return time.monotonic() - start


def measure_shape(
    label: str, extra: tuple[str, ...], vips: int, instances: int, sessions: int, processes: int, deadline: Deadline
) -> dict[str, Any]:
    work = work_dir(f"footprint-{label}")
    up = UpProcess(
        work / "stack",
        args=[*FREE_PORTS, "--namespace", f"bench-fp-{os.getpid()}", *extra],
        env={"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"), "MESHACTORS_LOG_LEVEL": "WARNING"},
    )
    started = time.monotonic()
    info = up.start(timeout_s=min(180.0, deadline.left()))
    ready_s = time.monotonic() - started
    assert up.proc is not None
    root = up.proc.pid
    try:
        print(f"  footprint {label}: ready in {ready_s:.1f} s; idle ...", file=sys.stderr, flush=True)
        _settle(5.0)
        idle = snapshot(root, {})
        names, hosted = process_names(info)
        for row in idle["per_process"]:
            row["name"] = names.get(row["pid"], "")
            if row["pid"] in hosted:
                row["roles"] = hosted[row["pid"]]
        print(f"  footprint {label}: idle {idle['processes']} processes, {idle['pss_mib']} MiB PSS; loading "
              f"{vips} VIPs x {instances} instances ...", file=sys.stderr, flush=True)  # fmt: skip
        load_s = _load(info, vips, instances, deadline)
        fleet = ClientFleet(sessions, processes, info["xds"], "fp-0", work, token=info["proxy_token"])
        fleet.start()
        try:
            fleet.wait(lambda: fleet.connected() >= sessions, min(300.0, deadline.left()), "footprint sessions")
            _settle(3.0)
            loaded = snapshot(root, names)
        finally:
            client_errors = fleet.stop()["errors"]
        print(f"  footprint {label}: loaded {loaded['pss_mib']} MiB PSS", file=sys.stderr, flush=True)
        return {
            "args": list(extra),
            "seconds_to_ready": round(ready_s, 2),
            "seconds_to_register": round(load_s, 2),
            "idle": idle,
            "loaded": loaded,
            "client_errors": client_errors,
        }
    finally:
        up.stop()  # SIGINT, then SIGKILL to its process group: nothing of it outlives the benchmark
        left = [p for p in processes_of(root) if _cmdline(p)]
        if left:
            print(f"  footprint {label}: processes left after stop: {left}", file=sys.stderr, flush=True)


def run(
    vips: int = 1000,
    instances: int = 10_000,
    sessions: int = 100,
    processes: int = 2,
    cluster: bool = True,
    time_bound_s: float = 900,
) -> dict[str, Any]:
    deadline = Deadline(time_bound_s, "footprint")
    shapes = {"embedded_default": ()} | ({"cluster_shape": CLUSTER_SHAPE} if cluster else {})
    figures = {
        label: measure_shape(label, extra, vips, instances, sessions, processes, deadline)
        for label, extra in shapes.items()
    }
    return {
        "benchmark": "footprint",
        "settings": {"vips": vips, "instances": instances, "sessions": sessions, "client_processes": processes,
                     "memory": "from /proc/<pid>/smaps_rollup of every process of `up`'s session and its "
                               "descendants; clients not counted"},
        "figures": figures,
    }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    out = []
    for label, shape in result["figures"].items():
        for phase in ("idle", "loaded"):
            snap = shape[phase]
            out.append(
                f"{label} {' '.join(shape['args'])} ({phase}; ready in {shape['seconds_to_ready']} s): "
                f"{snap['processes']} processes, RSS {snap['rss_mib']} MiB, PSS {snap['pss_mib']} MiB"
            )
            rows = [{**r, "cmd": r["cmd"][:60]} for r in snap["per_process"]]
            out.append(table(rows, ["pid", "role", "name", "rss_mib", "pss_mib", "private_mib", "cmd"]))
    return "\n".join(out)
