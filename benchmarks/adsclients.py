"""Lightweight delta ADS clients for benchmarks: many streams per process, several processes, real gRPC.

Each stream subscribes to one VIP's Cluster, then its ClusterLoadAssignment (as Envoy does), ACKs every
response at once, and records when each new ClusterLoadAssignment arrived. Progress goes to a shared array
(one slot per process, no lock), the arrival times to a JSON file when the process is told to stop.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from meshactors.envoy.codec import delta_ads_stream
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaRequest, DeltaResponse, Node

STREAMS_PER_CHANNEL = 100


async def _requests(queue: asyncio.Queue[DeltaRequest | None]) -> AsyncIterator[DeltaRequest]:
    while True:
        req = await queue.get()
        if req is None:
            return
        yield req


async def _stream(
    idx: int, channel: grpc.aio.Channel, vip: str, state: dict[str, Any], stop: asyncio.Event, token: str
) -> None:
    backoff = 0.05
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    while not stop.is_set():
        queue: asyncio.Queue[DeltaRequest | None] = asyncio.Queue()  # one per attempt: nothing stale carries over
        call = delta_ads_stream(channel)(_requests(queue), metadata=metadata)
        queue.put_nowait(DeltaRequest(type_url=CLUSTER, node=Node(f"bench-{idx}"), subscribe=(vip,)))
        times: list[float] = []
        asked_eds = False
        # A stream that has not got its endpoints within 30 s is started again (Envoy has such a timeout too).
        watchdog = asyncio.get_running_loop().call_later(
            30.0, lambda call=call: None if idx in state["connected"] else call.cancel()
        )
        try:
            async for resp in call:
                t = time.monotonic()
                assert isinstance(resp, DeltaResponse)
                queue.put_nowait(DeltaRequest(type_url=resp.type_url, response_nonce=resp.nonce))
                if resp.type_url == CLUSTER and resp.resources and not asked_eds:
                    asked_eds = True
                    queue.put_nowait(DeltaRequest(type_url=ENDPOINT, subscribe=(vip,)))
                elif resp.type_url == ENDPOINT and resp.resources:
                    if idx not in state["connected"]:
                        state["connected"].add(idx)
                    else:
                        times.append(t)
                        state["updates"] += 1
            return
        except asyncio.CancelledError:
            if stop.is_set() or idx in state["connected"]:
                raise
            state["errors"]["no endpoints in 30 s; retried"] = (
                state["errors"].get("no endpoints in 30 s; retried", 0) + 1
            )
        except grpc.aio.AioRpcError as exc:
            if stop.is_set():
                return
            if exc.code() == grpc.StatusCode.CANCELLED and idx in state["connected"]:
                return
            key = f"{exc.code().name}: {(exc.details() or '')[:80]}"
            state["errors"][key] = state["errors"].get(key, 0) + 1
            await asyncio.sleep(backoff)  # e.g. RESOURCE_EXHAUSTED: retry like Envoy, with backoff
            backoff = min(backoff * 2, 1.0)
        finally:
            watchdog.cancel()
            queue.put_nowait(None)  # ends the request iterator, so nothing is left pending at exit
            call.cancel()
            state["times"].setdefault(idx, []).extend(times)


async def _run(
    slot: int, n: int, targets: list[str], vip: str, progress: Any, stop_ev: Any, first_idx: int, token: str
) -> dict[str, Any]:
    state: dict[str, Any] = {"connected": set(), "updates": 0, "times": {}, "errors": {}}
    stop = asyncio.Event()
    channels = [
        grpc.aio.insecure_channel(targets[i % len(targets)]) for i in range(max(1, -(-n // STREAMS_PER_CHANNEL)))
    ]
    tasks = [
        asyncio.create_task(_stream(first_idx + i, channels[i % len(channels)], vip, state, stop, token))
        for i in range(n)
    ]
    while not stop_ev.is_set():
        progress[2 * slot] = len(state["connected"])
        progress[2 * slot + 1] = state["updates"]
        await asyncio.sleep(0.005)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ch in channels:
        await ch.close()
    progress[2 * slot] = len(state["connected"])
    progress[2 * slot + 1] = state["updates"]
    return {"times": state["times"], "errors": state["errors"]}


def _main(
    slot: int, n: int, targets: list[str], vip: str, progress: Any, stop_ev: Any, out: str, first: int, token: str
) -> None:
    result = asyncio.run(_run(slot, n, targets, vip, progress, stop_ev, first, token))
    Path(out).write_text(json.dumps(result))


class ClientFleet:
    """`sessions` delta ADS streams over `processes` processes, all on one VIP; each stream sends `token` (a proxy
    token: the ready file's `proxy_token`) as `authorization: Bearer` metadata."""

    def __init__(
        self, sessions: int, processes: int, targets: list[str], vip: str, work: Path, token: str = ""
    ) -> None:
        ctx = mp.get_context("spawn")
        self.sessions = sessions
        self.progress = ctx.Array("q", 2 * processes, lock=False)
        self.stop_ev = ctx.Event()
        self.outs = [str(work / f"clients-{i}.json") for i in range(processes)]
        per = [sessions // processes + (1 if i < sessions % processes else 0) for i in range(processes)]
        firsts = [sum(per[:i]) for i in range(processes)]
        self.procs = [
            ctx.Process(
                target=_main,
                args=(i, per[i], targets, vip, self.progress, self.stop_ev, self.outs[i], firsts[i], token),
                daemon=True,
            )
            for i in range(processes)
        ]

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def connected(self) -> int:
        return sum(self.progress[0::2])

    def updates(self) -> int:
        return sum(self.progress[1::2])

    def wait(self, predicate: Any, timeout_s: float, what: str) -> float:
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"{what}: not within {timeout_s} s (connected {self.connected()}, "
                                   f"updates {self.updates()})")  # fmt: skip
            if not all(p.is_alive() for p in self.procs):
                raise RuntimeError("a client process died")
            time.sleep(0.001)
        return time.monotonic() - start

    def stop(self) -> dict[str, Any]:
        """Stop every client; returns the arrival times per stream and the errors seen."""
        self.stop_ev.set()
        for p in self.procs:
            p.join(60)
            if p.is_alive():
                p.kill()
        times: dict[str, list[float]] = {}
        errors: dict[str, int] = {}
        for out in self.outs:
            try:
                data = json.loads(Path(out).read_text())
            except (OSError, ValueError):
                continue
            times.update(data["times"])
            for k, v in data["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {"times": times, "errors": errors}
