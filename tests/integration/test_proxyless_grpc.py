"""A proxyless grpcio client resolves `xds:///<vip>` over SotW ADS and calls a registered gRPC server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors.registry.client import RegistryClient
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENT = r"""
import sys, grpc
target, n = sys.argv[1], int(sys.argv[2])
with grpc.insecure_channel(target) as channel:
    say = channel.unary_unary("/meshtest.Echo/Say")
    for i in range(n):
        print(say(b"hello", timeout=30).decode(), flush=True)
"""


def _echo_server(name: str) -> tuple[grpc.Server, int]:
    def say(request: bytes, context: Any) -> bytes:
        return f"{name}:{request.decode()}".encode()

    handler = grpc.method_handlers_generic_handler("meshtest.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def grpc_bootstrap(stack: dict[str, Any], session_dir: Path) -> Iterator[Path]:
    ready = Path(stack["state_dir"]) / "ready.json"
    out = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "bootstrap", "--grpc", "--ready-file", str(ready),
         "--node-id", "proxyless-client"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    path = session_dir / "grpc-bootstrap.json"
    path.write_text(out.stdout)
    assert json.loads(out.stdout)["xds_servers"][0]["server_features"] == ["xds_v3"]
    yield path


def test_proxyless_grpc_client_reaches_a_registered_server(registry: RegistryClient, grpc_bootstrap: Path) -> None:
    vip = f"greeter-{uuid.uuid4().hex[:6]}"
    servers = [_echo_server("one"), _echo_server("two")]
    try:
        for i, (_, port) in enumerate(servers):
            registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, zone=f"zone-{i}", instance_id=f"g{i}"))
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(grpc_bootstrap)}
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT, f"xds:///{vip}", "20"],
            capture_output=True, text=True, timeout=90, env=env, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        replies = proc.stdout.split()
        assert len(replies) == 20
        assert set(replies) == {"one:hello", "two:hello"}, replies  # round robin across both zones' servers
    finally:
        for server, _ in servers:
            server.stop(0)
