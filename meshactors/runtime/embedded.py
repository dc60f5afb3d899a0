"""`meshactors up`: starts etcd (unless given), Ray (unless given) and the actors; stops what it started."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from meshactors import defaults, log
from meshactors.errors import ConfigError
from meshactors.runtime.credentials import ensure_ca_key_file, ensure_tokens
from meshactors.runtime.deploy import deploy, teardown
from meshactors.runtime.status import metrics_urls
from meshactors.runtime.topology import (
    CONTROLLER,
    DASHBOARD,
    EUREKA_API,
    REGISTRY_API,
    REGISTRY_SHARD,
    SNAPSHOT_BUILDER,
    XDS_SERVER,
    deployment_names,
    kind_of,
)
from meshactors.settings import MeshSettings
from meshactors.store.etcdspec import redact
from meshactors.store.server import EtcdServer
from meshactors.tlsconfig import check_listeners

_log = log.get("runtime.embedded")


@dataclass
class UpOptions:
    """What `meshactors up` runs: the deployment's settings, plus what only the launcher needs."""

    state_dir: Path
    settings: MeshSettings = field(default_factory=lambda: MeshSettings(etcd=""))  # etcd "": start an embedded one
    etcd_port: int = defaults.ETCD_PORT  # the embedded etcd's; 0: last run's, else a free one
    ray_address: str | None = None  # None: start a local Ray
    ready_file: Path | None = None  # another copy of the ready file (the state dir always gets one)
    human: bool = False  # a person's terminal: progress lines and a summary; the actors' records go to files only
    # the CA (PEM) clients should trust to verify the listeners' certificate, as the ready file names it for them;
    # "": the certificate file itself (its chain, or a self-signed certificate)
    tls_ca: str = ""


# The local Ray `up` starts runs the mesh's actors only: every actor gets a worker process of its own when it is
# created, so the workers Ray would otherwise prestart for tasks (one per CPU, when the first driver connects)
# would only sit idle (~40 MB PSS each).
LOCAL_RAY_CONFIG: dict[str, Any] = {"prestart_worker_first_driver": False, "enable_worker_prestart": False}


@contextlib.contextmanager
def lean_local_ray() -> Iterator[None]:
    """While it is open, a local Ray started by ray.init runs no autoscaler monitor (~48 MB PSS: one node, nothing
    to scale), no log monitor (~45 MB PSS: `up` echoes the actors' own log files instead, see echo_actor_logs)
    and no dashboard head process (~59 MB PSS: even with include_dashboard=False Ray 2.60 starts it for
    its job and state HTTP APIs, which the mesh never calls). Ray's own knob for the first (RayParams.no_monitor,
    what `ray start --no-monitor` sets) is not one of ray.init's arguments, and it has none for the second; a
    head whose API server did not start is a state Ray handles (it tolerates that start failing when the
    dashboard is not asked for). Checked against the Ray version in pyproject.toml by the footprint benchmark."""
    from ray._private import node, parameter

    params_class, start_api_server = parameter.RayParams, node.Node.start_api_server

    class _Params(params_class):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.no_monitor = True
            self.include_log_monitor = False

    def _no_api_server(self: Any, *, include_dashboard: bool | None, raise_on_failure: bool) -> None:
        _log.debug("Ray dashboard head not started", include_dashboard=include_dashboard)

    parameter.RayParams = _Params  # type: ignore[misc]
    node.Node.start_api_server = _no_api_server  # type: ignore[method-assign]
    try:
        yield
    finally:
        parameter.RayParams = params_class  # type: ignore[misc]
        node.Node.start_api_server = start_api_server  # type: ignore[method-assign]


_ECHOED_LEVELS = frozenset({"warning", "warn", "error", "critical", "exception", "fatal"})


def echo_actor_logs(state_dir: Path, human: bool, stop: threading.Event) -> threading.Thread:
    """What Ray's log monitor did for `log_to_driver`, from the actors' own files (a local Ray runs none): every
    record an actor writes, as stored (JSON), to `up`'s stderr; on a person's terminal only warnings and errors,
    as human lines. A thread that logs and never dies, until `stop`."""
    from meshactors.logview import DRIVER, ETCD, Record, follow, render, tails_at_end

    def emit(record: Record) -> None:
        if record.source in (DRIVER, ETCD):
            return
        if not human:
            print(record.line, file=sys.stderr, flush=True)
        elif str((record.fields or {}).get("level", "")).lower() in _ECHOED_LEVELS:
            print(render(record), file=sys.stderr, flush=True)

    tails = tails_at_end(state_dir)  # what the files hold before this moment is not echoed

    def run() -> None:
        while not stop.is_set():
            try:
                follow(state_dir, None, emit, stop=stop.is_set, poll_s=0.2, tails=tails)
            except Exception as exc:
                _log.warning("echoing the actors' logs failed; again in a second", error=repr(exc)[:300])
                stop.wait(1.0)

    thread = threading.Thread(target=run, name="actor-log-echo", daemon=True)
    thread.start()
    return thread


SECRET_FIELDS = frozenset({"token", "proxy_token", "dashboard"})  # ready-file fields never logged or printed


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """Atomically (readers never see half a file) and readable by its owner only (it may carry credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)  # a left-over one would keep its own mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


class _Progress:
    """What `up` says while it starts: a timed line per step on a terminal, an info record otherwise."""

    def __init__(self, human: bool) -> None:
        self.human = human
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def step(self, text: str, **fields: Any) -> None:
        if self.human:
            print(f"  {self.elapsed():5.1f}s  {text}", flush=True)
        else:
            _log.info(text, elapsed_s=round(self.elapsed(), 3), **fields)


class _KindsReady:
    """Turns the controller's per-actor readiness into one line per actor kind, once all of that kind are ready."""

    def __init__(self, settings: MeshSettings, progress: _Progress) -> None:
        self.progress = progress
        self.pending: dict[str, set[str]] = {}
        for name in deployment_names(settings):
            self.pending.setdefault(kind_of(name), set()).add(name)
        self.counts = {kind: len(names) for kind, names in self.pending.items()}

    def __call__(self, name: str) -> None:
        kind = kind_of(name)
        if kind == CONTROLLER:
            self.progress.step("controller: every actor alive and ready")
            return
        names = self.pending.get(kind)
        if names is None or name not in names:
            return
        names.discard(name)
        if not names:
            count = self.counts[kind]
            label = _KIND_LABELS.get(kind, kind)
            self.progress.step(f"{label} ready" + (f" ({count})" if count > 1 else ""), kind=kind, actors=count)


_KIND_LABELS = {
    REGISTRY_SHARD: "registry shards",
    SNAPSHOT_BUILDER: "snapshot builders",
    XDS_SERVER: "xDS servers",
    REGISTRY_API: "registry API",
    EUREKA_API: "Eureka API",
    DASHBOARD: "dashboard",
}


def _already_running(ready: Path) -> int:
    """The pid of a live `up` (on this host) that owns this ready file, else 0."""
    try:
        info = json.loads(ready.read_text())
        pid = int(info.get("pid") or 0)
    except (OSError, ValueError):
        return 0
    if pid and pid != os.getpid() and info.get("hostname", socket.gethostname()) == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        except PermissionError:
            return pid
        return pid
    return 0


def _token_path() -> str:
    """Where Ray's auth token is (the file, never the token), so that a driver with another HOME finds it."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return str(path) if path.exists() else ""


def summary(info: dict[str, Any], took_s: float, default_state_dir: bool) -> str:
    """What a person reads once `up` is up: what runs where, and what to do next."""
    sd = "" if default_state_dir else f" --state-dir {info['state_dir']}"
    if info.get("tls"):
        tls = f"  TLS           on: registry, Eureka and xDS APIs (clients trust {info['tls_ca']})"
    else:
        tls = "  TLS           off: plaintext APIs" + (" on a NON-LOOPBACK address (--insecure)" if info.get(
            "insecure_exposed") else " (loopback only)")  # fmt: skip
    etcd_where = ""
    if info.get("etcd_data"):  # the embedded one: where its data and its root password are
        etcd_where = f"  (data in {info['etcd_data']}; credentials in {info.get('etcd_credentials') or '?'})"
    lines = [
        f"meshactors is up in {took_s:.1f} s: registry {info['registry']}, xDS {','.join(info['xds'])}, "
        f"Eureka {info['eureka']}",
        f"  registry API  {info['registry']}  (gRPC: meshactors register / ls / deregister)",
        f"  Eureka API    {info['eureka']}  (point Eureka clients here)",
        f"  xDS servers   {', '.join(info['xds'])}  (delta + SotW ADS: meshactors bootstrap / sidecar)",
        *(
            [f"  dashboard     {info['dashboard_page']}  (the ready file's `dashboard` URL signs you in)"]
            if info.get("dashboard_page")
            else []
        ),
        f"  etcd          {redact(info['etcd'])}{etcd_where}",
        f"  Ray           {info['ray_address']}  (namespace {info['namespace']})",
        tls,
        f"  state dir     {info['state_dir']}  (ready.json; logs in {info['log_dir']})",
        "Next, in another terminal:",
        f"  meshactors register{sd} --vip myservice --host 127.0.0.1 --port 8080",
        f"  meshactors ls{sd}",
        f"  meshactors status{sd}",
        f"  meshactors logs{sd} --follow",
        "Ctrl-C stops everything this command started.",
    ]
    return "\n".join(lines)


def _load_etcd_port(state_dir: Path) -> int:
    """Reuse last run's etcd port so addresses stay stable across restarts (data is kept anyway)."""
    try:
        return int((state_dir / "etcd" / "port").read_text())
    except (OSError, ValueError):
        return 0


def _credentials_path(state_dir: Path) -> Path:
    return state_dir / "etcd" / "credentials"


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
    # the loopback rule, before anything starts (`up_options` checked it too: this is for any caller)
    exposed = check_listeners(
        [opts.settings.registry_host, opts.settings.xds_host],
        opts.settings.tls_cert,
        opts.settings.tls_key,
        opts.settings.insecure,
    )
    for warning in exposed:
        _log.warning(warning, hosts=sorted({opts.settings.registry_host, opts.settings.xds_host}))
    state_dir = opts.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ready_files = [state_dir / defaults.READY_FILE]
    if opts.ready_file and opts.ready_file.resolve() != ready_files[0]:
        ready_files.append(opts.ready_file)
    if pid := _already_running(ready_files[0]):
        raise ConfigError(
            f"meshactors is already running (state dir {state_dir}: up pid {pid}); stop it or use another --state-dir"
        )
    for stale in ready_files:
        stale.unlink(missing_ok=True)
    log_dir = state_dir / defaults.LOG_DIR
    progress = _Progress(opts.human)
    if opts.human:
        print(f"meshactors up: state dir {state_dir}, logs in {log_dir}", flush=True)
    etcd_server: EtcdServer | None = None
    started_etcd: list[EtcdServer] = []  # the embedded etcd once made: stopped below whatever happens
    started_ray = False
    settings: MeshSettings | None = None
    try:

        def start_etcd() -> str:
            """The embedded etcd, started with its own auth on: its client URL (with the root credentials)."""
            server = EtcdServer(
                data_dir=state_dir / "etcd" / "data", client_port=opts.etcd_port or _load_etcd_port(state_dir)
            )
            started_etcd.append(server)
            try:
                server.start()
            except Exception:
                if not server.client_port or opts.etcd_port:
                    raise
                server.stop()  # the remembered port may be taken now: take a fresh one
                server = EtcdServer(data_dir=state_dir / "etcd" / "data")
                started_etcd[:] = [server]
                server.start()
            (state_dir / "etcd" / "port").write_text(str(server.client_port))
            # etcd's own auth, so that only holders of the credentials file (and the actors) can write the registry
            url = server.enable_auth(_credentials_path(state_dir))
            progress.step(f"etcd started ({redact(url)}, authentication on)", etcd=redact(url))
            return url

        quiet = {"logging_level": logging.ERROR} if opts.human else {}
        echo = "warnings" if opts.human else "all"  # what the actors echo to stderr, which Ray carries to `up`
        # etcd starts on a thread while Ray starts here: neither needs the other (~0.6 s of the start)
        with ThreadPoolExecutor(1, thread_name_prefix="etcd-start") as pool:
            if opts.settings.etcd:
                etcd_started = None
                progress.step(f"using etcd {redact(opts.settings.etcd)}", etcd=redact(opts.settings.etcd))
            else:
                etcd_started = pool.submit(start_etcd)
            if opts.ray_address:
                ray.init(address=opts.ray_address, namespace=opts.settings.namespace, log_to_driver=True, **quiet)
                progress.step(f"joined Ray at {opts.ray_address}", ray_address=opts.ray_address)
            else:
                with lean_local_ray():
                    ray.init(
                        namespace=opts.settings.namespace,
                        include_dashboard=False,
                        log_to_driver=False,  # no log monitor: `up` echoes the actors' files itself
                        _system_config=dict(LOCAL_RAY_CONFIG),
                        **quiet,
                    )
                started_ray = True
                echo = "none"  # the actors write their files only, and this process echoes them
                echo_actor_logs(state_dir, opts.human, stop)
                progress.step("Ray started (local)")
            etcd = opts.settings.etcd if etcd_started is None else etcd_started.result()
            etcd_server = started_etcd[0] if started_etcd else None
        admin_token, proxy_token = ensure_tokens(etcd, opts.settings.keys, state_dir)
        progress.step("API tokens ready", admin_token_file=str(state_dir / "admin-token"))
        ca_key = ensure_ca_key_file(Path(opts.settings.ca_key_file or state_dir / defaults.CA_KEY_FILE))
        wanted = dataclasses.replace(
            opts.settings, etcd=etcd, log_dir=str(log_dir), log_echo=echo,
            ca_key_file=str(ca_key),
        )  # fmt: skip
        settings = deploy(wanted, on_ready=_KindsReady(wanted, progress))
        info = {
            "registry": settings.registry_address,
            "xds": settings.xds_addresses,
            "eureka": settings.eureka_url,
            "tls": settings.tls,  # the registry, Eureka and xDS APIs serve TLS
            "trust_domain": settings.trust_domain,  # of the mesh CA: identities are spiffe://<it>/svc/<service>
            "ca_key_file": settings.ca_key_file,  # where the CA root's sealing key is (a path; its content stays)
            "tls_ca": (opts.tls_ca or settings.tls_cert) if settings.tls else "",  # what clients trust (a file)
            "insecure_exposed": bool(exposed),  # plaintext on a non-loopback address, by --insecure
            "etcd": etcd,
            "ray_address": ray.get_runtime_context().gcs_address,
            "namespace": settings.namespace,
            "ray_auth_mode": os.environ.get("RAY_AUTH_MODE", "token" if started_ray else ""),
            "ray_auth_token_path": _token_path(),
            "ray_local": started_ray,
            "key_prefix": settings.key_prefix,
            "shards": settings.shards,
            "state_dir": str(state_dir),
            "log_dir": str(log_dir),
            "etcd_data": str(etcd_server.data_dir) if etcd_server else "",
            "etcd_credentials": str(_credentials_path(state_dir)) if etcd_server else "",
            "etcd_log": str(etcd_server.data_dir.parent / f"{etcd_server.name}.etcd.log") if etcd_server else "",
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "etcd_pid": etcd_server.proc.pid if etcd_server and etcd_server.proc else 0,
            "metrics": metrics_urls(settings.namespace),  # one Prometheus scrape target per actor
            "dashboard_page": settings.dashboard_url,  # the dashboard, without credentials
            # ... and with the admin token, like Jupyter's link: the page trades it for a cookie and drops it
            "dashboard": f"{settings.dashboard_url}?token={admin_token}",
            "token": admin_token,  # what every CLI command given this file (or the state dir) uses
            "proxy_token": proxy_token,  # what `meshactors bootstrap` / `sidecar` give the proxies they configure
        }
        for path in ready_files:
            write_ready_file(path, info)
        _log.info(
            "meshactors is up", **{k: v for k, v in info.items() if k not in SECRET_FIELDS} | {"etcd": redact(etcd)}
        )
        if opts.human:
            print(summary(info, progress.elapsed(), state_dir == defaults.STATE_DIR.resolve()), flush=True)
        else:
            print(
                f"meshactors is up: registry {info['registry']}, xDS {','.join(info['xds'])}, "
                f"Eureka {info['eureka']}, etcd {redact(etcd)}, "
                f"Ray {info['ray_address']}, TLS {'on' if info['tls'] else 'off'}",
                flush=True,
            )
            print("Ctrl-C stops everything this command started.", flush=True)
        while not stop.wait(0.5):
            if etcd_server is not None and _etcd_died(etcd_server):
                info["etcd_pid"] = _restart_etcd(etcd_server)
                if info["etcd_pid"]:
                    for path in ready_files:
                        write_ready_file(path, info)
        return 0
    finally:
        if opts.human:
            print("stopping: actors, Ray and etcd ...", flush=True)
        _log.info("shutting down")
        for path in ready_files:  # first: from now on every command says the mesh is not running
            path.unlink(missing_ok=True)
        if settings is not None:
            try:
                teardown(settings)
            except Exception as exc:
                _log.warning("teardown incomplete", error=repr(exc))
        if ray.is_initialized():
            ray.shutdown()
        if started_ray:
            _log.info("local Ray stopped")
        for server in started_etcd:
            server.stop()
        if opts.human:
            print("stopped.", flush=True)
