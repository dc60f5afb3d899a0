"""A real Prometheus server for tests: started on a free loopback port with its own TSDB, queried over its HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshactors.store.server import free_port

BINARY = "/usr/bin/prometheus"  # the Debian package, installed by tools/system-deps.sh

Vector = list[dict[str, Any]]  # an instant query's result: [{"metric": {labels}, "value": [time, "value"]}]


class PrometheusServer:
    """`config` is a prometheus.yml (e.g. from `meshactors prometheus-config`). `start()` waits for /-/ready;
    `stop()` ends the process group it started and removes its data directory."""

    def __init__(self, config: str, binary: str = BINARY, log_file: Path | None = None) -> None:
        self.config = config
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="ma-prom-"))
        self.log_file = log_file or self.dir / "prometheus.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> PrometheusServer:
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"{self.binary} is missing: run tools/system-deps.sh (Debian package prometheus)")
        config = self.dir / "prometheus.yml"
        config.write_text(self.config)
        self.port = free_port()
        cmd = [
            self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]  # fmt: skip
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready within {timeout_s} s")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a success, else RuntimeError with Prometheus' error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> Vector:
        """An instant query's vector (a scalar result comes back as one sample without labels)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        """The one value of `expr` (e.g. a sum), None when the vector is empty."""
        got = self.query(expr)
        if not got:
            return None
        if len(got) != 1:
            raise AssertionError(f"{expr} gave {len(got)} series, not one: {got}")
        return float(got[0]["value"][1])

    def wait_for(self, expr: str, ok: Callable[[Vector], bool], timeout_s: float = 30.0, what: str = "") -> Vector:
        """Query `expr` until `ok(its vector)`; AssertionError with the last vector seen when it never does."""
        deadline = time.monotonic() + timeout_s
        seen: Vector = []
        while True:
            seen = self.query(expr)
            if ok(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or expr}: never held within {timeout_s} s; last {seen}")
            time.sleep(0.25)

    def wait_value(self, expr: str, ok: Callable[[float], bool], timeout_s: float = 30.0, what: str = "") -> float:
        """Like `wait_for`, for an expression of one value."""
        got = self.wait_for(expr, lambda v: len(v) == 1 and ok(float(v[0]["value"][1])), timeout_s, what)
        return float(got[0]["value"][1])
