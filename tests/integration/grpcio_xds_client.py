"""A proxyless grpcio client child for tests: the same stdin/stdout JSON line protocol as tests/node/xds_client.js.

Each stdin line is a command `{"target": "xds:///vip", "calls": n, "timeout_ms": ms}` (with `"xds_creds": true`
the channel uses `grpc.xds_channel_credentials`, so the TLS the control plane sends is used); each call of
/meshtest.Echo/Say prints `{"ok": true, "reply": ..., "ms": ...}` or `{"ok": false, "code": 14,
"code_name": "UNAVAILABLE", "details": ..., "ms": ...}`, and the command ends with `{"done": true, "calls": n}`.
Channels are kept per target, so later commands see what the live channel learned from xDS pushes. Run as a
child process: grpcio reads GRPC_XDS_BOOTSTRAP once per process.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import grpc
import grpc.experimental

METHOD = "/meshtest.Echo/Say"
# grpc.StatusCode values are (int, name) tuples.
_CODES = {code: code.value[0] for code in grpc.StatusCode}


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _call(say: Any, timeout_ms: int) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        reply = say(b"hello", timeout=timeout_ms / 1000)
    except grpc.RpcError as exc:
        code = exc.code()
        return {
            "ok": False,
            "code": _CODES.get(code, -1),
            "code_name": code.name if code is not None else "UNKNOWN",
            "details": exc.details() or "",
            "ms": (time.perf_counter() - started) * 1000,
        }
    return {"ok": True, "reply": reply.decode(), "ms": (time.perf_counter() - started) * 1000}


def main() -> int:
    channels: dict[tuple[str, bool], grpc.Channel] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        target, xds_creds = command["target"], bool(command.get("xds_creds"))
        if (target, xds_creds) not in channels:
            channels[(target, xds_creds)] = (
                grpc.secure_channel(
                    target, grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
                )
                if xds_creds
                else grpc.insecure_channel(target)
            )
        say = channels[(target, xds_creds)].unary_unary(METHOD)
        calls = int(command.get("calls", 1))
        for _ in range(calls):
            _emit(_call(say, int(command.get("timeout_ms", 10_000))))
        _emit({"done": True, "calls": calls})
    for channel in channels.values():
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
