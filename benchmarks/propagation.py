"""propagation: N delta ADS sessions on one VIP; time from a registry write (and from a policy change) to each
session's ACK of it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.adsclients import ClientFleet
from benchmarks.common import (
    Deadline,
    Stack,
    control_plane_pids,
    cpu_seconds,
    free_port,
    summary_ms,
    table,
    work_dir,
)
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


def _rounds(
    fleet: ClientFleet,
    sessions: int,
    changes: int,
    change: Callable[[int], None],
    pids: Callable[[], list[int]],
    deadline: Deadline,
) -> dict[str, Any]:
    """Connect the fleet, then `changes` changes one after the other, each waited for at every session: the same
    loop, CPU accounting and percentiles for the control plane and for its floor."""
    writes: list[float] = []
    fleet.start()
    try:
        connect_s = fleet.wait(lambda: fleet.connected() >= sessions, max(30.0, sessions / 50), "sessions connecting")
        measured = pids()
        cpu0 = cpu_seconds(measured)
        done = 0
        for k in range(changes):
            if deadline.left() < 5:
                break
            time.sleep(0.05)
            writes.append(time.monotonic())
            change(k)
            fleet.wait(lambda k=k: fleet.updates() >= (k + 1) * sessions, 30.0, f"change {k} reaching every session")
            done += 1
        cpu = cpu_seconds(measured) - cpu0
    finally:
        result = fleet.stop()
    latencies: list[float] = []
    all_acked: list[float] = [0.0] * len(writes)
    for times in result["times"].values():
        for k, t in enumerate(times[: len(writes)]):
            latencies.append(t - writes[k])
            all_acked[k] = max(all_acked[k], t - writes[k])
    return {
        "sessions": sessions,
        "changes": done,
        "connect_s": round(connect_s, 3),
        "write_to_session_ack": summary_ms(latencies),
        "write_to_last_session_ack": summary_ms(all_acked),
        "cpu_s_per_change": round(cpu / max(done, 1), 4),
        "client_errors": result["errors"],
    }


def measure(
    stack: Stack, sessions: int, changes: int, processes: int, deadline: Deadline, kind: str = "registry"
) -> dict[str, Any]:
    work = stack.up.state_dir
    fleet = ClientFleet(sessions, processes, stack.info["xds"], VIP, work, token=stack.info["proxy_token"])
    client = RegistryClient(stack.info["registry"], token=stack.info["token"])
    policies = PolicyClient(stack.info["registry"], token=stack.info["token"])
    change = registry_change(client) if kind == "registry" else policy_change(policies)
    try:
        row = _rounds(fleet, sessions, changes, change, lambda: list(control_plane_pids(stack.info).values()),
                      deadline)  # fmt: skip
    finally:
        client.close()
        if kind == "policy":
            policies.delete(VIP)
        policies.close()
    return {**row, "change": kind, "client_processes": processes}


def measure_floor(sessions: int, changes: int, processes: int, deadline: Deadline) -> dict[str, Any]:
    """The same fleet and loop against `benchmarks.bare_fanout`: one pre-encoded assignment per change written to
    every stream from one loop; its CPU per change and times are the floor of the row measured beside it."""
    work = work_dir(f"fanout{sessions}")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_fanout", str(port), VIP], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"bare fan-out server did not start (exit {proc.poll()})")
        stdin = proc.stdin

        def change(k: int) -> None:
            stdin.write(f"push {k}\n")
            stdin.flush()

        fleet = ClientFleet(sessions, processes, [f"127.0.0.1:{port}"], VIP, work)
        row = _rounds(fleet, sessions, changes, change, lambda: [proc.pid], deadline)
    finally:
        proc.kill()
        proc.wait(10)
    return {**row, "change": "bare fan-out floor", "client_processes": processes}


def _ratios(row: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    last, last_floor = row["write_to_last_session_ack"], floor["write_to_last_session_ack"]
    return {
        "cpu_s_per_change": ratio(row["cpu_s_per_change"], floor["cpu_s_per_change"]),
        "p50_ms": ratio(row["write_to_session_ack"].get("p50_ms"), floor["write_to_session_ack"].get("p50_ms")),
        "p99_ms": ratio(row["write_to_session_ack"].get("p99_ms"), floor["write_to_session_ack"].get("p99_ms")),
        "last_ack_p50_ms": ratio(last.get("p50_ms"), last_floor.get("p50_ms")),
    }


def run(
    sizes: tuple[int, ...] = (100, 1000, 5000),
    changes: int = 100,
    time_bound_s: float = 900,
    policy_sizes: tuple[int, ...] = (1000,),
    policy_changes: int = 30,
) -> dict[str, Any]:
    deadline = Deadline(time_bound_s, "propagation")
    rows: list[dict[str, Any]] = []
    policy_rows: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    for n in sizes:
        work = work_dir(f"prop{n}")
        stack = Stack.start(work, "--max-new-streams-per-s", "100000")
        try:
            with RegistryClient(stack.info["registry"], token=stack.info["token"]) as client:
                client.register(pb.Instance(vip=VIP, host="127.0.0.1", port=19500, instance_id="p", lease=LEASE))
            row = measure(stack, n, changes, processes=2 if n <= 1000 else 4, deadline=deadline)
            rows.append(row)
            if n in policy_sizes:
                policy_rows.append(
                    measure(stack, n, policy_changes, processes=2 if n <= 1000 else 4, deadline=deadline, kind="policy")
                )
        finally:
            stack.stop()
        floor = measure_floor(n, changes, processes=2 if n <= 1000 else 4, deadline=deadline)
        floors.append(floor)
        row["floor"] = floor
        row["ratio_to_floor"] = _ratios(row, floor)
        for policy_row in policy_rows:
            if policy_row["sessions"] == n:
                policy_row["ratio_to_floor"] = _ratios(policy_row, floor)
    return {
        "benchmark": "propagation",
        "settings": {
            "sizes": list(sizes),
            "changes_per_size": changes,
            "xds_servers": 2,
            "change": "re-register one instance with a new weight (one ClusterLoadAssignment version per change)",
            "policy_change": "apply the VIP's policy with a new circuit breaker bound (a new Cluster version)",
            "ack_time": "when the client received the new version and queued its ACK",
            "cpu": "utime + stime of the control plane's actor processes (the floor: the bare server's process)",
            "floor": "benchmarks.bare_fanout: the same client fleet and loop against a bare grpc.aio server writing "
            "one pre-encoded assignment per change to every stream from one loop",
        },
        "figures": {"by_sessions": rows, "policy_change_by_sessions": policy_rows, "floor_by_sessions": floors},
    }


def render(result: dict[str, Any]) -> str:
    rows = []
    figures = result["figures"]
    for r in [*figures["by_sessions"], *figures.get("policy_change_by_sessions", []),
              *figures.get("floor_by_sessions", [])]:  # fmt: skip
        ratio = r.get("ratio_to_floor") or {}
        rows.append(
            {
                "change": r.get("change", "registry"),
                "sessions": r["sessions"],
                "changes": r["changes"],
                "p50_ms": r["write_to_session_ack"].get("p50_ms"),
                "p99_ms": r["write_to_session_ack"].get("p99_ms"),
                "last_ack_p50_ms": r["write_to_last_session_ack"].get("p50_ms"),
                "cpu_s_per_change": r["cpu_s_per_change"],
                "cpu_x_floor": ratio.get("cpu_s_per_change", ""),
                "p99_x_floor": ratio.get("p99_ms", ""),
            }
        )
    return table(rows, list(rows[0])) if rows else "(no sizes run)"
