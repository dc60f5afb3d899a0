"""The `meshactors` command: run the control plane (`up`), register services, list and inspect them, and apply
traffic policies (`policy apply|get|ls|delete`).

Every command finds the running mesh the same way (meshactors.discovery): explicit addresses first, else the
ready file given with --ready-file, else the one `up` keeps in the state directory (--state-dir, default
~/.meshactors or $MESHACTORS_STATE_DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from meshactors import defaults, discovery
from meshactors.errors import ConfigError, InvalidArgument, MeshError, NotFound, Unavailable
from meshactors.model.instance import DEFAULT_LEASE_DURATION_S, DEFAULT_RENEWAL_INTERVAL_S

ENV_REGISTRY = os.environ.get("MESHACTORS_REGISTRY", "")  # an explicit registry address, like --registry
DEFAULT_STATE_DIR = os.environ.get("MESHACTORS_STATE_DIR", str(defaults.STATE_DIR))


def _mesh(args: argparse.Namespace, given: dict[str, Any], needed: tuple[str, ...]) -> dict[str, Any]:
    """What a command knows of the running mesh: the addresses `given` explicitly, and when any `needed` one is
    missing, the rest from the ready file (--ready-file, else the state dir's; NotRunning when its `up` is gone)."""
    given = {k: v for k, v in given.items() if v}
    if all(k in given for k in needed):
        return given
    info = discovery.find(args.state_dir, getattr(args, "ready_file", None))
    return {**info, **given}


def _registry(args: argparse.Namespace) -> str:
    return str(_mesh(args, {"registry": args.registry or ENV_REGISTRY}, ("registry",))["registry"])


def _metadata(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument("--metadata", f"{pair!r} is not key=value")
        out[key] = value
    return out


# ---- up ---------------------------------------------------------------------------------------------------------


def up_options(args: argparse.Namespace) -> Any:
    """The UpOptions the `up` flags describe; a bad value is a ConfigError naming its flag."""
    from meshactors.flags import mesh_settings, port
    from meshactors.runtime.embedded import UpOptions

    etcd_port = defaults.ETCD_PORT
    if args.etcd_port is not None:
        try:
            etcd_port = int(args.etcd_port)
        except ValueError:
            raise ConfigError(f"--etcd-port: {args.etcd_port!r} is not an integer") from None
        if problem := port(etcd_port):
            raise ConfigError(f"--etcd-port: {problem} (got {etcd_port})")
    return UpOptions(
        state_dir=Path(args.state_dir),
        settings=mesh_settings(args, etcd=args.etcd or ""),
        etcd_port=etcd_port,
        ray_address=args.ray_address,
        ready_file=Path(args.ready_file) if args.ready_file else None,
        human=sys.stdout.isatty() and not args.log_to_stdout,
    )


def cmd_up(args: argparse.Namespace) -> int:
    from meshactors import log

    opts = up_options(args)  # a bad flag fails here, before anything starts
    # The driver's own records: always to logs/driver.log; on a person's terminal only warnings, as lines.
    log_file = opts.state_dir.expanduser().resolve() / defaults.LOG_DIR / "driver.log"
    log.configure(file=log_file, echo="warnings" if opts.human else "all")
    from meshactors.runtime.embedded import run_up

    return run_up(opts)


# ---- register / deregister / ls -----------------------------------------------------------------------------------


def _instance_from_args(args: argparse.Namespace) -> Any:
    from meshactors.model import Instance, LeaseSettings, Status
    from meshactors.model.validate import parse_status

    return Instance(
        app=args.app or "",
        instance_id=args.instance_id or "",
        host=args.host,
        vip=args.vip or "",
        svip=args.svip or "",
        port=args.port or 0,
        secure_port=args.secure_port or 0,
        zone=args.zone,
        status=parse_status(args.status, "--status") if args.status else Status.UP,
        version_label=args.version_label,
        weight=args.weight,
        metadata=_metadata(args.metadata),
        lease=LeaseSettings(args.lease_renewal, args.lease_duration),
    )


def cmd_register(args: argparse.Namespace) -> int:
    from meshactors.registry.client import RegistryClient

    inst = _instance_from_args(args)
    with RegistryClient(_registry(args)) as client:
        ref, stored = client.register(inst)
        address = f"{stored.host}:{stored.port or stored.secure_port}"
        print(f"registered {ref.vip}/{ref.instance_id} at {address}", flush=True)
        if args.once:
            return 0
        stop = _stop_on_signals()
        _heartbeat_until_stopped(client, inst, ref, args.lease_renewal, stop)
        return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _heartbeat_until_stopped(
    client: Any, inst: Any, ref: Any, interval_s: float, stop: threading.Event, alive: Any = None
) -> None:
    """Heartbeat every renewal interval (re-registering if the lease ran out) until `stop`; then deregister."""
    tick = min(interval_s, 0.5) if alive is not None else interval_s
    next_beat = time.monotonic() + interval_s
    while not stop.wait(tick):
        if alive is not None and not alive():
            print(f"{ref}: the proxy exited; stopping", file=sys.stderr, flush=True)
            break
        if time.monotonic() < next_beat:
            continue
        next_beat = time.monotonic() + interval_s
        try:
            client.heartbeat(ref)
        except NotFound:
            print(f"{ref}: registration expired; registering again", file=sys.stderr, flush=True)
            try:
                ref, _ = client.register(inst)
            except MeshError as exc:
                print(f"{ref}: re-registration failed: {exc}", file=sys.stderr, flush=True)
        except Unavailable as exc:
            print(f"{ref}: heartbeat not recorded ({exc}); retrying", file=sys.stderr, flush=True)
    try:
        client.deregister(ref)
        print(f"deregistered {ref}", flush=True)
    except MeshError as exc:
        print(f"{ref}: deregistration failed: {exc}", file=sys.stderr, flush=True)


def cmd_sidecar(args: argparse.Namespace) -> int:
    """Join the mesh: register the local app, run Envoy from the generic bootstrap, heartbeat, clean up."""
    import tempfile

    from meshactors.envoy.process import start_generic_envoy
    from meshactors.registry.client import RegistryClient

    inst = _instance_from_args(args)
    xds = _xds_addresses(args)
    listen, admin = _address(args.listen, "--listen"), _address(args.admin, "--admin")
    node_id = args.node_id or f"{args.vip or args.svip}-{args.host}-{args.port or args.secure_port}"
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="meshactors-sidecar-"))
    work.mkdir(parents=True, exist_ok=True)
    stop = _stop_on_signals()
    envoy = start_generic_envoy(xds, node_id, work, listen, admin)
    print(f"envoy running (pid {envoy.proc.pid if envoy.proc else '?'}): apps send http://<vip>/ to "
          f"{listen[0]}:{listen[1]}; admin {admin[0]}:{admin[1]}; log {work / 'envoy.log'}", flush=True)  # fmt: skip
    try:
        with RegistryClient(_registry(args)) as client:
            ref, stored = client.register(inst)
            print(f"registered {ref.vip}/{ref.instance_id} at {stored.host}:{stored.port or stored.secure_port}",
                  flush=True)  # fmt: skip
            _heartbeat_until_stopped(client, inst, ref, args.lease_renewal, stop, alive=envoy.alive)
    finally:
        crashed = not envoy.alive()
        envoy.stop()
        print("envoy stopped", flush=True)
    return 1 if crashed and not stop.is_set() else 0


def cmd_deregister(args: argparse.Namespace) -> int:
    from meshactors.model import InstanceRef
    from meshactors.registry.client import RegistryClient

    with RegistryClient(_registry(args)) as client:
        ref = InstanceRef(args.vip, args.instance_id)
        client.deregister(ref)
        print(f"deregistered {ref}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from meshactors.registry.client import RegistryClient
    from meshactors.v1 import registry_pb2 as pb

    with RegistryClient(_registry(args)) as client:
        instances, revision = client.list(vip=args.vip or "", app=args.app or "")
    if args.json:
        rows = [
            json_format.MessageToDict(i, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            for i in instances
        ]
        print(json.dumps({"revision": revision, "instances": rows}, indent=2))
        return 0
    header = f"{'VIP':<24} {'SVIP':<24} {'INSTANCE':<28} {'ADDRESS':<22} {'ZONE':<10} {'STATUS':<15} WEIGHT"
    print(header)
    for i in instances:
        addr = f"{i.host}:{i.port or i.secure_port}"
        status = pb.Status.Name(i.status).removeprefix("STATUS_")
        print(f"{i.vip:<24} {i.svip:<24} {i.instance_id:<28} {addr:<22} {i.zone:<10} {status:<15} {i.weight}")
    print(f"{len(instances)} instance(s) at revision {revision}")
    return 0


# ---- policy -----------------------------------------------------------------------------------------------------


def _read_policy_file(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc}") from exc


def cmd_policy_apply(args: argparse.Namespace) -> int:
    from meshactors.registry.policy_client import ACTION_NAMES, PolicyClient

    text = _read_policy_file(args.file)
    with PolicyClient(_registry(args)) as client:
        resp = client.apply(text, dry_run=args.dry_run)
    changes = [(c.vip, ACTION_NAMES.get(c.action, "?"), c.diff) for c in resp.changes]
    problems = [(p.vip, p.field, p.reason) for p in resp.problems]
    if args.json:
        print(json.dumps({
            "dry_run": args.dry_run, "revision": resp.revision,
            "changes": [{"vip": v, "action": a, "diff": d} for v, a, d in changes],
            "problems": [{"vip": v, "field": f, "reason": r} for v, f, r in problems],
        }, indent=2))  # fmt: skip
        return 0
    would = "would be " if args.dry_run else ""
    for vip, action, diff in changes:
        print(f"{vip}: {would}{action}")
        if diff:
            sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
    for vip, field, reason in problems:
        print(f"problem: {vip}: {field}: {reason}")
    if args.dry_run:
        print(f"dry run: nothing written (read at revision {resp.revision})")
    else:
        print(f"{len(changes)} document(s) applied at revision {resp.revision}")
    return 0


def cmd_policy_get(args: argparse.Namespace) -> int:
    import yaml

    from meshactors.registry.policy_client import PolicyClient, document_of

    with PolicyClient(_registry(args)) as client:
        resp = client.get(args.vip)
    doc = document_of(resp.policy)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"# policy of {resp.policy.vip} at revision {resp.policy.mod_revision}")
    for p in resp.problems:
        print(f"# problem: {p.field}: {p.reason}")
    sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return 0


def _policy_summary(doc: dict[str, Any]) -> str:
    parts = []
    for section in ("destination", "routing"):
        fields = doc.get(section)
        if isinstance(fields, dict) and fields:
            parts.append(f"{section}({','.join(fields)})")
    return " ".join(parts) or "-"


def cmd_policy_ls(args: argparse.Namespace) -> int:
    from meshactors.registry.policy_client import PolicyClient, document_of

    with PolicyClient(_registry(args)) as client:
        items, revision = client.list()
    if args.json:
        rows = [{"vip": p.vip, "mod_revision": p.mod_revision, "create_revision": p.create_revision,
                 "document": document_of(p)} for p in items]  # fmt: skip
        print(json.dumps({"revision": revision, "policies": rows}, indent=2))
        return 0
    print(f"{'VIP':<32} {'REVISION':>10}  SETS")
    for p in items:
        print(f"{p.vip:<32} {p.mod_revision:>10}  {_policy_summary(document_of(p))}")
    print(f"{len(items)} policy document(s) at revision {revision}")
    return 0


def cmd_policy_delete(args: argparse.Namespace) -> int:
    from meshactors.registry.policy_client import PolicyClient

    with PolicyClient(_registry(args)) as client:
        revision = client.delete(args.vip)
    print(f"deleted the policy of {args.vip} at revision {revision}")
    return 0


# ---- status -----------------------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    info = _mesh(args, {"ray_address": args.ray_address, "namespace": args.namespace}, ("ray_address",))
    _ray_auth_env(info)  # before Ray is imported (by the runtime): it reads the auth mode once
    from meshactors.runtime.ops import driver
    from meshactors.runtime.status import actor_status, format_table, to_json

    address = info["ray_address"]
    namespace = info.get("namespace") or defaults.NAMESPACE
    with driver(address, namespace):
        rows = actor_status(namespace)
    if args.json:
        print(json.dumps(to_json({"namespace": namespace, "ray_address": address, "actors": rows}), indent=2))
        return 0
    print(format_table(rows))
    return 0


def cmd_proxy_status(args: argparse.Namespace) -> int:
    info = _mesh(args, {"ray_address": args.ray_address, "namespace": args.namespace}, ("ray_address",))
    _ray_auth_env(info)
    from meshactors.runtime.ops import driver
    from meshactors.runtime.status import format_proxy_status, proxy_status, to_json

    address = info["ray_address"]
    namespace = info.get("namespace") or defaults.NAMESPACE
    with driver(address, namespace):
        rows = proxy_status(namespace)
    if args.json:
        print(json.dumps(to_json({"namespace": namespace, "sessions": rows}), indent=2))
        return 0
    print(format_proxy_status(rows))
    return 0


def _ray_auth_env(info: dict[str, Any]) -> None:
    """A local Ray started by `up` uses token auth; a joining driver must say so, and find the token: the ready
    file names the token's file (`ray_auth_token_path`), used unless RAY_AUTH_TOKEN(_PATH) says otherwise."""
    if "RAY_AUTH_MODE" not in os.environ:
        mode = info.get("ray_auth_mode") or ("token" if (Path.home() / ".ray" / "auth_token").exists() else "")
        if mode:
            os.environ["RAY_AUTH_MODE"] = mode
    token_path = str(info.get("ray_auth_token_path") or "")
    if token_path and Path(token_path).exists() and not {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
        os.environ["RAY_AUTH_TOKEN_PATH"] = token_path


# ---- bootstrap -----------------------------------------------------------------------------------------------


def _address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{what}: {text!r} is not HOST:PORT")
    return host, int(port)


def _xds_addresses(args: argparse.Namespace) -> list[tuple[str, int]]:
    spec = args.xds or ",".join(_mesh(args, {}, ("xds",)).get("xds") or [])
    if not spec:
        raise ConfigError("--xds HOST:PORT[,HOST:PORT...] is required (the ready file names no xDS server)")
    return [_address(part, "--xds") for part in spec.split(",") if part.strip()]


def bootstrap_text(args: argparse.Namespace) -> str:
    import yaml

    from meshactors.envoy.bootstrap import envoy_bootstrap, grpc_bootstrap

    xds = _xds_addresses(args)
    if args.grpc:
        zone = getattr(args, "zone", None)
        locality = {"zone": zone} if zone else None
        return json.dumps(grpc_bootstrap(xds, args.node_id, locality=locality), indent=2) + "\n"
    doc = envoy_bootstrap(
        xds, args.node_id, listen=_address(args.listen, "--listen"), admin=_address(args.admin, "--admin")
    )
    return yaml.safe_dump(doc, sort_keys=False)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    sys.stdout.write(bootstrap_text(args))
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    given: dict[str, Any] = {"registry": args.registry, "etcd": args.etcd, "ray_address": args.ray_address,
                             "namespace": args.namespace}  # fmt: skip
    if args.xds:
        given["xds"] = [a.strip() for a in args.xds.split(",") if a.strip()]
    info = _mesh(args, given, ("registry", "xds", "etcd", "ray_address"))
    _ray_auth_env(info)  # before Ray is imported (by the runtime): it reads the auth mode once
    from meshactors.chaos import ChaosOptions, format_report, run_chaos

    info.setdefault("namespace", defaults.NAMESPACE)
    kill = [name.strip() for item in args.kill for name in item.split(",") if name.strip()]
    report = run_chaos(
        ChaosOptions(
            info=info,
            duration_s=args.duration,
            interval_s=args.interval,
            kill=kill,
            rate=args.rate,
            vips=args.vips,
            etcd_fault=args.etcd_fault or "",
            etcd_fault_s=args.etcd_fault_seconds,
            seed=args.seed,
        )
    )
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] else 1


def cmd_logs(args: argparse.Namespace) -> int:
    """Local files, unless the mesh's actors may run on other nodes (`up` joined a cluster) or --via ray says so:
    then each actor's log is read by the actor, through Ray, and only the driver's and etcd's from files."""
    from meshactors.logview import RemoteLogs, show, wanted

    state_dir = Path(args.state_dir).expanduser()
    info: dict[str, Any] = {}
    if args.ready_file or args.via == "ray":
        info = discovery.find(state_dir, args.ready_file)
    else:
        try:
            info = discovery.find(state_dir)
        except MeshError:
            info = {}  # not running: its files are still there to read
    state_dir = Path(info.get("state_dir") or state_dir)  # the state dir of the `up` that wrote the ready file
    via = args.via if args.via != "auto" else ("ray" if info and info.get("ray_local") is False else "files")
    if via == "files":
        return show(state_dir, args.source, args.since, args.lines, args.json, args.follow, sys.stdout)
    _ray_auth_env(info)  # before Ray is imported (by the runtime): it reads the auth mode once
    from meshactors.runtime import ops

    namespace = info.get("namespace") or defaults.NAMESPACE
    with ops.driver(info["ray_address"], namespace):
        target = args.source
        names = [n for n in ops.actor_names(namespace) if wanted(n, target)]

        def fetch(name: str, inode: int, offset: int, max_bytes: int) -> tuple[int, int, str]:
            return ops.log_chunk(name, namespace, inode, offset, max_bytes)

        remote = RemoteLogs(fetch, names)
        return show(state_dir, target, args.since, args.lines, args.json, args.follow, sys.stdout, remote=remote)


def cmd_demo(args: argparse.Namespace) -> int:
    from meshactors.demo import run_demo

    return run_demo(Path(args.keep_dir) if args.keep_dir else None)


# ---- parser -----------------------------------------------------------------------------------------------------


class _Subcommand(argparse.ArgumentParser):
    """A subcommand's parser that can add some arguments only when it is used: the `up` flags read their defaults
    from the settings records, whose import costs every other command half a second."""

    def __init__(
        self, *args: Any, late_arguments: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._late_arguments = late_arguments

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._late_arguments is not None:
            add, self._late_arguments = self._late_arguments, None
            add(self)
        return super().parse_known_args(args, namespace)


def _add_up_flags(parser: argparse.ArgumentParser) -> None:
    from meshactors.flags import add_up_flags

    add_up_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshactors", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Subcommand)

    up = sub.add_parser(
        "up",
        help="run the whole control plane on this machine (embedded etcd + local Ray)",
        late_arguments=_add_up_flags,
    )
    up.add_argument("--etcd", help="use this etcd (comma-separated URLs) instead of starting one")
    up.add_argument(
        "--etcd-port", metavar="PORT", help="client port of the embedded etcd (default: last run's, else a free one)"
    )
    up.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    up.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"where the embedded etcd keeps its data, the "
                    f"ready file (ready.json) and the logs (logs/) go (default {DEFAULT_STATE_DIR})")  # fmt: skip
    up.add_argument("--ready-file", help="also write the ready file (JSON: the addresses) here once everything answers")
    up.add_argument(
        "--log-to-stdout",
        action="store_true",
        help="print every record (JSON) on the terminal too, as off a terminal (containers, CI); by default a "
        "terminal gets progress lines, a summary and warnings",
    )
    up.set_defaults(func=cmd_up)

    reg = sub.add_parser("register", help="register an instance and keep it alive with heartbeats")
    _instance_args(reg)
    reg.add_argument("--once", action="store_true", help="register and exit (the lease then runs out by itself)")
    reg.set_defaults(func=cmd_register)

    car = sub.add_parser("sidecar", help="join the mesh: register the local app and run its Envoy sidecar")
    _instance_args(car, host_default="127.0.0.1")
    car.add_argument("--xds", help="xDS servers HOST:PORT[,HOST:PORT...] (default: from the ready file)")
    car.add_argument("--listen", default=defaults.ENVOY_LISTEN, help="outbound listener the app sends HTTP to")
    car.add_argument(
        "--admin", default=defaults.ENVOY_ADMIN, help=f"Envoy admin address (default {defaults.ENVOY_ADMIN})"
    )
    car.add_argument("--node-id", help="proxy node id (default: <vip>-<host>-<port>)")
    car.add_argument("--work-dir", help="where the bootstrap and Envoy's log go (default: a temp dir)")
    car.set_defaults(func=cmd_sidecar)

    dereg = sub.add_parser("deregister", help="remove a registration")
    _registry_args(dereg)
    dereg.add_argument("--vip", required=True, help="the name it is registered under (VIP, or SVIP if none)")
    dereg.add_argument("--instance-id", required=True)
    dereg.set_defaults(func=cmd_deregister)

    ls = sub.add_parser("ls", help="list registered instances")
    _registry_args(ls)
    ls.add_argument("--vip", help="only instances serving this VIP or SVIP")
    ls.add_argument("--app", help="only instances of this app")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)

    bs = sub.add_parser("bootstrap", help="print the generic Envoy bootstrap (or gRPC's, with --grpc)")
    bs.add_argument("--xds", help="xDS servers HOST:PORT[,HOST:PORT...] (default: from the ready file)")
    _where_args(bs)
    bs.add_argument("--node-id", required=True, help="this proxy's node id (the only per-proxy setting)")
    bs.add_argument("--listen", default=defaults.ENVOY_LISTEN, help="outbound listener apps send HTTP to")
    bs.add_argument(
        "--admin", default=defaults.ENVOY_ADMIN, help=f"Envoy admin address (default {defaults.ENVOY_ADMIN})"
    )
    bs.add_argument("--grpc", action="store_true", help="print a GRPC_XDS_BOOTSTRAP file for proxyless gRPC")
    bs.add_argument("--zone", help="with --grpc: the client's zone (node.locality.zone; default: unknown)")
    bs.set_defaults(func=cmd_bootstrap)

    demo = sub.add_parser("demo", help="show the whole story on the embedded default in under a minute")
    demo.add_argument("--keep-dir", help="keep logs and state here instead of a temp dir (its own state dir)")
    demo.set_defaults(func=cmd_demo)

    ch = sub.add_parser("chaos", help="kill actors (and etcd) under load through a real Envoy; report the damage")
    _where_args(ch)
    ch.add_argument("--registry", help="registry API host:port (instead of the ready file)")
    ch.add_argument("--xds", help="xDS servers HOST:PORT[,...] (instead of the ready file)")
    ch.add_argument("--etcd", help="etcd URL(s) (instead of the ready file)")
    ch.add_argument("--ray-address", help="Ray cluster address (instead of the ready file)")
    ch.add_argument("--namespace", help=f"Ray namespace of the actors (default {defaults.NAMESPACE})")
    ch.add_argument("--duration", type=float, default=defaults.CHAOS_DURATION_S,
                    help=f"seconds of load and faults (default {defaults.CHAOS_DURATION_S:g})")  # fmt: skip
    ch.add_argument("--interval", type=float, default=defaults.CHAOS_INTERVAL_S,
                    help=f"seconds between kills (default {defaults.CHAOS_INTERVAL_S:g})")  # fmt: skip
    ch.add_argument(
        "--kill",
        action="append",
        default=[],
        metavar="ACTOR",
        help="kill these actors in turn (repeatable or comma-separated; default: every kind, random)",
    )
    ch.add_argument("--rate", type=float, default=defaults.CHAOS_RATE,
                    help=f"requests per second through Envoy (default {defaults.CHAOS_RATE:g})")  # fmt: skip
    ch.add_argument("--vips", type=int, default=defaults.CHAOS_VIPS,
                    help=f"VIPs the load is spread over (default {defaults.CHAOS_VIPS})")  # fmt: skip
    ch.add_argument("--etcd-fault", choices=["pause", "kill"], help="also pause (SIGSTOP) or kill the embedded etcd")
    ch.add_argument("--etcd-fault-seconds", type=float, default=defaults.CHAOS_ETCD_FAULT_S,
                    help=f"how long a pause lasts, in seconds (default {defaults.CHAOS_ETCD_FAULT_S:g})")  # fmt: skip
    ch.add_argument("--seed", type=int, help="random seed for the choice of victims")
    ch.add_argument("--json", help="also write the report here as JSON")
    ch.set_defaults(func=cmd_chaos)

    pol = sub.add_parser("policy", help="traffic policy per VIP: apply documents, show, list and delete them")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    pa = psub.add_parser("apply", help="validate and store policy documents (all of the file, or none of it)")
    _registry_args(pa)
    pa.add_argument("-f", "--file", required=True, help="YAML or JSON file of one or more documents ('-': stdin)")
    pa.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    pa.add_argument("--json", action="store_true")
    pa.set_defaults(func=cmd_policy_apply)
    pg = psub.add_parser("get", help="print a VIP's stored policy document (YAML, or JSON with --json)")
    _registry_args(pg)
    pg.add_argument("vip", help="the VIP, or '*' for the mesh-wide document")
    pg.add_argument("--json", action="store_true")
    pg.set_defaults(func=cmd_policy_get)
    pl = psub.add_parser("ls", help="list the stored policy documents")
    _registry_args(pl)
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_policy_ls)
    pd = psub.add_parser("delete", help="delete a VIP's policy document")
    _registry_args(pd)
    pd.add_argument("vip", help="the VIP, or '*' for the mesh-wide document")
    pd.set_defaults(func=cmd_policy_delete)

    st = sub.add_parser("status", help="list the control plane's actors with their states and restart counts")
    _where_args(st)
    st.add_argument("--ray-address", help="Ray cluster address (instead of the ready file)")
    st.add_argument("--namespace", help="Ray namespace of the actors (instead of the ready file)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    ps = sub.add_parser("proxy-status", help="every connected proxy: its xDS server and sync status per type URL")
    _where_args(ps)
    ps.add_argument("--ray-address", help="Ray cluster address (instead of the ready file)")
    ps.add_argument("--namespace", help="Ray namespace of the actors (instead of the ready file)")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_proxy_status)

    lg = sub.add_parser("logs", help="show (and follow) the control plane's logs: each actor's, the driver's, etcd's")
    lg.add_argument(
        "source",
        nargs="?",
        metavar="ACTOR|KIND",
        help="an actor (registry-shard-0), a kind (registry-shard), driver or etcd (default: all)",
    )
    _where_args(lg)
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing records as they are written")
    lg.add_argument("--since", metavar="DURATION", help="only records of the last DURATION (30s, 5m, 2h, 1d)")
    lg.add_argument("-n", "--lines", type=int, default=200, help="at most this many records of history (0: all)")
    lg.add_argument("--json", action="store_true", help="print the records as stored (JSON lines)")
    lg.add_argument(
        "--via",
        choices=["auto", "files", "ray"],
        default="auto",
        help="read the actors' logs from the state dir's files, or ask each actor through Ray (on a cluster, where "
        "actors write on their own nodes); auto: ray when `up` joined a cluster, else files",
    )
    lg.set_defaults(func=cmd_logs)
    return p


def _where_args(p: argparse.ArgumentParser) -> None:
    """How a command finds the running mesh when no address is given."""
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help=f"the state dir of the `meshactors up` to use (default {DEFAULT_STATE_DIR})")  # fmt: skip
    p.add_argument("--ready-file", help="read the addresses from this ready file (instead of the state dir's)")


def _instance_args(reg: argparse.ArgumentParser, host_default: str | None = None) -> None:
    _registry_args(reg)
    reg.add_argument("--vip", help="plain-traffic name, e.g. myservice")
    reg.add_argument("--svip", help="mTLS name, e.g. myservice-secure")
    reg.add_argument("--host", required=host_default is None, default=host_default, help="the app's address")
    reg.add_argument("--port", type=int, help="plain port (with --vip)")
    reg.add_argument("--secure-port", type=int, help="mTLS port (with --svip)")
    reg.add_argument("--app", help="application name (default: the VIP)")
    reg.add_argument("--instance-id", help="instance id (default: host:port)")
    reg.add_argument("--zone", default="default")
    reg.add_argument("--status", help="UP (default), DOWN, STARTING or OUT_OF_SERVICE")
    reg.add_argument("--version-label", default="")
    reg.add_argument("--weight", type=int, default=1)
    reg.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    reg.add_argument("--lease-renewal", type=int, default=DEFAULT_RENEWAL_INTERVAL_S,
                     help=f"heartbeat interval in seconds (default {DEFAULT_RENEWAL_INTERVAL_S})")  # fmt: skip
    reg.add_argument("--lease-duration", type=int, default=DEFAULT_LEASE_DURATION_S,
                     help=f"lease duration in seconds (default {DEFAULT_LEASE_DURATION_S})")  # fmt: skip


def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="registry API host:port (default: $MESHACTORS_REGISTRY, else the ready file)")
    _where_args(p)


def _command(args: argparse.Namespace) -> str:
    sub = getattr(args, "policy_command", None)
    return f"{args.command} {sub}" if sub else str(args.command)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def main(argv: list[str] | None = None) -> int:
    from meshactors import log

    log.configure(level=os.environ.get("MESHACTORS_LOG_LEVEL", "WARNING"))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except discovery.NotRunning as exc:
        print(exc, file=sys.stderr)
        return 1
    except MeshError as exc:
        print(f"meshactors {_command(args)}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidArgument | ConfigError) else 1
    except grpc.RpcError as exc:
        print(f"meshactors {_command(args)}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
