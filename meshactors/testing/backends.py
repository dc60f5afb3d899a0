"""Tiny HTTP backends and an HTTP-through-Envoy client for tests and the demo (each reply names its server)."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        body = self.server.backend_name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class Backend:
    """An HTTP server on 127.0.0.1 answering every GET with its own name. `stop()` frees the port."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.backend_name = name  # type: ignore[attr-defined]
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


def get(proxy: tuple[str, int], host: str, path: str = "/", timeout_s: float = 10.0) -> Reply:
    """GET http://<host><path> through the proxy on a fresh connection (as an app does through its sidecar)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(proxy[0], proxy[1], timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return Reply(resp.status, body, time.perf_counter() - start)
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
