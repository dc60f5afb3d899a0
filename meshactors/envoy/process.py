"""EnvoyProcess: runs the real Envoy binary from a bootstrap file in its own session; admin API; stop by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshactors.envoy.bootstrap import (
    DEFAULT_NODE_CLUSTER,
    DEFAULT_STATS_FLUSH_S,
    Inbound,
    SecureInbound,
    Tracing,
    envoy_bootstrap,
)
from meshactors.store.server import find_binary


@dataclass
class EnvoyProcess:
    bootstrap: Path
    admin: tuple[str, int]
    log_file: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    listen: tuple[str, int] = ("127.0.0.1", 15001)
    cwd: Path | None = None  # Envoy's working directory: relative SDS paths (meshactors.envoy.sds) resolve in it

    def start(self, timeout_s: float = 30.0) -> EnvoyProcess:
        cmd = [
            find_binary("envoy"), "-c", str(self.bootstrap), "--disable-hot-restart",
            "--log-level", "warning", *(self.extra_args or ["--concurrency", "1"]),
        ]  # fmt: skip
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.cwd,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}; see {self.log_file}")
            try:
                if self.admin_get("/ready").strip() == "LIVE":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"envoy admin not LIVE within {timeout_s} s; see {self.log_file}")

    def admin_get(self, path: str, timeout_s: float = 5.0) -> str:
        url = f"http://{self.admin[0]}:{self.admin[1]}{path}"
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.read().decode()

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.admin_get("/stats").splitlines():
            key, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
        return out

    def config_dump(self) -> dict[str, Any]:
        return json.loads(self.admin_get("/config_dump"))

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def xds_endpoints(addresses: Iterable[str]) -> list[tuple[str, int]]:
    """xDS server addresses as the ready file gives them ("host:port") as (host, port)."""
    return [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in addresses]


def start_generic_envoy(
    xds: Sequence[tuple[str, int]],
    node_id: str,
    work: Path,
    listen: tuple[str, int],
    admin: tuple[str, int],
    name: str = "envoy",
    token: str = "",
    tls_ca: str | None = None,
    node_cluster: str = DEFAULT_NODE_CLUSTER,
    stats_flush_s: float | None = DEFAULT_STATS_FLUSH_S,
    *,
    inbound: Inbound | None = None,
    tracing: Tracing | None = None,
    zone: str = "",
    secure_inbound: SecureInbound | None = None,
) -> EnvoyProcess:
    """A real Envoy from the generic bootstrap (it knows no services); `work/<name>.yaml` (0600: it may hold the
    proxy's token) and `.log`. `tls_ca`: the control plane serves TLS, verified with this CA file. It reports its
    golden signals every `stats_flush_s` (None: not), as caller `node_cluster` (its app's VIP, when it has one).
    `inbound`, `tracing`, `zone` (its node.locality.zone) and `secure_inbound`: see `envoy_bootstrap`. Envoy runs
    in `work`, where its identity files are (meshactors.envoy.sds: every SVIP's Cluster reads them relative to it)."""
    work = work.resolve()
    bootstrap = work / f"{name}.yaml"
    doc = envoy_bootstrap(
        xds, node_id, listen=listen, admin=admin, token=token, tls_ca=tls_ca, node_cluster=node_cluster,
        stats_flush_s=stats_flush_s, inbound=inbound, tracing=tracing, zone=zone, secure_inbound=secure_inbound,
    )  # fmt: skip
    text = yaml.safe_dump(doc, sort_keys=False)
    fd = os.open(bootstrap, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return EnvoyProcess(bootstrap, admin, work / f"{name}.log", listen=listen, cwd=work).start()
