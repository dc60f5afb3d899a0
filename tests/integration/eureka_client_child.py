"""Runs the real py-eureka-client in its own process, driven by lines on stdin (the Eureka integration test).

Its own process because py-eureka-client 0.13's heartbeat thread never ends: after `stop()` it would register
the instance again on its next beat. Exiting the process after `stop()` is what a real service does.

stdin commands: "apps" prints {"apps": {APP: [instance ids]}} from the client's fetched registry;
"stop" calls stop() and exits. Every reply is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import py_eureka_client.eureka_client as eureka_client


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
    client = eureka_client.EurekaClient(
        eureka_server=args.server,
        app_name=args.app,
        instance_host="127.0.0.1",
        instance_ip="127.0.0.1",
        instance_port=args.port,
        renewal_interval_in_secs=args.renewal,
        duration_in_secs=args.duration,
        metadata={"team": "payments"},
    )
    await client.start()
    _say({"started": True})
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "apps":
            apps = client.applications
            seen = {a.name: [i.instanceId for i in a.instances] for a in apps.applications} if apps else {}
            _say({"apps": seen})
        elif line in ("stop", ""):
            await client.stop()
            _say({"stopped": True})
            os._exit(0)  # the client's heartbeat thread would not end by itself


if __name__ == "__main__":
    asyncio.run(main())
