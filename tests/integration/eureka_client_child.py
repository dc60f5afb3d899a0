"""Runs the real py-eureka-client in its own process, driven by lines on stdin (the Eureka integration test).

Its own process because py-eureka-client 0.13's heartbeat thread never ends: after `stop()` it would register
the instance again on its next beat. Exiting the process after `stop()` is what a real service does.

`--server` carries the credentials as a Eureka server URL does: `http://app:TOKEN@host:port/eureka/` (the client
sends them as HTTP basic auth). Once started it prints {"started": true, "failures": [...]}: every error the client
reported (its `on_error`), each with the HTTP status of the last refused request, e.g. a 401 without credentials.

stdin commands: "apps" prints {"apps": {APP: [instance ids]}} from the client's fetched registry; "failures"
prints {"failures": [...]} so far; "stop" calls stop() and exits. Every reply is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

import py_eureka_client.eureka_client as eureka_client
import py_eureka_client.http_client as http_client
import py_eureka_client.logger as eureka_logger

_failures: list[dict[str, object]] = []
_last_status: list[int] = [0]


class _RecordingClient(http_client.HttpClient):
    """The client's own HTTP client, remembering the status of the last request the server refused."""

    async def urlopen(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().urlopen(*args, **kwargs)
        except http_client.HTTPError as exc:
            _last_status[0] = exc.code
            raise


def _on_error(error_type: str, exc: Exception) -> None:
    _failures.append({"error": error_type, "status": _last_status[0], "exception": type(exc).__name__})


def _say(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--app", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--renewal", type=int, default=1)
    p.add_argument("--duration", type=int, default=3)
    args = p.parse_args()
    # The client logs to stdout, where our replies go; its warnings (each refused request, with a traceback) are
    # reported as failures instead, and only its errors go to stderr (not read until the end: keep it small).
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.ERROR)
    quiet = logging.getLogger("eureka-client-child")
    quiet.addHandler(to_stderr)
    quiet.propagate = False
    eureka_logger.set_custom_logger(quiet)
    http_client.set_http_client(_RecordingClient())
    client = eureka_client.EurekaClient(
        eureka_server=args.server,
        app_name=args.app,
        instance_host="127.0.0.1",
        instance_ip="127.0.0.1",
        instance_port=args.port,
        renewal_interval_in_secs=args.renewal,
        duration_in_secs=args.duration,
        metadata={"team": "payments"},
        on_error=_on_error,
    )
    await client.start()
    _say({"started": True, "failures": list(_failures)})
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "apps":
            apps = client.applications
            seen = {a.name: [i.instanceId for i in a.instances] for a in apps.applications} if apps else {}
            _say({"apps": seen})
        elif line == "failures":
            _say({"failures": list(_failures)})
        elif line in ("stop", ""):
            await client.stop()
            _say({"stopped": True})
            os._exit(0)  # the client's heartbeat thread would not end by itself


if __name__ == "__main__":
    asyncio.run(main())
