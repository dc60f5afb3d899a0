"""The floor for on-demand discovery: a bare in-process delta ADS server answering from memory (no Ray/etcd).

Run as its own process: python -m benchmarks.bare_ads PORT BACKEND_PORT [NAMES_FILE] -> prints READY. Every VIP
maps to the same backend; the resources are built by the same pure builder the control plane uses, and the
generic bootstrap's route table and known-VIPs guard (the names in NAMES_FILE, one per line) are served too, and its
wildcard CDS subscription is answered with nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from meshactors.envoy.codec import ads_generic_handler
from meshactors.envoy.policy import UNSERVED_VIRTUAL_HOST, outbound_route_configuration
from meshactors.envoy.resources import KNOWN_VIPS_FILTER
from meshactors.model import Instance
from meshactors.snapshot.builder import build_known_vips, build_vip
from meshactors.xds.types import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    ROUTE,
    VIRTUAL_HOST,
    DeltaRequest,
    DeltaResponse,
)

ROUTES = outbound_route_configuration()


async def main(port: int, backend_port: int, names: list[str]) -> None:
    nonces = itertools.count(1)
    guard = build_known_vips(names).get(EXTENSION_CONFIG, KNOWN_VIPS_FILTER) if names else None

    async def delta(requests: AsyncIterator[DeltaRequest], context: Any) -> AsyncIterator[DeltaResponse]:
        async for req in requests:
            if req.type_url == ROUTE and ROUTES.name in req.subscribe:  # the generic bootstrap's route table
                yield DeltaResponse(type_url=ROUTE, nonce=f"bare-{next(nonces)}", resources=(ROUTES,))
                continue
            if req.type_url == VIRTUAL_HOST and not req.response_nonce:  # VHDS: nothing, but answered (as the host)
                unserved = (UNSERVED_VIRTUAL_HOST,)
                yield DeltaResponse(type_url=VIRTUAL_HOST, nonce=f"bare-{next(nonces)}", removed=unserved)
                continue
            if req.type_url == CLUSTER and not req.response_nonce and not req.subscribe:  # the bootstrap's CDS wildcard
                yield DeltaResponse(type_url=CLUSTER, nonce=f"bare-{next(nonces)}")  # answered (as the host): nothing
                continue
            if req.type_url == EXTENSION_CONFIG and not req.response_nonce and guard is not None:
                yield DeltaResponse(type_url=EXTENSION_CONFIG, nonce=f"bare-{next(nonces)}", resources=(guard,))
                continue
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
    known = Path(sys.argv[3]).read_text().split() if len(sys.argv) > 3 else []
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), known))
