"""An xDS-enabled grpcio server child for tests: /meshtest.Echo/Say on the Listener the control plane sends (gRFC A36).

Run as `python grpcio_xds_server.py IP:PORT NAME` with GRPC_XDS_BOOTSTRAP set (grpcio reads it once per process).
It listens with `grpc.xds_server_credentials` (mTLS when the Listener says so, which the mesh's always does) and
answers each call with JSON: `{"name": NAME, "peer": {auth context property: [values]}}` (the caller's identity as
gRPC authenticated it; the PEM certificate left out). Prints `started` once listening; stops when stdin closes.
"""

from __future__ import annotations

import json
import sys
from concurrent import futures
from typing import Any

import grpc


def main() -> int:
    address, name = sys.argv[1], sys.argv[2]

    def say(request: bytes, context: Any) -> bytes:
        peer = {
            key: [v.decode(errors="replace") for v in values]
            for key, values in (context.auth_context() or {}).items()
            if key != "x509_pem_cert"
        }
        return json.dumps({"name": name, "peer": peer}).encode()

    handler = grpc.method_handlers_generic_handler("meshtest.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((handler,))
    server.add_secure_port(address, grpc.xds_server_credentials(grpc.insecure_server_credentials()))
    server.start()
    print("started", flush=True)
    sys.stdin.read()  # until the parent closes stdin
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
