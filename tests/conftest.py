"""Session fixtures: one `meshactors up` (embedded etcd + local Ray) shared by every integration test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshactors import cluster_auth
from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.store.etcd import EtcdStore
from meshactors.store.server import free_port
from meshactors.testing.backends import Backend
from meshactors.testing.prometheus import PrometheusServer
from meshactors.testing.stack import UpProcess

# Short socket paths for Ray and a directory this test session owns (and removes).
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="ma-"))
os.environ.setdefault("RAY_TMPDIR", str(_SESSION_DIR / "ray"))
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
(_SESSION_DIR / "ray").mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    yield _SESSION_DIR
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(session_dir: Path) -> Iterator[dict[str, Any]]:
    """The embedded default, exactly as a user runs it: `meshactors up --ready-file ...`, with a cluster secret
    from a file so the tests can act as an internal client (info["_cluster_secret"]; the ready file has none)."""
    ports = ["--registry-port", "0", "--eureka-port", "0", "--dashboard-port", "0", "--xds-port", "0"]
    secret, secret_file = cluster_auth.new_secret(), session_dir / "cluster-secret"
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    up = UpProcess(
        session_dir / "stack", args=[*ports, "--namespace", "meshtest", "--cluster-secret-file", str(secret_file)]
    )
    info = up.start(timeout_s=120)
    info["_up"] = up
    info["_cluster_secret"] = secret
    try:
        yield info
    finally:
        up.stop()


@pytest.fixture(scope="session")
def registry(stack: dict[str, Any]) -> Iterator[RegistryClient]:
    with RegistryClient(stack["registry"], token=stack["token"]) as client:
        yield client


@pytest.fixture(scope="session")
async def store(stack: dict[str, Any]) -> AsyncIterator[EtcdStore]:
    st = EtcdStore.from_spec(stack["etcd"])
    await st.connect()
    yield st
    await st.close()


@pytest.fixture(scope="session")
def ray_driver(stack: dict[str, Any]) -> Iterator[Any]:
    """This test process joins the stack's Ray cluster as a driver (to kill actors, read their state)."""
    import ray

    ray.init(address=stack["ray_address"], namespace=stack["namespace"], log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def envoy(stack: dict[str, Any], session_dir: Path) -> Iterator[EnvoyProcess]:
    """One real Envoy started from `meshactors bootstrap`: the generic bootstrap, knowing no services."""
    import subprocess
    import sys

    listen, admin = free_port(), free_port()
    ready = Path(stack["state_dir"]) / "ready.json"
    bootstrap = session_dir / "envoy.yaml"
    out = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "bootstrap", "--ready-file", str(ready), "--node-id", "e2e-envoy",
         "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    bootstrap.write_text(out.stdout)
    proc = EnvoyProcess(
        bootstrap, ("127.0.0.1", admin), session_dir / "envoy.log", listen=("127.0.0.1", listen)
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def prometheus(stack: dict[str, Any], session_dir: Path) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping every actor of the stack each second, with a config made by
    `meshactors prometheus-config` from the stack's ready file. One per test module (its own TSDB)."""
    import subprocess
    import sys

    ready = Path(stack["state_dir"]) / "ready.json"
    out = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "prometheus-config", "--ready-file", str(ready),
         "--scrape-interval", "1s"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    server = PrometheusServer(out.stdout, log_file=session_dir / "prometheus.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def backends() -> Iterator[Any]:
    """Make backends with `backends("name")`; all are stopped after the test."""
    made: list[Backend] = []

    def make(name: str) -> Backend:
        b = Backend(name)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()
