"""A minimal asyncio HTTP/1.1 backend for benchmarks (keep-alive, fixed 200 reply), run as its own process.

Usage: python -m benchmarks.backend PORT [PORT...]   prints READY once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys

REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(REPLY)
            if b"connection: close" in head.lower():
                await writer.drain()
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(ports: list[int]) -> None:
    servers = [await asyncio.start_server(_serve, "127.0.0.1", p, backlog=1024) for p in ports]
    print("READY", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main([int(p) for p in sys.argv[1:]]))
