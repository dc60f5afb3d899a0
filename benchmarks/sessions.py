"""sessions: open idle delta ADS sessions against one XdsServer; memory per session and time to accept them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from benchmarks.adsclients import ClientFleet
from benchmarks.common import Deadline, Stack, control_plane_pids, free_port, rss_bytes, table, work_dir
from meshactors.registry.client import RegistryClient
from meshactors.runtime.hosting import HOST
from meshactors.v1 import registry_pb2 as pb

VIP = "idle-svc"


def bare_floor(target: int, processes: int, timeout_s: float) -> dict[str, Any]:
    """The same sessions held by a bare in-memory Python delta ADS server: the floor of memory per session."""
    work = work_dir("sessions-floor")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bare_ads", str(port), "19600"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "READY"
        targets = [f"127.0.0.1:{port}"]
        warm = ClientFleet(1, 1, targets, VIP, work)
        warm.start()
        warm.wait(lambda: warm.connected() >= 1, 30, "first bare session")
        time.sleep(1.0)
        before = rss_bytes(server.pid)
        fleet = ClientFleet(target, processes, targets, VIP, work)
        fleet.start()
        fleet.wait(lambda: fleet.connected() >= target, timeout_s, "bare sessions")
        time.sleep(2.0)
        after = rss_bytes(server.pid)
        fleet.stop()
        warm.stop()
        return {"sessions": target, "kib_per_session": round((after - before) / target / 1024, 2)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def run(target: int = 10_000, processes: int = 4, time_bound_s: float = 600) -> dict[str, Any]:
    deadline = Deadline(time_bound_s, "sessions")
    work = work_dir("sessions")
    stack = Stack.start(work, "--xds-servers", "1", "--max-new-streams-per-s", "100000")
    try:
        with RegistryClient(stack.info["registry"], token=stack.info["token"]) as client:
            client.register(
                pb.Instance(vip=VIP, host="127.0.0.1", port=19600, instance_id="idle",
                            lease=pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600))
            )  # fmt: skip
        named = control_plane_pids(stack.info)  # the process holding the sessions: the xDS server's, or the host's
        pid = named.get("xds-server-0") or named[HOST]
        # one session first, so the VIP's resources and the server's first-use costs are not counted per session
        warm = ClientFleet(1, 1, stack.info["xds"], VIP, work, token=stack.info["proxy_token"])
        warm.start()
        warm.wait(lambda: warm.connected() >= 1, 30, "first session")
        time.sleep(1.0)
        rss_before = rss_bytes(pid)
        fleet = ClientFleet(target, processes, stack.info["xds"], VIP, work, token=stack.info["proxy_token"])
        start = time.monotonic()
        fleet.start()
        reached = 0
        failure = ""
        try:
            fleet.wait(lambda: fleet.connected() >= target, min(deadline.left(), 300), "sessions")
            reached = fleet.connected()
        except (TimeoutError, RuntimeError) as exc:
            reached = fleet.connected()
            failure = str(exc)
        accept_s = time.monotonic() - start
        time.sleep(2.0)  # let allocations settle
        rss_after = rss_bytes(pid)
        result = fleet.stop()
        warm.stop()
        per_session = (rss_after - rss_before) / max(reached, 1)
        floor = bare_floor(target, processes, min(300.0, max(30.0, deadline.left())))
        return {
            "benchmark": "sessions",
            "settings": {"target": target, "client_processes": processes, "streams_per_channel": 100,
                         "session": "delta ADS stream, one VIP's Cluster + ClusterLoadAssignment subscribed"},
            "figures": {
                "sessions": reached,
                "failure": failure,
                "seconds_to_accept": round(accept_s, 2),
                "sessions_per_second": round(reached / accept_s, 1) if accept_s else 0.0,
                "rss_before_mib": round(rss_before / 2**20, 1),
                "rss_after_mib": round(rss_after / 2**20, 1),
                "bytes_per_session": round(per_session),
                "kib_per_session": round(per_session / 1024, 2),
                "client_errors": result["errors"],
                "floor_bare_ads_kib_per_session": floor["kib_per_session"],
            },
        }  # fmt: skip
    finally:
        stack.stop()


def render(result: dict[str, Any]) -> str:
    f = result["figures"]
    return table([{k: f[k] for k in ("sessions", "seconds_to_accept", "sessions_per_second", "rss_before_mib",
                                     "rss_after_mib", "kib_per_session", "floor_bare_ads_kib_per_session")}],
                 ["sessions", "seconds_to_accept", "sessions_per_second", "rss_before_mib", "rss_after_mib",
                  "kib_per_session", "floor_bare_ads_kib_per_session"])  # fmt: skip
