"""Tiny HTTP backends and an HTTP-through-Envoy client for tests and the demo (each reply names its server)."""

from __future__ import annotations

import http.client
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = self.server.backend_name.encode()
        # `/status/NNN` answers with that status (for error-rate tests); any other path with 200
        code = self.path[len("/status/") :][:3] if self.path.startswith("/status/") else ""
        self.send_response(int(code) if code.isdigit() and 200 <= int(code) <= 599 else 200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class Backend:
    """An HTTP server on 127.0.0.1 answering every GET with its own name (and status 200, or NNN for a path
    `/status/NNN`). `stop()` frees the port.

    `seen`: (path, headers with lowercased names) of the last SEEN requests, oldest first."""

    SEEN = 64

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.backend_name = name  # type: ignore[attr-defined]
        self.seen: deque[tuple[str, dict[str, str]]] = deque(maxlen=self.SEEN)
        self.httpd.seen = self.seen  # type: ignore[attr-defined]
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"backend-{name}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: str
    seconds: float
    headers: dict[str, str] = field(default_factory=dict)  # the response's, names lowercased


def get(
    proxy: tuple[str, int],
    host: str,
    path: str = "/",
    timeout_s: float = 10.0,
    headers: dict[str, str] | None = None,
) -> Reply:
    """GET http://<host><path> through the proxy on a fresh connection (as an app does through its sidecar),
    with extra request `headers`."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(proxy[0], proxy[1], timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        seconds = time.perf_counter() - start
        return Reply(resp.status, body, seconds, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def wait_routable(proxy: tuple[str, int], vips: Iterable[str], timeout_s: float) -> bool:
    """Poll until every VIP answers 200 through the proxy (True), or `timeout_s` passes (False)."""
    names = list(vips)
    deadline = time.monotonic() + timeout_s
    while not all(get(proxy, v).status == 200 for v in names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _Admin(Protocol):
    def admin_get(self, path: str, timeout_s: float = ...) -> str: ...


def guard_knows(envoy: _Admin, vip: str) -> bool:
    """True once `envoy`'s known-VIPs guard (over ECDS) lets `vip` through: until then a request to `vip` gets the
    guard's 503 and never reaches on-demand discovery (the set follows a registration by well under a second)."""
    return f'"{vip}"' in envoy.admin_get("/config_dump?resource=ecds_filters")
