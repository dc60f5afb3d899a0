"""The floor for propagation: a bare grpc.aio delta ADS server that fans one pre-encoded response out to its streams.

Run as its own process: python -m benchmarks.bare_fanout PORT VIP -> prints READY. A stream that subscribes to the
VIP's Cluster gets it, then its ClusterLoadAssignment, built once by the same pure builder the control plane uses;
every request (ACKs included) is decoded by the same codec. Each line `push K` on stdin builds assignment K (the
instance's weight K + 2, as the benchmark's registry change does) once, encodes it once and writes the identical
bytes to every stream from one loop (a delta nonce only has to be unique within its stream). No Ray, no etcd, no
state machine, no task per stream: what grpc.aio itself costs to push one change to N streams and read their ACKs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

from meshactors.envoy.codec import ADS_SERVICE, decode_delta_request, encode_delta_response
from meshactors.model import Instance
from meshactors.snapshot.builder import build_vip
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaRequest, DeltaResponse

BACKEND_PORT = 19500  # what the benchmark registers: the clients never connect to it


def _response(vip: str, type_url: str, k: int) -> bytes:
    inst = Instance(app=vip, instance_id="p", host="127.0.0.1", vip=vip, port=BACKEND_PORT, weight=k + 2)
    found = build_vip(vip, [inst]).get(type_url, vip)
    assert found is not None, (type_url, vip)
    return encode_delta_response(DeltaResponse(type_url=type_url, nonce=f"bare-{type_url[-8:]}-{k}",
                                               resources=(found,)))  # fmt: skip


async def main(port: int, vip: str) -> None:
    cluster, assignment = _response(vip, CLUSTER, -1), _response(vip, ENDPOINT, -1)
    streams: dict[int, Any] = {}  # stream -> its context, once it holds the assignment

    async def delta(requests: AsyncIterator[DeltaRequest], context: Any) -> None:
        key = id(context)
        try:
            async for req in requests:
                if req.type_url == CLUSTER and vip in req.subscribe:
                    await context.write(cluster)
                elif req.type_url == ENDPOINT and vip in req.subscribe:
                    await context.write(assignment)
                    streams[key] = context
        finally:
            streams.pop(key, None)

    handler = grpc.stream_stream_rpc_method_handler(
        delta, request_deserializer=decode_delta_request, response_serializer=lambda data: data
    )
    server = grpc.aio.server()
    methods = {"DeltaAggregatedResources": handler}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADS_SERVICE, methods),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.split()
        if len(words) != 2 or words[0] != b"push":
            continue
        data = _response(vip, ENDPOINT, int(words[1]))
        await asyncio.gather(*(context.write(data) for context in list(streams.values())), return_exceptions=True)
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
