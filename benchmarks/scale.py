"""scale: `meshactors up` over 10,000 VIPs / 100,000 instances already in etcd: ready time, memory, first request
through Envoy and a full Eureka fetch, each beside a floor measured in the same run."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from aetcd import rpc

from benchmarks.common import (
    FREE_PORTS,
    Deadline,
    control_plane_pids,
    cpu_seconds,
    free_port,
    summary_ms,
    table,
    work_dir,
)
from benchmarks.footprint import processes_of, role_of, snapshot
from benchmarks.odcds import http_get
from meshactors.envoy.process import EnvoyProcess, start_generic_envoy, xds_endpoints
from meshactors.model import Instance, LeaseSettings, validate_instance
from meshactors.store import codec
from meshactors.store.keys import KeySchema
from meshactors.store.server import EtcdServer
from meshactors.testing.backends import Backend
from meshactors.testing.stack import UpProcess

# What `meshactors register` would give them, long enough (the registry's maximum) that nothing expires in a run and
# no shard sees a late heartbeat (1.5 renewal intervals) or engages self-preservation.
LEASE = LeaseSettings(renewal_interval_s=1200, duration_s=3600)
TXN_OPS = 128  # etcd's default --max-txn-ops: puts per transaction
IN_FLIGHT = 64  # lease grants / transactions in flight at once on the loader's one channel
MIB = 2**20
TARGET_READY_S = 10.0
TARGET_TOTAL_BYTES = 2e9
_CHANNEL = (("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1))


def vip_name(v: int) -> str:
    return f"scale-{v:05d}"


def records(vips: int, instances: int, ports: list[int], keys: KeySchema) -> list[tuple[bytes, bytes]]:
    """(key, value) of every instance in the registry's own key schema and msgpack record, as a shard writes it:
    instance j of VIP v is `i<j>`, on the j-th backend port (every endpoint a live one)."""
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(instances):
        v, j = i % vips, i // vips
        inst = validate_instance(
            Instance(app="", instance_id=f"i{j}", host="127.0.0.1", vip=vip_name(v), port=ports[j % len(ports)],
                     lease=LEASE)
        )  # fmt: skip
        inst = replace(inst, registered_at_ms=now_ms, registered_by="scale-benchmark")
        out.append((keys.instance(inst.ref).encode(), codec.encode_instance(inst)))
    return out


async def _bounded(jobs: list[Any], limit: int) -> list[Any]:
    """Await the coroutine factories in `jobs` with at most `limit` in flight; their results in order."""
    results: list[Any] = [None] * len(jobs)
    next_job = 0

    async def worker() -> None:
        nonlocal next_job
        while next_job < len(jobs):
            k = next_job
            next_job += 1
            results[k] = await jobs[k]()

    await asyncio.gather(*(worker() for _ in range(min(limit, len(jobs)))))
    return results


async def bulk_load(target: str, items: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """One lease per instance (as a shard grants one per registration), then the puts attached to them in
    transactions of TXN_OPS, IN_FLIGHT at a time, over one channel from this process."""
    async with grpc.aio.insecure_channel(target, options=_CHANNEL) as channel:
        kv, lease = rpc.KVStub(channel), rpc.LeaseStub(channel)
        t0 = time.monotonic()

        def grant() -> Any:
            async def call() -> int:
                resp = await lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=LEASE.duration_s), timeout=30)
                return int(resp.ID)

            return call

        lease_ids = await _bounded([grant() for _ in items], IN_FLIGHT)
        t1 = time.monotonic()

        def txn(start: int) -> Any:
            ops = [
                rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=v, lease=lease_ids[start + n]))
                for n, (k, v) in enumerate(items[start : start + TXN_OPS])
            ]

            async def call() -> int:
                resp = await kv.Txn(rpc.TxnRequest(success=ops), timeout=30)
                return int(resp.header.revision)

            return call

        revisions = await _bounded([txn(s) for s in range(0, len(items), TXN_OPS)], IN_FLIGHT)
        t2 = time.monotonic()
    return {
        "instances": len(items),
        "transactions": len(revisions),
        "bytes": sum(len(k) + len(v) for k, v in items),
        "lease_grant_s": round(t1 - t0, 2),
        "put_s": round(t2 - t1, 2),
        "seconds": round(t2 - t0, 2),
        "revision": max(revisions, default=0),
    }


async def read_floor(target: str, prefix: str) -> dict[str, Any]:
    """The floor of loading the registry: the whole prefix in one range read from one Python process, then every
    record decoded to an Instance (what each actor that loads the registry does at least once)."""
    start = prefix.encode()
    end = start[:-1] + bytes([start[-1] + 1])
    async with grpc.aio.insecure_channel(target, options=_CHANNEL) as channel:
        kv = rpc.KVStub(channel)
        t0 = time.perf_counter()
        resp = await kv.Range(rpc.RangeRequest(key=start, range_end=end), timeout=120)
        t1 = time.perf_counter()
    decoded = [codec.decode_instance(k.value) for k in resp.kvs]
    t2 = time.perf_counter()
    return {
        "keys": len(resp.kvs),
        "bytes": sum(len(k.key) + len(k.value) for k in resp.kvs),
        "range_read_s": round(t1 - t0, 3),
        "decode_s": round(t2 - t1, 3),
        "range_read_and_decode_s": round(t2 - t0, 3),
        "instances_decoded": len(decoded),
    }


def _driver_steps(log_file: Path, started_wall: float) -> list[dict[str, Any]]:
    """`up`'s own progress records (etcd, Ray, tokens, each actor kind ready), as seconds since it was started."""
    steps = []
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "elapsed_s" not in rec and rec.get("event") != "meshactors is up":
            continue
        try:
            wall = datetime.fromisoformat(rec["timestamp"]).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        steps.append({"step": str(rec.get("event")), "s": round(wall - started_wall, 2)})
    return steps


def _memory(root: int, etcd_pid: int, names: dict[int, str]) -> dict[str, Any]:
    """Every process of `up` (the driver, Ray's, every actor) and the etcd it uses, from smaps_rollup."""
    return snapshot(root, names, extra=(etcd_pid,))


def _start_up(
    work: Path, label: str, etcd: EtcdServer, deadline: Deadline, ups: list[UpProcess], *extra: str
) -> tuple[UpProcess, dict[str, Any], float, float, dict[int, float]]:
    """`meshactors up --etcd` until its ready file: (it, the ready file, seconds to ready, wall time it started,
    CPU seconds each of its processes and the etcd spent from its start to ready). It joins `ups` before it
    starts, so that the caller stops it even when it never gets ready."""
    assert etcd.proc is not None
    etcd_cpu0 = cpu_seconds([etcd.proc.pid])
    up = UpProcess(
        work / f"up-{label}",
        args=[*FREE_PORTS, "--namespace", f"bench-scale-{label}-{os.getpid()}", "--etcd", etcd.url, *extra],
        # INFO: the driver's progress records say where the time to ready goes
        env={"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"), "MESHACTORS_LOG_LEVEL": "INFO"},
    )
    ups.append(up)
    started_wall, started = time.time(), time.monotonic()
    info = up.start(timeout_s=min(300.0, deadline.left()))
    ready_s = time.monotonic() - started
    assert up.proc is not None
    # every process of `up` was started with it, so what it has spent so far is what it took to get ready
    cpu = {pid: cpu_seconds([pid]) for pid in processes_of(up.proc.pid)}
    cpu[etcd.proc.pid] = cpu_seconds([etcd.proc.pid]) - etcd_cpu0
    return up, info, ready_s, started_wall, cpu


def _cpu_table(cpu: dict[int, float], names: dict[int, str]) -> dict[str, Any]:
    """CPU seconds to ready by process (named actors by name, the rest by role), the total, and the shortest
    wall time that much CPU allows on this machine's cores."""
    by: dict[str, dict[str, float]] = {}
    for pid, seconds in cpu.items():
        cmd = _cmdline(pid)
        if not cmd:
            continue
        label = names.get(pid) or role_of(cmd)
        row = by.setdefault(label, {"count": 0, "cpu_s": 0.0})
        row["count"] += 1
        row["cpu_s"] = round(row["cpu_s"] + seconds, 2)
    total = sum(r["cpu_s"] for r in by.values())
    return {
        "total_s": round(total, 2),
        "cores": os.cpu_count() or 1,
        "wall_floor_s": round(total / (os.cpu_count() or 1), 2),
        "by_process": dict(sorted(by.items(), key=lambda kv: -kv[1]["cpu_s"])),
    }


def _stop_up(up: UpProcess, label: str) -> list[int]:
    """Stop `up` (SIGINT, then SIGKILL to its process group); anything of its session or its descendants still
    alive after that is killed by PID, and its PIDs returned (a clean stop returns none)."""
    root = up.proc.pid if up.proc is not None else 0
    up.stop()
    left = [p for p in processes_of(root) if _cmdline(p)] if root else []
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        print(f"  scale {label}: processes left after stop, killed: {left}", file=sys.stderr, flush=True)
    return left


def _cmdline(pid: int) -> str:
    """A process's command line; "" for a zombie or a PID that is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _settle(seconds: float) -> None:
    """Let start-up allocations and the actors' first reconcile settle before a memory measurement (as footprint)."""
    time.sleep(seconds)


def _eureka_get(url: str, token: str) -> tuple[int, bytes, float]:
    """GET <eureka>/apps as JSON with the token as the basic-auth password, as a Java Eureka client sends it."""
    auth = "Basic " + base64.b64encode(f"scale-bench:{token}".encode()).decode()
    request = urllib.request.Request(url + "/apps", headers={"Accept": "application/json", "Authorization": auth})
    t = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as resp:
        body = resp.read()
        status = resp.status
    return status, body, time.perf_counter() - t


def _eureka_fetch(info: dict[str, Any], fetches: int) -> dict[str, Any]:
    """The first full fetch (the API renders the document) and the next ones (served from its cache), beside the
    floor: rendering the same document from Python objects with json.dumps in one process."""
    times, body, status = [], b"", 0
    for _ in range(fetches):
        status, body, seconds = _eureka_get(info["eureka"], info["token"])
        times.append(seconds)
    doc = json.loads(body)
    apps = doc.get("applications", {}).get("application", [])
    t = time.perf_counter()
    json.dumps(doc, separators=(",", ":"))
    floor = time.perf_counter() - t
    return {
        "status": status,
        "bytes": len(body),
        "apps": len(apps),
        "instances": sum(len(a.get("instance", [])) for a in apps),
        "first_ms": round(times[0] * 1000, 3),
        "cached": summary_ms(times[1:]),
        "floor_json_dumps_ms": round(floor * 1000, 3),
        "first_ratio_to_floor": round(times[0] / floor, 2) if floor else None,
    }


def _first_requests(info: dict[str, Any], work: Path, vips: int, count: int) -> dict[str, Any]:
    """A real Envoy from the generic bootstrap; a first request to `count` never-seen VIPs spread over all of them
    (on-demand discovery through the control plane), each followed by a warm one (the data-plane floor)."""
    listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    envoy: EnvoyProcess = start_generic_envoy(
        xds_endpoints(info["xds"]), "scale-bench", work, listen, admin, name="envoy", token=info["proxy_token"]
    )
    first, warm, errors = [], [], []
    try:
        for k in range(count):
            vip = vip_name(k * vips // count)
            status, seconds = http_get(listen, vip)
            status2, seconds2 = http_get(listen, vip)
            first.append(seconds)
            warm.append(seconds2)
            if status != 200 or status2 != 200:
                errors.append(f"{vip}: {status}/{status2}")
    finally:
        envoy.stop()
    f, w = summary_ms(first), summary_ms(warm)
    return {
        "vips_asked": count,
        "very_first_ms": round(first[0] * 1000, 3),
        "first": f,
        "warm": w,
        "first_ratio_to_warm_p50": round(f["p50_ms"] / w["p50_ms"], 2) if w.get("p50_ms") else None,
        "errors": errors[:20],
    }


def _targets(fig: dict[str, Any]) -> dict[str, dict[str, Any]]:
    worst = max(fig["memory"].values(), key=lambda s: s["rss_mib"])
    first_p50 = fig["first_request"]["first"].get("p50_ms", float("nan"))
    return {
        "ready_s": {"target": f"<= {TARGET_READY_S:g} s", "measured": fig["ready_s"],
                    "met": fig["ready_s"] <= TARGET_READY_S},
        "total_rss": {"target": "<= 2 GB", "measured": f"{worst['rss_mib']} MiB",
                      "met": worst["rss_mib"] * MIB <= TARGET_TOTAL_BYTES},
        "total_pss": {"target": "<= 2 GB", "measured": f"{worst['pss_mib']} MiB",
                      "met": worst["pss_mib"] * MIB <= TARGET_TOTAL_BYTES},
        "first_request_p50": {"target": "<= 3 ms (odcds's target, at this scale)", "measured": f"{first_p50} ms",
                              "met": first_p50 <= 3.0},
    }  # fmt: skip


def run(
    vips: int = 10_000,
    instances: int = 100_000,
    first_requests: int = 20,
    fetches: int = 5,
    empty_baseline: bool = True,
    time_bound_s: float = 900,
) -> dict[str, Any]:
    deadline = Deadline(time_bound_s, "scale")
    work = work_dir("scale")
    keys = KeySchema()
    # one backend per instance slot of a VIP, bound to port 0 at once (no port to race for on a shared machine)
    backends = [Backend(f"scale-{j}") for j in range(max(1, min(16, -(-instances // vips))))]
    ports = [b.port for b in backends]
    etcd = EtcdServer(data_dir=work / "etcd" / "data")
    ups: list[UpProcess] = []
    left: list[int] = []
    fig: dict[str, Any] = {}
    try:
        etcd.start()
        target = f"127.0.0.1:{etcd.client_port}"
        if empty_baseline:  # the same `up` over an empty registry: what the data adds to time and memory
            # its own key prefix: the measured `up` below starts as fresh a deployment (its tokens, its CA)
            up, info, ready_s, wall, cpu = _start_up(work, "empty", etcd, deadline, ups, "--key-prefix", "/scale-empty")
            _settle(5.0)
            assert up.proc is not None and etcd.proc is not None
            names = {pid: name for name, pid in control_plane_pids(info).items()}
            mem = _memory(up.proc.pid, etcd.proc.pid, names)
            fig["empty"] = {"ready_s": round(ready_s, 2),
                            "steps": _driver_steps(up.state_dir / "logs" / "driver.log", wall),
                            "cpu_to_ready": _cpu_table(cpu, names),
                            "memory": mem}  # fmt: skip
            left += _stop_up(up, "empty")
            print(f"  scale: empty registry ready in {ready_s:.1f} s, {mem['rss_mib']} MiB RSS", file=sys.stderr,
                  flush=True)  # fmt: skip
        print(f"  scale: loading {vips} VIPs x {instances} instances into etcd ...", file=sys.stderr, flush=True)
        t = time.monotonic()
        items = records(vips, instances, ports, keys)
        encode_s = time.monotonic() - t
        fig["load"] = {"encode_s": round(encode_s, 2), **asyncio.run(bulk_load(target, items))}
        del items
        print(f"  scale: loaded in {fig['load']['seconds']} s; restarting etcd", file=sys.stderr, flush=True)
        # A cold start is etcd's too: it comes back from its data dir (WAL and snapshot), not warm from the load.
        etcd.stop()
        t = time.monotonic()
        etcd.start()
        fig["etcd_restart_s"] = round(time.monotonic() - t, 2)
        fig["floor"] = asyncio.run(read_floor(target, keys.instances))
        assert fig["floor"]["keys"] == instances, fig["floor"]
        up, info, ready_s, wall, cpu = _start_up(work, "loaded", etcd, deadline, ups)
        assert up.proc is not None and etcd.proc is not None
        root = up.proc.pid
        fig["ready_s"] = round(ready_s, 2)
        fig["ready_steps"] = _driver_steps(up.state_dir / "logs" / "driver.log", wall)
        # ratios of the figures as written, so that a reader of the JSON gets the same ones
        fig["ready_ratio_to_range_read"] = round(fig["ready_s"] / fig["floor"]["range_read_s"], 1)
        fig["ready_ratio_to_range_read_and_decode"] = round(fig["ready_s"] / fig["floor"]["range_read_and_decode_s"], 1)
        if "empty" in fig:
            fig["ready_ratio_to_empty"] = round(fig["ready_s"] / fig["empty"]["ready_s"], 2)
        print(f"  scale: ready in {ready_s:.1f} s; measuring ...", file=sys.stderr, flush=True)
        _settle(5.0)
        names = {pid: name for name, pid in control_plane_pids(info).items()}
        fig["cpu_to_ready"] = _cpu_table(cpu, names)
        fig["memory"] = {"ready": _memory(root, etcd.proc.pid, names)}
        deadline.check()
        fig["first_request"] = _first_requests(info, work, vips, first_requests)
        deadline.check()
        fig["eureka_fetch"] = _eureka_fetch(info, fetches)
        fig["memory"]["after_requests"] = _memory(root, etcd.proc.pid, names)
        if "empty" in fig:
            base = fig["empty"]["memory"]
            after = fig["memory"]["after_requests"]
            fig["memory_added_by_data_mib"] = {k: round(after[k] - base[k], 1) for k in ("rss_mib", "pss_mib")}
        fig["targets"] = _targets(fig)
    finally:
        for up in ups:
            left += _stop_up(up, up.state_dir.name)
        etcd.stop()
        for b in backends:
            b.stop()
    return {
        "benchmark": "scale",
        "settings": {
            "vips": vips, "instances": instances, "instances_per_vip": -(-instances // vips),
            "lease": {"renewal_interval_s": LEASE.renewal_interval_s, "duration_s": LEASE.duration_s},
            "load": f"written straight to etcd in the registry's key schema and msgpack records: one lease per "
                    f"instance, puts in transactions of {TXN_OPS}, {IN_FLIGHT} calls in flight (not measured as part "
                    "of the cold start); etcd then restarted from its data dir",
            "up": "meshactors up --etcd <that etcd> (the embedded default's actors and local Ray)",
            "memory": "/proc/<pid>/smaps_rollup of every process of `up`'s session and its descendants, and etcd",
            "first_requests": first_requests, "fetches": fetches,
        },
        "figures": fig,
        "processes_left": left,
    }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    f = result["figures"]
    s = result["settings"]
    rows = [{"figure": name, **t, "met": "yes" if t["met"] else "NO"} for name, t in f["targets"].items()]
    out = [
        f"{s['vips']} VIPs / {s['instances']} instances in etcd (loaded in {f['load']['seconds']} s, not measured; "
        f"etcd restarted in {f['etcd_restart_s']} s)",
        table(rows, ["figure", "measured", "target", "met"]),
        "",
        f"ready {f['ready_s']} s = {f['ready_ratio_to_range_read']}x the floor (one range read of the prefix from one "
        f"Python process: {f['floor']['range_read_s']} s; {f['floor']['range_read_and_decode_s']} s with every record "
        f"decoded: {f['ready_ratio_to_range_read_and_decode']}x)"
        + (f"; {f['ready_ratio_to_empty']}x the same `up` over an empty registry ({f['empty']['ready_s']} s)"
           if "empty" in f else ""),
        "where the time to ready goes (seconds since `up` was started):",
        table(f["ready_steps"], ["s", "step"]),
        "",
        f"CPU from start to ready: {f['cpu_to_ready']['total_s']} s over {f['cpu_to_ready']['cores']} cores, so at "
        f"least {f['cpu_to_ready']['wall_floor_s']} s of wall time"
        + (f" (empty registry: {f['empty']['cpu_to_ready']['total_s']} s)" if "empty" in f else ""),
        table([{"process": k, **v} for k, v in f["cpu_to_ready"]["by_process"].items()], ["process", "count", "cpu_s"]),
        "",
    ]  # fmt: skip
    fr, ef = f["first_request"], f["eureka_fetch"]
    out.append(
        f"first request through Envoy: very first {fr['very_first_ms']} ms, p50 {fr['first'].get('p50_ms')} ms, "
        f"p99 {fr['first'].get('p99_ms')} ms over {fr['vips_asked']} VIPs; warm p50 {fr['warm'].get('p50_ms')} ms "
        f"({fr['first_ratio_to_warm_p50']}x); errors {len(fr['errors'])}"
    )
    out.append(
        f"full Eureka fetch: first {ef['first_ms']} ms ({ef['bytes']} bytes, {ef['instances']} instances in "
        f"{ef['apps']} apps), cached p50 {ef['cached'].get('p50_ms')} ms; floor (json.dumps of the same document) "
        f"{ef['floor_json_dumps_ms']} ms: {ef['first_ratio_to_floor']}x"
    )
    for phase, snap in f["memory"].items():
        out.append(f"\nmemory ({phase}): {snap['processes']} processes, RSS {snap['rss_mib']} MiB, "
                   f"PSS {snap['pss_mib']} MiB")  # fmt: skip
        rows = [{**r, "cmd": r["cmd"][:50]} for r in snap["per_process"]]
        out.append(table(rows, ["pid", "role", "name", "rss_mib", "pss_mib", "private_mib", "cmd"]))
    if "memory_added_by_data_mib" in f:
        e = f["empty"]["memory"]
        out.append(f"\nempty registry: RSS {e['rss_mib']} MiB, PSS {e['pss_mib']} MiB; the data adds "
                   f"{f['memory_added_by_data_mib']['rss_mib']} MiB RSS, {f['memory_added_by_data_mib']['pss_mib']} "
                   "MiB PSS")  # fmt: skip
    return "\n".join(out)


def target_rows(result: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    """Issue 17's rows of the report's targets table: (target, measured, met, what bounds it)."""
    f = result["figures"]
    t, cpu = f["targets"], f["cpu_to_ready"]
    worst = max(f["memory"].values(), key=lambda s: s["rss_mib"])
    top = ", ".join(f"{k} {v['rss_mib']} MiB" for k, v in
                    sorted(_by_name(worst).items(), key=lambda kv: -kv[1]["rss_mib"])[:5])  # fmt: skip
    busiest = ", ".join(f"{k} {v['cpu_s']} s" for k, v in list(cpu["by_process"].items())[:4])
    empty = f.get("empty", {})
    return [
        (f"{result['settings']['vips']} VIPs / {result['settings']['instances']} instances: ready <= 10 s",
         f"{f['ready_s']} s ({f['ready_ratio_to_range_read']}x one range read)", t["ready_s"]["met"],
         f"CPU: {cpu['total_s']} CPU s from start to ready on {cpu['cores']} cores (at least {cpu['wall_floor_s']} s"
         f"), most in {busiest}; over an empty registry "
         f"{empty.get('ready_s')} s; longest step: {_slowest_step(f['ready_steps'])}"),
        ("same: <= 2 GB RSS in total", t["total_rss"]["measured"], t["total_rss"]["met"],
         f"largest: {top}; over an empty registry {empty.get('memory', {}).get('rss_mib')} MiB"),
    ]  # fmt: skip


def _by_name(snap: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A memory snapshot's processes by actor name (the others by role), the largest first."""
    out: dict[str, dict[str, float]] = {}
    for r in snap["per_process"]:
        agg = out.setdefault(r["name"] or r["role"], {"count": 0, "rss_mib": 0.0, "pss_mib": 0.0})
        agg["count"] += 1
        agg["rss_mib"] = round(agg["rss_mib"] + r["rss_mib"], 1)
        agg["pss_mib"] = round(agg["pss_mib"] + r["pss_mib"], 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["pss_mib"]))


def _slowest_step(steps: list[dict[str, Any]]) -> str:
    """The step of `up` that took longest since the one before it."""
    best, prev = ("", 0.0), 0.0
    for s in steps:
        if s["s"] - prev > best[1]:
            best = (s["step"], s["s"] - prev)
        prev = s["s"]
    return f"{best[0]} ({best[1]:.1f} s)"


def markdown(result: dict[str, Any]) -> list[str]:
    """The report's section: figures beside their floors, where the time to ready goes, memory by role."""
    f, s = result["figures"], result["settings"]
    fr, ef, fl, cpu = f["first_request"], f["eureka_fetch"], f["floor"], f["cpu_to_ready"]
    empty = f.get("empty", {})
    lines = [
        "## Cold start over a large registry (`scale`)",
        "",
        f"{s['vips']} VIPs / {s['instances']} instances written straight into etcd in the registry's own keys and "
        f"records (one lease each; loaded in {f['load']['seconds']} s, not part of any figure), etcd restarted from "
        f"its data dir ({f['etcd_restart_s']} s), then `meshactors up --etcd` to its ready file.",
        "",
        "| figure | measured | floor in the same run | ratio |",
        "|---|---|---|---|",
        f"| ready | {f['ready_s']} s | one range read of the prefix from one Python process {fl['range_read_s']} s "
        f"({fl['range_read_and_decode_s']} s with every record decoded) | {f['ready_ratio_to_range_read']}x "
        f"({f['ready_ratio_to_range_read_and_decode']}x) |",
        f"| ready, empty registry | {empty.get('ready_s')} s | | {f.get('ready_ratio_to_empty')}x (loaded / empty) |",
        f"| first request through Envoy, p50 over {fr['vips_asked']} VIPs | {fr['first'].get('p50_ms')} ms "
        f"(very first {fr['very_first_ms']} ms) | warm request {fr['warm'].get('p50_ms')} ms | "
        f"{fr['first_ratio_to_warm_p50']}x |",
        f"| full Eureka fetch (`GET /eureka/apps`, JSON, {ef['bytes']} bytes) | {ef['first_ms']} ms (cached "
        f"{ef['cached'].get('p50_ms')} ms) | json.dumps of the same document {ef['floor_json_dumps_ms']} ms | "
        f"{ef['first_ratio_to_floor']}x |",
        "",
        "Where the time to ready goes (seconds since `up` was started): "
        + ", ".join(f"{st['step']} {st['s']}" for st in f["ready_steps"])
        + f". The processes spent {cpu['total_s']} CPU s from start to ready (over an empty registry "
        f"{empty.get('cpu_to_ready', {}).get('total_s')} s): at least {cpu['wall_floor_s']} s of wall time on "
        f"{cpu['cores']} cores.",
        "",
        "| phase | processes | RSS MiB | PSS MiB | private MiB |",
        "|---|---|---|---|---|",
    ]
    phases = {"empty registry": empty["memory"]} if "memory" in empty else {}
    for phase, snap in {**phases, **f["memory"]}.items():
        lines.append(f"| {phase} | {snap['processes']} | {snap['rss_mib']} | {snap['pss_mib']} | "
                     f"{snap['private_mib']} |")  # fmt: skip
    after = _by_name(f["memory"].get("after_requests") or f["memory"]["ready"])
    base = _by_name(empty["memory"]) if "per_process" in empty.get("memory", {}) else {}
    base_cpu = empty.get("cpu_to_ready", {}).get("by_process", {})
    lines += [
        "",
        "| process | CPU s to ready | same, empty registry | RSS MiB after the requests | same, empty registry "
        "| PSS MiB after the requests |",
        "|---|---|---|---|---|---|",
    ]
    for label, v in after.items():
        count = f" ({v['count']})" if v["count"] > 1 else ""
        lines.append(
            f"| {label}{count} | {cpu['by_process'].get(label, {}).get('cpu_s', '')} | "
            f"{base_cpu.get(label, {}).get('cpu_s', '')} | {v['rss_mib']} | {base.get(label, {}).get('rss_mib', '')} "
            f"| {v['pss_mib']} |"
        )
    lines += [
        "",
        "Every process of `up`'s session and its descendants and the etcd it was pointed at, from "
        "/proc/<pid>/smaps_rollup; the RSS total counts a page shared by several processes once in each.",
        "",
    ]
    return lines
