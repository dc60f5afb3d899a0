"""propagation: N delta ADS sessions on one VIP; time from a registry write (and from a policy change) to each
session's ACK of it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.adsclients import ClientFleet
from benchmarks.common import Deadline, Stack, control_plane_pids, cpu_seconds, summary_ms, table, work_dir
from meshactors.registry.client import RegistryClient
from meshactors.registry.policy_client import PolicyClient
from meshactors.v1 import registry_pb2 as pb

VIP = "prop-svc"
LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)


def registry_change(client: RegistryClient) -> Callable[[int], None]:
    """Change k: re-register the VIP's instance with weight k + 2 (one new ClusterLoadAssignment version)."""

    def change(k: int) -> None:
        client.register(pb.Instance(vip=VIP, host="127.0.0.1", port=19500, instance_id="p", weight=k + 2,
                                    lease=LEASE))  # fmt: skip

    return change


def policy_change(policies: PolicyClient) -> Callable[[int], None]:
    """Change k: the VIP's circuit breaker allows 100 + k requests (a new Cluster version, which Envoy warms
    with its ClusterLoadAssignment resent: the session sees the change as that assignment)."""

    def change(k: int) -> None:
        policies.apply(f"vip: {VIP}\ndestination:\n  circuitBreaker: {{maxRequests: {100 + k}}}\n")

    return change


def measure(
    stack: Stack, sessions: int, changes: int, processes: int, deadline: Deadline, kind: str = "registry"
) -> dict[str, Any]:
    work = stack.up.state_dir
    fleet = ClientFleet(sessions, processes, stack.info["xds"], VIP, work, token=stack.info["proxy_token"])
    fleet.start()
    client = RegistryClient(stack.info["registry"], token=stack.info["token"])
    policies = PolicyClient(stack.info["registry"], token=stack.info["token"])
    change = registry_change(client) if kind == "registry" else policy_change(policies)
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
            change(k)
            fleet.wait(lambda k=k: fleet.updates() >= (k + 1) * sessions, 30.0, f"change {k} reaching every session")
            done += 1
        cpu = cpu_seconds(pids) - cpu0
    finally:
        result = fleet.stop()
        client.close()
        if kind == "policy":
            policies.delete(VIP)
        policies.close()
    latencies: list[float] = []
    all_acked: list[float] = [0.0] * len(writes)
    for times in result["times"].values():
        for k, t in enumerate(times[: len(writes)]):
            latencies.append(t - writes[k])
            all_acked[k] = max(all_acked[k], t - writes[k])
    return {
        "sessions": sessions,
        "change": kind,
        "changes": done,
        "client_processes": processes,
        "connect_s": round(connect_s, 3),
        "write_to_session_ack": summary_ms(latencies),
        "write_to_last_session_ack": summary_ms(all_acked),
        "cpu_s_per_change": round(cpu / max(done, 1), 4),
        "client_errors": result["errors"],
    }


def run(
    sizes: tuple[int, ...] = (100, 1000, 5000),
    changes: int = 100,
    time_bound_s: float = 900,
    policy_sizes: tuple[int, ...] = (1000,),
    policy_changes: int = 30,
) -> dict[str, Any]:
    deadline = Deadline(time_bound_s, "propagation")
    rows, policy_rows = [], []
    for n in sizes:
        work = work_dir(f"prop{n}")
        stack = Stack.start(work, "--max-new-streams-per-s", "100000")
        try:
            with RegistryClient(stack.info["registry"], token=stack.info["token"]) as client:
                client.register(pb.Instance(vip=VIP, host="127.0.0.1", port=19500, instance_id="p", lease=LEASE))
            rows.append(measure(stack, n, changes, processes=2 if n <= 1000 else 4, deadline=deadline))
            if n in policy_sizes:
                policy_rows.append(
                    measure(stack, n, policy_changes, processes=2 if n <= 1000 else 4, deadline=deadline, kind="policy")
                )
        finally:
            stack.stop()
    return {
        "benchmark": "propagation",
        "settings": {
            "sizes": list(sizes),
            "changes_per_size": changes,
            "xds_servers": 2,
            "change": "re-register one instance with a new weight (one ClusterLoadAssignment version per change)",
            "policy_change": "apply the VIP's policy with a new circuit breaker bound (a new Cluster version)",
            "ack_time": "when the client received the new version and queued its ACK",
        },
        "figures": {"by_sessions": rows, "policy_change_by_sessions": policy_rows},
    }


def render(result: dict[str, Any]) -> str:
    rows = []
    for r in [*result["figures"]["by_sessions"], *result["figures"].get("policy_change_by_sessions", [])]:
        rows.append(
            {
                "change": r.get("change", "registry"),
                "sessions": r["sessions"],
                "changes": r["changes"],
                "p50_ms": r["write_to_session_ack"].get("p50_ms"),
                "p99_ms": r["write_to_session_ack"].get("p99_ms"),
                "last_ack_p50_ms": r["write_to_last_session_ack"].get("p50_ms"),
                "cpu_s_per_change": r["cpu_s_per_change"],
            }
        )
    return table(rows, list(rows[0])) if rows else "(no sizes run)"
