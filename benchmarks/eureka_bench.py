"""eureka: registrations and heartbeats per second through the Eureka REST API, and registry fetch times."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import Stack, drive_clients, summary_ms, table, throughput, work_dir


def _body(slot: int, i: int) -> bytes:
    """A registration shaped as the Java Eureka client sends it."""
    app = f"BENCH-{slot}-{i % 50}"
    port = 20000 + i
    return json.dumps(
        {
            "instance": {
                "instanceId": f"c{slot}-{i}",
                "hostName": "127.0.0.1",
                "app": app,
                "ipAddr": "127.0.0.1",
                "status": "UP",
                "port": {"$": port, "@enabled": "true"},
                "securePort": {"$": 443, "@enabled": "false"},
                "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
                "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
                "metadata": {"management.port": str(port)},
                "vipAddress": app.lower(),
            }
        }
    ).encode()


async def _phase(
    call: Callable[[int], Awaitable[int]], count: int, concurrency: int, until: float | None
) -> tuple[list[float], int]:
    """`call(i)` (an HTTP status) with `concurrency` in flight: i over range(count) once, or round until `until`."""
    latencies: list[float] = []
    errors = 0
    index = 0

    async def worker() -> None:
        nonlocal index, errors
        while (index < count) if until is None else (time.monotonic() < until):
            i = index % count
            index += 1
            t = time.perf_counter()
            try:
                status = await call(i)
            except aiohttp.ClientError:
                status = 0
            if status < 300:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


async def _client(
    url: str, token: str, slot: int, count: int, concurrency: int, go: Any, heartbeat_s: float
) -> dict[str, Any]:
    bodies = [_body(slot, i) for i in range(count)]
    paths = [f"{url}/apps/BENCH-{slot}-{i % 50}/c{slot}-{i}" for i in range(count)]
    json_headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    # The token as the basic-auth password, as a Eureka client given http://app:TOKEN@host:port/eureka sends it.
    auth = {"Authorization": "Basic " + base64.b64encode(f"bench-{slot}:{token}".encode()).decode()}
    async with aiohttp.ClientSession(connector=connector, headers=auth) as http:

        async def register(i: int) -> int:
            async with http.post(f"{url}/apps/BENCH-{slot}-{i % 50}", data=bodies[i], headers=json_headers) as r:
                return r.status

        async def renew(i: int) -> int:
            async with http.put(paths[i] + "?status=UP&lastDirtyTimestamp=1") as r:
                return r.status

        async def cancel(i: int) -> int:
            async with http.delete(paths[i]) as r:
                return r.status

        await asyncio.to_thread(go.wait)
        t0 = time.monotonic()
        reg, reg_err = await _phase(register, count, concurrency, None)
        reg_s = time.monotonic() - t0
        t1 = time.monotonic()
        hb, hb_err = await _phase(renew, count, concurrency, t1 + heartbeat_s)
        hb_s = time.monotonic() - t1
        fetch: dict[str, Any] = {}
        if slot == 0:
            for name, path, accept in (
                ("apps_json", "/apps", "application/json"),
                ("apps_xml", "/apps", "application/xml"),
                ("delta_json", "/apps/delta", "application/json"),
            ):
                times, size = [], 0
                for _ in range(20):
                    t = time.perf_counter()
                    async with http.get(url + path, headers={"Accept": accept}) as r:
                        size = len(await r.read())
                    times.append(time.perf_counter() - t)
                fetch[name] = {**summary_ms(times), "bytes": size}
        await _phase(cancel, count, concurrency, None)
    return {"reg": reg, "reg_err": reg_err, "reg_s": reg_s, "hb": hb, "hb_err": hb_err, "hb_s": hb_s, "fetch": fetch}


def _main(url: str, token: str, slot: int, count: int, concurrency: int, go: Any, heartbeat_s: float, out: str) -> None:
    Path(out).write_text(json.dumps(asyncio.run(_client(url, token, slot, count, concurrency, go, heartbeat_s))))


def run(
    registrations: int = 5000, processes: int = 2, concurrency: int = 32, heartbeat_s: float = 10.0
) -> dict[str, Any]:
    work = work_dir("eureka")
    stack = Stack.start(work)
    per = registrations // processes
    try:
        results, cpu, per_actor = drive_clients(
            stack, work, _main,
            lambda i, go, out: (stack.info["eureka"], stack.info["token"], i, per, concurrency, go, heartbeat_s, out),
            processes,
        )  # fmt: skip
    finally:
        stack.stop()
    return {
        "benchmark": "eureka",
        "settings": {"registrations": registrations, "client_processes": processes,
                     "concurrency_per_process": concurrency, "heartbeat_seconds": heartbeat_s, "shards": 2,
                     "path": "HTTP client (token as basic-auth password) -> eureka-api actor -> shard actor "
                             "(direct gRPC) -> etcd"},
        "figures": {
            "registrations": throughput(results, "reg"),
            "heartbeats": throughput(results, "hb"),
            "fetch_with_all_registered": results[0]["fetch"],
            "control_plane_cpu_s": round(cpu, 2),
            "cpu_s_by_actor": per_actor,
        },
    }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    f = result["figures"]
    rows = [{"operation": op, **f[op]} for op in ("registrations", "heartbeats")]
    fetch = [{"fetch": name, **fig} for name, fig in f["fetch_with_all_registered"].items()]
    return (
        table(rows, ["operation", "count", "errors", "per_second", "p50_ms", "p99_ms"])
        + "\n\n"
        + table(fetch, ["fetch", "bytes", "p50_ms", "p99_ms"])
        + f"\n({result['settings']['registrations']} instances registered while fetching)"
    )
