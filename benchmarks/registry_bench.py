"""registry: registrations and heartbeats per second sustained through the gRPC API (embedded etcd), with p99."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import grpc

from benchmarks.common import Stack, drive_clients, table, throughput, work_dir
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc

LEASE = pb.LeaseSettings(renewal_interval_seconds=30, duration_seconds=90)


async def _phase(
    stub: pb_grpc.RegistryStub, make: Any, items: list[Any], concurrency: int, until: float | None
) -> tuple[list[float], int]:
    """Run `make(item)` calls with `concurrency` in flight: over `items` once, or round and round until `until`."""
    latencies: list[float] = []
    errors = 0
    index = 0

    async def worker() -> None:
        nonlocal index, errors
        while True:
            if until is None:
                if index >= len(items):
                    return
            elif time.monotonic() >= until:
                return
            item = items[index % len(items)]
            index += 1
            t = time.perf_counter()
            try:
                await make(stub, item)
                latencies.append(time.perf_counter() - t)
            except grpc.aio.AioRpcError:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


async def _client(
    target: str, token: str, slot: int, count: int, concurrency: int, go: Any, heartbeat_s: float
) -> dict[str, Any]:
    auth = (("authorization", f"Bearer {token}"),)  # every API call is authenticated, as a service's would be
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.RegistryStub(channel)
        insts = [
            pb.Instance(vip=f"reg-{slot}-{i % 250}", host="127.0.0.1", port=20000 + i, instance_id=f"c{slot}-{i}",
                        lease=LEASE)
            for i in range(count)
        ]  # fmt: skip
        await asyncio.to_thread(go.wait)
        t0 = time.monotonic()
        reg_lat, reg_err = await _phase(
            stub,
            lambda s, inst: s.Register(pb.RegisterRequest(instance=inst), timeout=30, metadata=auth),
            insts,
            concurrency,
            None,
        )
        reg_s = time.monotonic() - t0
        refs = [pb.InstanceRef(vip=i.vip, instance_id=i.instance_id) for i in insts]
        t1 = time.monotonic()
        hb_lat, hb_err = await _phase(
            stub, lambda s, ref: s.Heartbeat(pb.HeartbeatRequest(ref=ref), timeout=30, metadata=auth), refs,
            concurrency, t1 + heartbeat_s,
        )  # fmt: skip
        hb_s = time.monotonic() - t1
        await _phase(stub, lambda s, ref: s.Deregister(pb.DeregisterRequest(ref=ref), timeout=30, metadata=auth),
                     refs, concurrency, None)  # fmt: skip
    return {"reg": reg_lat, "reg_err": reg_err, "reg_s": reg_s, "hb": hb_lat, "hb_err": hb_err, "hb_s": hb_s}


async def _echo_server(port_q: Any, stop: Any) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("floor.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),)
    )
    port_q.put(server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    await asyncio.to_thread(stop.wait)


def _echo_server_main(port_q: Any, stop: Any) -> None:
    asyncio.run(_echo_server(port_q, stop))


async def _echo_client(port: int, seconds: float, concurrency: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/floor.Echo/Echo")
        done = 0
        end = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < end:
                await call(b"x" * 48)
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done


def _echo_client_main(port: int, seconds: float, concurrency: int, out: Any) -> None:
    out.put(asyncio.run(_echo_client(port, seconds, concurrency)))


def unary_floor(processes: int = 2, concurrency: int = 32, seconds: float = 5.0) -> float:
    """Calls/s of a bare Python grpc.aio unary echo server with the same clients: the floor of any one hop."""
    ctx = mp.get_context("spawn")
    port_q, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_echo_server_main, args=(port_q, stop))
    server.start()
    try:
        port = port_q.get(timeout=30)
        clients = [
            ctx.Process(target=_echo_client_main, args=(port, seconds, concurrency, out)) for _ in range(processes)
        ]
        for c in clients:
            c.start()
        total = sum(out.get(timeout=seconds + 60) for _ in clients)
        for c in clients:
            c.join(30)
        return total / seconds
    finally:
        stop.set()
        server.join(30)
        if server.is_alive():
            server.kill()


def _main(
    target: str, token: str, slot: int, count: int, concurrency: int, go: Any, heartbeat_s: float, out: str
) -> None:
    result = asyncio.run(_client(target, token, slot, count, concurrency, go, heartbeat_s))
    Path(out).write_text(json.dumps(result))


def run(
    registrations: int = 5000,
    processes: int = 2,
    concurrency: int = 32,
    heartbeat_s: float = 10.0,
    up_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`up_args`: the deployment measured (default: the embedded default, co-hosted; `("--shape", "separate")`
    for an actor per role, the API's hop to a shard then over gRPC)."""
    work = work_dir("registry")
    stack = Stack.start(work, *up_args)
    per = registrations // processes
    try:
        results, cpu, per_actor = drive_clients(
            stack, work, _main,
            lambda i, go, out: (stack.info["registry"], stack.info["token"], i, per, concurrency, go, heartbeat_s, out),
            processes,
        )  # fmt: skip
    finally:
        stack.stop()
    floor = unary_floor(processes, concurrency, seconds=min(5.0, heartbeat_s))
    return {
        "benchmark": "registry",
        "settings": {"registrations": registrations, "client_processes": processes,
                     "concurrency_per_process": concurrency, "heartbeat_seconds": heartbeat_s, "shards": 2,
                     "up_args": list(up_args),
                     "path": "gRPC client -> registry API -> shard (a direct gRPC call between actors; a call on "
                             "the same event loop when co-hosted) -> etcd"},
        "figures": {
            "registrations": throughput(results, "reg"),
            "heartbeats": throughput(results, "hb"),
            "floor_bare_grpc_unary_calls_per_second": round(floor, 1),
            "control_plane_cpu_s": round(cpu, 2),
            "cpu_s_by_actor": per_actor,
        },
    }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    f = result["figures"]
    rows = [{"operation": op, **f[op]} for op in ("registrations", "heartbeats")]
    return table(rows, ["operation", "count", "errors", "per_second", "p50_ms", "p99_ms"]) + (
        f"\nfloor: a bare Python grpc.aio unary echo server with the same clients: "
        f"{f['floor_bare_grpc_unary_calls_per_second']} calls/s"
    )
