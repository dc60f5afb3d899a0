"""odcds: first request to never-seen VIPs through a real Envoy (full stack), beside a static Envoy and direct."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import yaml

from benchmarks.common import Deadline, Stack, free_port, summary_ms, table, work_dir
from meshactors.envoy import bootstrap as bs
from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.registry.policy_client import PolicyClient
from meshactors.v1 import registry_pb2 as pb

BACKENDS = 4


def http_get(addr: tuple[str, int], host: str) -> tuple[int, float]:
    """One GET on a fresh TCP connection (as an app through its sidecar); returns (status, seconds)."""
    start = time.perf_counter()
    with socket.create_connection(addr, timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.perf_counter() - start
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, elapsed


def static_bootstrap(vips: dict[str, int], listen: tuple[str, int], admin: tuple[str, int]) -> dict[str, Any]:
    """The floor: the same listener and route, every cluster static (no discovery, no on-demand filter)."""
    hcm = bs.outbound_http_connection_manager(5.0)
    hcm["typed_config"]["http_filters"] = [bs.router_filter()]
    del hcm["typed_config"]["rds"]
    hcm["typed_config"]["route_config"] = bs.outbound_route_config(vhds=False)
    clusters = [
        {
            "name": vip,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": vip,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": bs.socket_address(("127.0.0.1", port))}}]}],
            },
        }
        for vip, port in vips.items()
    ]
    return {
        "node": bs.node("static-floor"),
        "admin": bs.admin_config(admin),
        "static_resources": {
            "listeners": [{"name": "out", "address": bs.socket_address(listen), "filter_chains": [{"filters": [hcm]}]}],
            "clusters": clusters,
        },
    }


def run(vips: int = 200, time_bound_s: float = 600) -> dict[str, Any]:
    deadline = Deadline(time_bound_s, "odcds")
    work = work_dir("odcds")
    ports = [free_port() for _ in range(BACKENDS)]
    backend = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.backend", *map(str, ports)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    bare_port = free_port()
    names = {f"odcds-{i:04d}": ports[i % BACKENDS] for i in range(vips)}
    (work / "names.txt").write_text("\n".join(names) + "\n")
    bare = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bare_ads", str(bare_port), str(ports[0]), str(work / "names.txt")],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    stack: Stack | None = None
    envoys: list[EnvoyProcess] = []
    try:
        assert backend.stdout is not None and backend.stdout.readline().strip() == "READY"
        assert bare.stdout is not None and bare.stdout.readline().strip() == "READY"
        stack = Stack.start(work)
        # the same number of VIPs with a routing policy (a virtual host over VHDS ahead of the Cluster)
        routed = {f"odcdsr-{i:04d}": ports[i % BACKENDS] for i in range(vips)}
        with RegistryClient(stack.info["registry"], token=stack.info["token"]) as client:
            for vip, port in {**names, **routed}.items():
                client.register(
                    pb.Instance(vip=vip, host="127.0.0.1", port=port,
                                lease=pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600))
                )  # fmt: skip
        with PolicyClient(stack.info["registry"], token=stack.info["token"]) as policies:
            docs = [f"vip: {vip}\nrouting: {{timeout: 5s, retries: {{attempts: 1, retryOn: [5xx]}}}}" for vip in routed]
            for start in range(0, len(docs), 100):  # an apply holds at most 127 changed documents
                policies.apply("\n---\n".join(docs[start : start + 100]))
        disc_listen, disc_admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        (work / "envoy.yaml").write_text(
            yaml.safe_dump(
                bs.envoy_bootstrap(
                    stack.xds(), "bench-odcds", listen=disc_listen, admin=disc_admin, token=stack.info["proxy_token"]
                )
            )
        )
        envoys.append(EnvoyProcess(work / "envoy.yaml", disc_admin, work / "envoy.log", listen=disc_listen).start())
        # a second proxy of the same mesh: its first request finds the VIP already held by its xDS server
        held_listen, held_admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        (work / "envoy2.yaml").write_text(
            yaml.safe_dump(
                bs.envoy_bootstrap(
                    stack.xds(), "bench-odcds-2", listen=held_listen, admin=held_admin, token=stack.info["proxy_token"]
                )
            )
        )
        envoys.append(EnvoyProcess(work / "envoy2.yaml", held_admin, work / "envoy2.log", listen=held_listen).start())
        bare_listen, bare_admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        (work / "bare.yaml").write_text(
            yaml.safe_dump(bs.envoy_bootstrap([("127.0.0.1", bare_port)], "bare", listen=bare_listen, admin=bare_admin))
        )
        envoys.append(EnvoyProcess(work / "bare.yaml", bare_admin, work / "bare.log", listen=bare_listen).start())
        st_listen, st_admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        (work / "static.yaml").write_text(yaml.safe_dump(static_bootstrap(names, st_listen, st_admin)))
        envoys.append(EnvoyProcess(work / "static.yaml", st_admin, work / "static.log", listen=st_listen).start())
        time.sleep(1.0)  # let the ADS stream settle before the first measured request

        modes = ("discovery", "discovery_routing_policy", "discovery_vip_held", "bare_ads_floor", "static", "direct")
        results: dict[str, dict[str, list[float]]] = {m: {"first": [], "warm": []} for m in modes}
        errors: list[str] = []
        for (vip, port), routed_vip in zip(names.items(), routed, strict=True):
            deadline.check()
            for mode, addr, host in (
                ("discovery", disc_listen, vip),
                # a never-seen VIP with a routing policy, through the same Envoy, interleaved with the plain one
                ("discovery_routing_policy", disc_listen, routed_vip),
                ("discovery_vip_held", held_listen, vip),  # the same VIP, now held by the xDS servers
                ("bare_ads_floor", bare_listen, vip),  # a bare in-memory ADS server: the floor of discovery here
                ("static", st_listen, vip),
                ("direct", ("127.0.0.1", port), vip),
            ):
                first_status, first = http_get(addr, host)
                warm_status, warm = http_get(addr, host)
                if first_status != 200 or warm_status != 200:
                    errors.append(f"{mode} {vip}: {first_status}/{warm_status}")
                results[mode]["first"].append(first)
                results[mode]["warm"].append(warm)
        disc = results["discovery"]
        cost = [f - w for f, w in zip(disc["first"], disc["warm"], strict=True)]
        figures = {
            mode: {"first_request": summary_ms(r["first"]), "warm": summary_ms(r["warm"])}
            for mode, r in results.items()
        }
        figures["discovery"]["added_cost_first_minus_warm"] = summary_ms(cost)
        plain_p50 = figures["discovery"]["first_request"].get("p50_ms")
        routed_p50 = figures["discovery_routing_policy"]["first_request"].get("p50_ms")
        figures["routing_policy_first_request_ratio_p50"] = (
            round(routed_p50 / plain_p50, 3) if plain_p50 and routed_p50 else None
        )
        return {
            "benchmark": "odcds",
            "settings": {
                "vips": vips,
                "backends": BACKENDS,
                "connection": "fresh TCP connection per request",
                "modes": {
                    "discovery": "full stack (Ray + etcd), VIP never seen by the xDS servers",
                    "discovery_routing_policy": "the same, for a VIP with a routing policy (its virtual host comes "
                    "over VHDS ahead of its Cluster)",
                    "discovery_vip_held": "full stack, a second Envoy asking for a VIP its xDS server already holds",
                    "bare_ads_floor": "bare in-memory Python delta ADS server (no Ray, no etcd): the floor",
                    "static": "Envoy with every cluster static: no discovery",
                    "direct": "straight to the backend",
                },
            },
            "figures": figures,
            "errors": errors[:20],
            "samples_ms": {m: [round(x * 1000, 3) for x in r["first"]] for m, r in results.items()},
        }
    finally:
        for e in envoys:
            e.stop()
        if stack is not None:
            stack.stop()
        for proc in (backend, bare):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)


def render(result: dict[str, Any]) -> str:
    rows = []
    for mode, fig in result["figures"].items():
        if not isinstance(fig, dict):
            continue
        for kind in ("first_request", "warm"):
            rows.append({"mode": mode, "request": kind, **fig[kind]})
    cost = result["figures"]["discovery"]["added_cost_first_minus_warm"]
    rows.append({"mode": "discovery", "request": "first - warm", **cost})
    ratio = result["figures"].get("routing_policy_first_request_ratio_p50")
    return table(rows, ["mode", "request", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms"]) + (
        f"\nfirst request with a routing policy / without (p50): {ratio}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--vips", type=int, default=200)
    args = ap.parse_args(argv)
    result = run(args.vips)
    print(render(result))
    return result


if __name__ == "__main__":
    main()
