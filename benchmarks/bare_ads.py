"""The floor for on-demand discovery: a bare in-process delta ADS server answering from memory (no Ray/etcd).

Run as its own process: python -m benchmarks.bare_ads PORT BACKEND_PORT  -> prints READY. Every VIP maps
to the same backend; the resources are built by the same pure builder the control plane uses.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

from meshactors.envoy.codec import ads_generic_handler
from meshactors.model import Instance
from meshactors.snapshot.builder import build_vip
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaRequest, DeltaResponse


async def main(port: int, backend_port: int) -> None:
    nonces = itertools.count(1)

    async def delta(requests: AsyncIterator[DeltaRequest], context: Any) -> AsyncIterator[DeltaResponse]:
        async for req in requests:
            if not req.subscribe or req.type_url not in (CLUSTER, ENDPOINT):
                continue
            out = []
            for vip in req.subscribe:
                inst = Instance(app=vip, instance_id="bare", host="127.0.0.1", vip=vip, port=backend_port)
                found = build_vip(vip, [inst]).get(req.type_url, vip)
                if found is not None:
                    out.append(found)
            yield DeltaResponse(type_url=req.type_url, nonce=f"bare-{next(nonces)}", resources=tuple(out))

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((ads_generic_handler(delta, None),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("READY", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
