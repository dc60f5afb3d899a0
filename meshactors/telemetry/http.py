"""A minimal asyncio HTTP server for GET /metrics on the actor's own event loop (no thread touches its state).

A scrape needs `Authorization: Bearer <token>` (any valid API token; `meshactors prometheus-config` writes it into the
scrape config) when the server is given an `authorize` check: without one, or with a refused one, it answers 401."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST

from meshactors import log

_log = log.get("telemetry.http")

Render = Callable[[], Awaitable[bytes]]
Authorize = Callable[[str | None], bool]  # the Authorization header's value (None: absent) -> may scrape
MAX_HEADER_LINES = 100


async def _handle(
    render: Render, authorize: Authorize | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
        credentials: str | None = None
        for _ in range(MAX_HEADER_LINES):  # a scrape has a few headers; more is not a scrape
            header = await asyncio.wait_for(reader.readline(), 5)
            if header in (b"\r\n", b"\n", b""):
                break
            name, sep, value = header.decode("latin-1").partition(":")
            if sep and name.strip().lower() == "authorization":
                credentials = value.strip()
        parts = line.decode("latin-1").split()
        extra = ""
        if not (len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics"):
            status, ctype, body = "404 Not Found", "text/plain", b"only GET /metrics is served here\n"
        elif authorize is not None and not authorize(credentials):
            status, ctype, body = "401 Unauthorized", "text/plain", b"send Authorization: Bearer <API token>\n"
            extra = 'WWW-Authenticate: Bearer realm="meshactors"\r\n'
        else:
            status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, await render()
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
    except (TimeoutError, ConnectionError, UnicodeError, ValueError):  # ValueError: a line past the reader's limit
        pass
    except Exception as exc:  # a bug in rendering: log it, end this one scrape
        _log.exception("metrics scrape failed", error=repr(exc))
    finally:
        writer.close()


async def serve(host: str, port: int, render: Render, authorize: Authorize | None = None) -> tuple[asyncio.Server, int]:
    """Serve `render()` at http://host:port/metrics (port 0: any free port); returns the server and its port.
    With `authorize`, a scrape whose Authorization header it refuses gets 401."""
    server = await asyncio.start_server(lambda r, w: _handle(render, authorize, r, w), host, port, limit=16384)
    bound = server.sockets[0].getsockname()[1]
    return server, int(bound)
