"""propagation: N delta ADS sessions on one VIP; time from a registry write to each session's ACK of it."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.adsclients import ClientFleet
from benchmarks.common import Deadline, Stack, control_plane_pids, cpu_seconds, summary_ms, table, work_dir
from meshactors.registry.client import RegistryClient
from meshactors.v1 import registry_pb2 as pb

VIP = "prop-svc"
LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)


def measure(stack: Stack, sessions: int, changes: int, processes: int, deadline: Deadline) -> dict[str, Any]:
    work = stack.up.state_dir
    fleet = ClientFleet(sessions, processes, stack.info["xds"], VIP, work)
    fleet.start()
    client = RegistryClient(stack.info["registry"])
    writes: list[float] = []
    try:
        connect_s = fleet.wait(lambda: fleet.connected() >= sessions, max(30.0, sessions / 50), "sessions connecting")
        pids = list(control_plane_pids(stack.info).values())
        cpu0 = cpu_seconds(pids)
        done = 0
        for k in range(changes):
            if deadline.left() < 5:
                break
            time.sleep(0.05)
            writes.append(time.monotonic())
            client.register(pb.Instance(vip=VIP, host="127.0.0.1", port=19500, instance_id="p", weight=k + 2,
                                        lease=LEASE))  # fmt: skip
            fleet.wait(lambda k=k: fleet.updates() >= (k + 1) * sessions, 30.0, f"change {k} reaching every session")
            done += 1
        cpu = cpu_seconds(pids) - cpu0
    finally:
        result = fleet.stop()
        client.close()
    latencies: list[float] = []
    all_acked: list[float] = [0.0] * len(writes)
    for times in result["times"].values():
        for k, t in enumerate(times[: len(writes)]):
            latencies.append(t - writes[k])
            all_acked[k] = max(all_acked[k], t - writes[k])
    return {
        "sessions": sessions,
        "changes": done,
        "client_processes": processes,
        "connect_s": round(connect_s, 3),
        "write_to_session_ack": summary_ms(latencies),
        "write_to_last_session_ack": summary_ms(all_acked),
        "cpu_s_per_change": round(cpu / max(done, 1), 4),
        "client_errors": result["errors"],
    }


def run(sizes: tuple[int, ...] = (100, 1000, 5000), changes: int = 100, time_bound_s: float = 900) -> dict[str, Any]:
    deadline = Deadline(time_bound_s, "propagation")
    rows = []
    for n in sizes:
        work = work_dir(f"prop{n}")
        stack = Stack.start(work, "--max-new-streams-per-s", "100000")
        try:
            with RegistryClient(stack.info["registry"]) as client:
                client.register(pb.Instance(vip=VIP, host="127.0.0.1", port=19500, instance_id="p", lease=LEASE))
            rows.append(measure(stack, n, changes, processes=2 if n <= 1000 else 4, deadline=deadline))
        finally:
            stack.stop()
    return {
        "benchmark": "propagation",
        "settings": {
            "sizes": list(sizes),
            "changes_per_size": changes,
            "xds_servers": 2,
            "change": "re-register one instance with a new weight (one ClusterLoadAssignment version per change)",
            "ack_time": "when the client received the new version and queued its ACK",
        },
        "figures": {"by_sessions": rows},
    }


def render(result: dict[str, Any]) -> str:
    rows = []
    for r in result["figures"]["by_sessions"]:
        rows.append(
            {
                "sessions": r["sessions"],
                "changes": r["changes"],
                "p50_ms": r["write_to_session_ack"].get("p50_ms"),
                "p99_ms": r["write_to_session_ack"].get("p99_ms"),
                "last_ack_p50_ms": r["write_to_last_session_ack"].get("p50_ms"),
                "cpu_s_per_change": r["cpu_s_per_change"],
            }
        )
    return table(rows, list(rows[0])) if rows else "(no sizes run)"
