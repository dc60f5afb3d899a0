"""peer: one configuration change delivered to 10 real Envoys by meshactors (delta ADS push) and by sovereign."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from benchmarks.common import Deadline, Stack, control_plane_pids, cpu_seconds, free_port, table, work_dir
from benchmarks.odcds import http_get
from benchmarks.sovereign_peer import _AdminPoller, measure_sovereign
from meshactors.envoy.bootstrap import envoy_bootstrap
from meshactors.envoy.process import EnvoyProcess
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.v1 import registry_pb2 as pb

CLUSTER = "peer-svc"
LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)


def _wait_all(pollers: list[_AdminPoller], want: set[tuple[str, int]], since: float, deadline: Deadline) -> list[float]:
    """Seconds from `since` until each Envoy shows `want`: one polling thread per Envoy (every 2 ms), so that
    polling ten admin APIs one after the other does not add its own delay to the last Envoy's figure."""

    def one(poller: _AdminPoller) -> float:
        while poller.endpoints(CLUSTER) != want:
            deadline.check()
            time.sleep(0.002)
        return time.monotonic() - since

    with ThreadPoolExecutor(max_workers=len(pollers)) as pool:
        return list(pool.map(one, pollers))


def measure_meshactors(n_envoys: int = 10, changes: int = 10, time_bound_s: float = 300) -> dict[str, Any]:
    deadline = Deadline(time_bound_s, "peer (meshactors)")
    work = work_dir("peer")
    stack = Stack.start(work)
    envoys: list[EnvoyProcess] = []
    pollers: list[_AdminPoller] = []
    try:
        client = RegistryClient(stack.info["registry"], token=stack.info["token"])
        base = ("127.0.0.1", 19001)
        extra = ("127.0.0.1", 19002)
        client.register(pb.Instance(vip=CLUSTER, host=base[0], port=base[1], instance_id="a", lease=LEASE))
        for i in range(n_envoys):
            listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
            path = work / f"envoy{i}.yaml"
            path.write_text(
                yaml.safe_dump(
                    envoy_bootstrap(
                        stack.xds(), f"peer-{i}", listen=listen, admin=admin, token=stack.info["proxy_token"]
                    )
                )
            )
            envoys.append(EnvoyProcess(path, admin, work / f"envoy{i}.log", listen=listen).start())
            http_get(listen, CLUSTER)  # discovers the VIP on demand (503: nothing listens on the endpoints)
            pollers.append(_AdminPoller(admin[1]))
        _wait_all(pollers, {base}, time.monotonic(), deadline)
        pids = list(control_plane_pids(stack.info).values())
        latencies: list[float] = []
        first: list[float] = []
        cpu: list[float] = []
        for k in range(changes):
            time.sleep(0.3)
            cpu_before = cpu_seconds(pids)
            t0 = time.monotonic()
            if k % 2 == 0:
                client.register(pb.Instance(vip=CLUSTER, host=extra[0], port=extra[1], instance_id="b", lease=LEASE))
                want = {base, extra}
            else:
                client.deregister(InstanceRef(CLUSTER, "b"))
                want = {base}
            per_envoy = _wait_all(pollers, want, t0, deadline)
            cpu.append(cpu_seconds(pids) - cpu_before)
            latencies.append(max(per_envoy))
            first.append(min(per_envoy))
        client.close()
        return {
            "peer": "meshactors",
            "settings": {"n_envoys": n_envoys, "changes": changes, "transport": "delta ADS push (gRPC stream)"},
            "latency_s": {
                "per_change": [round(v, 4) for v in latencies],
                "median": round(statistics.median(latencies), 4),
                "max": round(max(latencies), 4),
                "first_envoy_median": round(statistics.median(first), 4),
            },
            "cpu_s": {
                "per_change": [round(v, 4) for v in cpu],
                "mean_per_change": round(statistics.fmean(cpu), 4),
                "mean_per_change_per_envoy": round(statistics.fmean(cpu) / n_envoys, 5),
            },
            "note": "latency includes the registry write (gRPC -> shard actor -> etcd), the watch, the build, "
            "the push and Envoy applying it; measured by polling every Envoy's admin /clusters every 2 ms",
        }
    finally:
        for p in pollers:
            p.close()
        for e in envoys:
            e.stop()
        stack.stop()


def run(n_envoys: int = 10, changes: int = 10, peer_changes: int = 5) -> dict[str, Any]:
    ours = measure_meshactors(n_envoys, changes)
    theirs = measure_sovereign(n_envoys=n_envoys, changes=peer_changes)
    ratio = theirs["latency_s"]["median"] / ours["latency_s"]["median"]
    cpu_ratio = theirs["cpu_s"]["mean_per_change"] / max(ours["cpu_s"]["mean_per_change"], 1e-6)
    return {
        "benchmark": "peer",
        "figures": {
            "meshactors": ours,
            "sovereign": theirs,
            "speedup_median_latency": round(ratio, 1),
            "cpu_per_change_ratio_sovereign_over_meshactors": round(cpu_ratio, 2),
        },
    }


def render(result: dict[str, Any]) -> str:
    f = result["figures"]
    rows = [
        {
            "control plane": name,
            "median_s": f[name]["latency_s"]["median"],
            "max_s": f[name]["latency_s"]["max"],
            "cpu_s_per_change": f[name]["cpu_s"]["mean_per_change"],
            "cpu_s_per_change_per_envoy": f[name]["cpu_s"]["mean_per_change_per_envoy"],
        }
        for name in ("meshactors", "sovereign")
    ]
    return table(rows, list(rows[0])) + (
        f"\nmeshactors is {f['speedup_median_latency']}x faster (median change -> all Envoys); "
        f"sovereign uses {f['cpu_per_change_ratio_sovereign_over_meshactors']}x the CPU per change"
    )
