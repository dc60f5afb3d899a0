"""`meshactors up`: starts etcd (unless given), Ray (unless given) and the actors; stops what it started."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from meshactors import defaults, log
from meshactors.runtime.deploy import deploy, teardown
from meshactors.settings import MeshSettings
from meshactors.store.server import EtcdServer

_log = log.get("runtime.embedded")


@dataclass
class UpOptions:
    """What `meshactors up` runs: the deployment's settings, plus what only the launcher needs."""

    state_dir: Path
    settings: MeshSettings = field(default_factory=lambda: MeshSettings(etcd=""))  # etcd "": start an embedded one
    etcd_port: int = defaults.ETCD_PORT  # the embedded etcd's; 0: last run's, else a free one
    ray_address: str | None = None  # None: start a local Ray
    ready_file: Path | None = None


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """Atomically: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


def _load_etcd_port(state_dir: Path) -> int:
    """Reuse last run's etcd port so addresses stay stable across restarts (data is kept anyway)."""
    try:
        return int((state_dir / "etcd" / "port").read_text())
    except (OSError, ValueError):
        return 0


def _etcd_died(server: EtcdServer) -> bool:
    return server.proc is None or server.proc.poll() is not None


def _restart_etcd(server: EtcdServer) -> int:
    """The embedded etcd is supervised: if it dies it comes back on the same port with the same data."""
    code = server.proc.returncode if server.proc is not None else None
    _log.warning("embedded etcd exited; restarting it", code=code, url=server.url)
    server.proc = None
    try:
        server.start(timeout_s=20)
    except Exception as exc:
        _log.error("embedded etcd did not come back; retrying", error=repr(exc))
        server.stop()
        return 0
    return server.proc.pid if server.proc else 0


def run_up(opts: UpOptions, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    state_dir = opts.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    etcd_server: EtcdServer | None = None
    started_ray = False
    settings: MeshSettings | None = None
    try:
        if opts.settings.etcd:
            etcd = opts.settings.etcd
        else:
            etcd_server = EtcdServer(
                data_dir=state_dir / "etcd" / "data", client_port=opts.etcd_port or _load_etcd_port(state_dir)
            )
            try:
                etcd_server.start()
            except Exception:
                if etcd_server.client_port and not opts.etcd_port:
                    etcd_server.stop()  # the remembered port may be taken now: take a fresh one
                    etcd_server = EtcdServer(data_dir=state_dir / "etcd" / "data").start()
                else:
                    raise
            (state_dir / "etcd" / "port").write_text(str(etcd_server.client_port))
            etcd = etcd_server.url
        if opts.ray_address:
            ray.init(address=opts.ray_address, namespace=opts.settings.namespace, log_to_driver=True)
        else:
            ray.init(namespace=opts.settings.namespace, include_dashboard=False)
            started_ray = True
        settings = deploy(dataclasses.replace(opts.settings, etcd=etcd))
        info = {
            "registry": settings.registry_address,
            "xds": settings.xds_addresses,
            "eureka": settings.eureka_url,
            "etcd": etcd,
            "ray_address": ray.get_runtime_context().gcs_address,
            "namespace": settings.namespace,
            "ray_auth_mode": os.environ.get("RAY_AUTH_MODE", "token" if started_ray else ""),
            "key_prefix": settings.key_prefix,
            "shards": settings.shards,
            "state_dir": str(state_dir),
            "pid": os.getpid(),
            "etcd_pid": etcd_server.proc.pid if etcd_server and etcd_server.proc else 0,
        }
        if opts.ready_file:
            write_ready_file(opts.ready_file, info)
        _log.info("meshactors is up", **info)
        print(
            f"meshactors is up: registry {info['registry']}, xDS {','.join(info['xds'])}, "
            f"Eureka {info['eureka']}, etcd {etcd}, "
            f"Ray {info['ray_address']}",
            flush=True,
        )
        print("Ctrl-C stops everything this command started.", flush=True)
        while not stop.wait(0.5):
            if etcd_server is not None and _etcd_died(etcd_server):
                info["etcd_pid"] = _restart_etcd(etcd_server)
                if opts.ready_file and info["etcd_pid"]:
                    write_ready_file(opts.ready_file, info)
        return 0
    finally:
        _log.info("shutting down")
        if settings is not None:
            try:
                teardown(settings)
            except Exception as exc:
                _log.warning("teardown incomplete", error=repr(exc))
        if ray.is_initialized():
            ray.shutdown()
        if started_ray:
            _log.info("local Ray stopped")
        if etcd_server is not None:
            etcd_server.stop()
        if opts.ready_file and opts.ready_file.exists():
            opts.ready_file.unlink()
