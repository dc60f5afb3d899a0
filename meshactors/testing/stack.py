"""Runs `meshactors up` as a child process for tests, demos and benchmarks; stops it and all it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class UpProcess:
    """A `meshactors up` child in its own session. `start()` returns once the ready file exists."""

    state_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    pass_ready_file: bool = True  # False: rely on `up` writing <state dir>/ready.json by itself, as a person does

    @property
    def ready_file(self) -> Path:
        return self.state_dir / "ready.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "up.log"

    def start(self, timeout_s: float = 90.0) -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.ready_file.exists():
            self.ready_file.unlink()
        ready = ["--ready-file", str(self.ready_file)] if self.pass_ready_file else []
        cmd = [sys.executable, "-m", "meshactors.cli", "up", "--state-dir", str(self.state_dir), *ready, *self.args]
        env = {**os.environ, "MESHACTORS_LOG_JSON": "1", **self.env}
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"meshactors up exited with {self.proc.returncode}:\n{self.tail()}")
            if self.ready_file.exists():
                self.info = json.loads(self.ready_file.read_text())
                return self.info
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"meshactors up not ready within {timeout_s} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGINT (graceful: actors, Ray and etcd stopped by `up` itself), then SIGKILL its process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def bearer(info: dict[str, Any], key: str = "token") -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying a ready file's token (`token`: the admin one, `proxy_token`) for raw stub calls."""
    return (("authorization", f"Bearer {info[key]}"),)


def registry_flags(info: dict[str, Any]) -> list[str]:
    """CLI flags naming a ready file's registry API and its admin token explicitly."""
    return ["--registry", info["registry"], "--token", info["token"]]


def scrape(url: str, token: str, timeout_s: float = 10.0) -> str:
    """One /metrics scrape with an API token (every actor's /metrics wants one), as text."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:
        return resp.read().decode()


def xds_samples(info: dict[str, Any], name: str) -> list[Any]:
    """Every sample named `name` on every xDS server's /metrics of a ready file (prometheus_client Samples)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for actor, url in info["metrics"].items():
        if actor.startswith("xds-server-"):
            text = scrape(url, info["token"])
            out += [s for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name]
    return out
