"""peer: one configuration change delivered to 10 real Envoys by meshactors (delta ADS push) and by sovereign."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import yaml

from benchmarks.common import Deadline, Stack, free_port, table, work_dir
from benchmarks.footprint import _cmdline, processes_of, role_of
from benchmarks.odcds import http_get
from benchmarks.peer_loop import GAP_S, POLL_S, SEED, WINDOW_S, AdminPoller, measure_changes, wait_all
from benchmarks.sovereign_peer import BEST, DEFAULT, measure_sovereign
from meshactors.envoy.bootstrap import envoy_bootstrap
from meshactors.envoy.process import EnvoyProcess
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.v1 import registry_pb2 as pb

CLUSTER = "peer-svc"
LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)


def measure_meshactors(
    n_envoys: int = 10, changes: int = 10, window_s: float = WINDOW_S, time_bound_s: float = 300
) -> dict[str, Any]:
    """`changes` endpoint changes (registry writes) delivered to `n_envoys` real Envoys, measured by the loop
    sovereign's side runs too; CPU: every process of `meshactors up` (driver, etcd, Ray's GCS, raylet and agents,
    every actor)."""
    deadline = Deadline(time_bound_s, "peer (meshactors)")
    work = work_dir("peer")
    stack = Stack.start(work)
    envoys: list[EnvoyProcess] = []
    pollers: list[AdminPoller] = []
    try:
        assert stack.up.proc is not None
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
            pollers.append(AdminPoller(admin[1]))
        wait_all(pollers, CLUSTER, {base}, time.monotonic(), deadline)

        def change(k: int) -> set[tuple[str, int]]:
            if k % 2 == 0:
                client.register(pb.Instance(vip=CLUSTER, host=extra[0], port=extra[1], instance_id="b", lease=LEASE))
                return {base, extra}
            client.deregister(InstanceRef(CLUSTER, "b"))
            return {base}

        root = stack.up.proc.pid
        measured = measure_changes(change, pollers, CLUSTER, root, changes, deadline, window_s)
        measured["cpu_s"]["processes_by_role"] = dict(Counter(role_of(_cmdline(p)) for p in processes_of(root)))
        client.close()
        return {
            "peer": "meshactors",
            "settings": {"n_envoys": n_envoys, "changes": changes, "transport": "delta ADS push (gRPC stream)"},
            **measured,
            "note": "latency includes the registry write (gRPC -> shard actor -> etcd), the watch, the build, "
            "the push and Envoy applying it",
        }
    finally:
        for p in pollers:
            p.close()
        for e in envoys:
            e.stop()
        stack.stop()


def _ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    """sovereign's figure over meshactors' for the latency and the CPU (same loop, same window). The ratio of
    the CPU net of idle is None where either side's net figure is not above zero (then it is noise)."""
    lat, cpu = ours["latency_s"], ours["cpu_s"]
    net_ours, net_theirs = cpu["marginal_per_change"], theirs["cpu_s"]["marginal_per_change"]
    return {
        "speedup_median_latency": round(theirs["latency_s"]["median"] / lat["median"], 1),
        "speedup_p90_latency": round(theirs["latency_s"]["p90"] / lat["p90"], 1),
        "cpu_per_change_ratio": round(theirs["cpu_s"]["mean_per_change"] / max(cpu["mean_per_change"], 1e-6), 2),
        "marginal_cpu_per_change_ratio": round(net_theirs / net_ours, 2) if min(net_ours, net_theirs) > 0 else None,
    }


def run(n_envoys: int = 10, changes: int = 10, window_s: float = WINDOW_S) -> dict[str, Any]:
    """meshactors, then sovereign at its default and at its best setting: the same Envoys, changes, gaps, poll
    loop, CPU window and percentiles for all three; the ratios are sovereign's figure over meshactors'."""
    ours = measure_meshactors(n_envoys, changes, window_s)
    theirs = {
        s.label: measure_sovereign(s, n_envoys=n_envoys, changes=changes, window_s=window_s) for s in (DEFAULT, BEST)
    }
    vs = {label: _ratios(ours, fig) for label, fig in theirs.items()}
    return {
        "benchmark": "peer",
        "settings": {
            "n_envoys": n_envoys,
            "changes": changes,
            "cpu_window_s": window_s,
            "poll_s": POLL_S,
            "gap_s": f"{GAP_S[0]} + U(0, {GAP_S[1]}), seed {SEED}",
            "percentiles": "linear interpolation (benchmarks.common.percentile)",
            "cpu": "utime+stime+cutime+cstime of every process of the control plane's session and its descendants",
        },
        "figures": {
            "meshactors": ours,
            "sovereign": theirs["default"],
            "sovereign_best": theirs["best"],
            "vs_default": vs["default"],
            "vs_best": vs["best"],
            # the headline ratios (report.py's target, the smoke test): against sovereign at its best
            "speedup_median_latency": vs["best"]["speedup_median_latency"],
            "cpu_per_change_ratio_sovereign_over_meshactors": vs["best"]["cpu_per_change_ratio"],
        },
    }


SIDES = (("meshactors", "meshactors"), ("sovereign", "sovereign (default)"), ("sovereign_best", "sovereign (best)"))


def render(result: dict[str, Any]) -> str:
    f = result["figures"]
    rows = []
    for key, name in SIDES:
        lat, cpu = f[key]["latency_s"], f[key]["cpu_s"]
        poll = f[key].get("settings", {}).get("refresh_delay_s", "push")
        rows.append({
            "control plane": name,
            "poll_s": poll,
            "median_s": lat["median"],
            "p90_s": lat["p90"],
            "max_s": lat["max"],
            "cpu_s_window": cpu["mean_per_change"],
            "cpu_s_idle": cpu["idle_mean_per_window"],
            "cpu_s_marginal": cpu["marginal_per_change"],
            "processes": cpu["processes"],
        })  # fmt: skip
    lines = [table(rows, list(rows[0]))]
    for label in ("default", "best"):
        v = f[f"vs_{label}"]
        lines.append(
            f"vs sovereign {label}: meshactors {v['speedup_median_latency']}x faster (median), "
            f"{v['speedup_p90_latency']}x (p90); sovereign uses {v['cpu_per_change_ratio']}x the CPU per "
            f"{result['settings']['cpu_window_s']} s change window, "
            + (f"{net}x net of idle" if (net := v["marginal_cpu_per_change_ratio"]) is not None else "net of idle: n/a")
        )
    return "\n".join(lines)
