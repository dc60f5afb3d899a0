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
from meshactors.errors import ConfigError, InvalidArgument, MeshError, NotFound, PermissionDenied, Unavailable
from meshactors.model.instance import DEFAULT_LEASE_DURATION_S, DEFAULT_RENEWAL_INTERVAL_S

ENV_REGISTRY = os.environ.get("MESHACTORS_REGISTRY", "")  # an explicit registry address, like --registry
ENV_TLS_CA = os.environ.get("MESHACTORS_TLS_CA", "")  # the CA file to verify TLS listeners with, like --tls-ca
DEFAULT_STATE_DIR = os.environ.get("MESHACTORS_STATE_DIR", str(defaults.STATE_DIR))


def _mesh(args: argparse.Namespace, given: dict[str, Any], needed: tuple[str, ...]) -> dict[str, Any]:
    """What a command knows of the running mesh: the addresses `given` explicitly, and when any `needed` one is
    missing, the rest from the ready file (--ready-file, else the state dir's; NotRunning when its `up` is gone)."""
    given = {k: v for k, v in given.items() if v}
    if all(k in given for k in needed):
        return given
    info = discovery.find(args.state_dir, getattr(args, "ready_file", None))
    return {**info, **given}


def _tls_ca(args: argparse.Namespace, info: dict[str, Any]) -> str | None:
    """The CA file to verify the control plane's TLS listeners with: --tls-ca (or $MESHACTORS_TLS_CA), else the
    ready file's when it says TLS is on; None: plaintext."""
    from meshactors.tlsconfig import check_ca

    given = getattr(args, "tls_ca", None) or ENV_TLS_CA
    if given:
        return check_ca(given)
    if not info.get("tls"):
        return None
    if not info.get("tls_ca"):
        raise ConfigError("the ready file says the APIs serve TLS but names no CA to trust: give --tls-ca FILE")
    return check_ca(str(info["tls_ca"]), "ready file tls_ca")


def _registry_conn(args: argparse.Namespace) -> dict[str, Any]:
    """How to reach the registry API: its address, the token to send and the CA to verify its TLS with (None:
    plaintext)."""
    info = _mesh(args, {"registry": args.registry or ENV_REGISTRY}, ("registry",))
    return {"target": str(info["registry"]), "token": _token(args), "tls_ca": _tls_ca(args, info)}


def _token(args: argparse.Namespace, kept: str = "token") -> str:
    """The API token a command sends: --token, else $MESHACTORS_TOKEN, else the ready file's `kept` one (the
    embedded default's admin token, or its proxy token for bootstraps), else none (the API then says what to do)."""
    given = getattr(args, "token", None) or os.environ.get("MESHACTORS_TOKEN", "")
    if given:
        return str(given).strip()
    try:
        info = discovery.find(args.state_dir, getattr(args, "ready_file", None))
    except MeshError:
        return ""
    return str(info.get(kept) or "")


def _require_admin(args: argparse.Namespace, registry: str, tls_ca: str | None = None) -> None:
    """Operator commands (status, proxy-status, chaos) need an admin token, checked by the registry API. They also
    need Ray's own credentials; when the registry API does not answer, those alone let them run (to diagnose)."""
    from meshactors.registry.token_client import ROLE_NAMES, TokenClient

    try:
        with TokenClient(registry, timeout_s=5, token=_token(args), tls_ca=tls_ca) as client:
            info = client.whoami()
    except Unavailable as exc:
        print(f"warning: the registry API did not answer ({exc}); relying on Ray's credentials", file=sys.stderr)
        return
    role = ROLE_NAMES.get(info.role, "unknown")
    if role != "admin":
        raise PermissionDenied(f"meshactors {args.command} needs an admin token; this is a {role} token")


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
    from meshactors.tlsconfig import absolute, check_ca, check_listeners

    etcd_port = defaults.ETCD_PORT
    if args.etcd_port is not None:
        try:
            etcd_port = int(args.etcd_port)
        except ValueError:
            raise ConfigError(f"--etcd-port: {args.etcd_port!r} is not an integer") from None
        if problem := port(etcd_port):
            raise ConfigError(f"--etcd-port: {problem} (got {etcd_port})")
    settings = mesh_settings(args, etcd=_etcd_spec(args))
    check_listeners([settings.registry_host, settings.xds_host], settings.tls_cert, settings.tls_key, settings.insecure)
    tls_ca = absolute(args.tls_ca or "")
    if tls_ca and not settings.tls:
        raise ConfigError("--tls-ca names the CA of the listeners' certificate: give --tls-cert and --tls-key too")
    if tls_ca:
        check_ca(tls_ca)
    return UpOptions(
        state_dir=Path(args.state_dir),
        settings=settings,
        tls_ca=tls_ca,
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
    with RegistryClient(**_registry_conn(args)) as client:
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
    from dataclasses import replace

    from meshactors.envoy.bootstrap import SecureInbound
    from meshactors.envoy.process import start_generic_envoy
    from meshactors.registry.client import RegistryClient

    inst = _instance_from_args(args)
    inbound = _sidecar_inbound(args)
    if inbound is not None:
        inst = replace(inst, port=inbound.listen[1])  # callers reach the app through its sidecar
    secure_port = _sidecar_secure_port(args)
    if secure_port and not args.vip:
        inst = replace(inst, port=0)  # --port is the app's, behind the mTLS listener: not for the registry
    xds, tls_ca = _xds_conn(args)
    listen, admin = _address(args.listen, "--listen"), _address(args.admin, "--admin")
    tracing = _tracing(args, args.vip or args.svip)
    node_id = args.node_id or f"{args.vip or args.svip}-{args.host}-{args.port or args.secure_port}"
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="meshactors-sidecar-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    stop = _stop_on_signals()
    issued = _sidecar_identity(args, work, stop)
    secure_inbound = None
    if secure_port:
        assert issued is not None  # _sidecar_identity refuses an SVIP sidecar without an identity
        secure_inbound = SecureInbound(
            (args.host, secure_port), ("127.0.0.1", args.port), issued.trust_domain, svip=args.svip
        )
    envoy = start_generic_envoy(
        xds, node_id, work, listen, admin, token=args.proxy_token or _token(args, "proxy_token"), tls_ca=tls_ca,
        node_cluster=args.vip or args.svip, stats_flush_s=_stats_flush(args), inbound=inbound, tracing=tracing,
        zone=inst.zone,  # the proxy is where its app is: locality failover prefers that zone's instances
        secure_inbound=secure_inbound,
    )  # fmt: skip
    print(f"envoy running (pid {envoy.proc.pid if envoy.proc else '?'}): apps send http://<vip>/ to "
          f"{listen[0]}:{listen[1]}; admin {admin[0]}:{admin[1]}; log {work / 'envoy.log'}", flush=True)  # fmt: skip
    if inbound is not None:
        print(f"inbound: {inbound.listen[0]}:{inbound.listen[1]} -> app {inbound.app[0]}:{inbound.app[1]}", flush=True)
    if secure_inbound is not None:
        print(f"secure inbound (mTLS): {args.host}:{secure_port} -> app 127.0.0.1:{args.port}", flush=True)
    if tracing is not None:
        print(f"tracing: OTLP to {tracing.collector[0]}:{tracing.collector[1]} as {tracing.service_name!r}, "
              f"sampling {tracing.sampling:g}%", flush=True)  # fmt: skip
    try:
        with RegistryClient(**_registry_conn(args)) as client:
            ref, stored = client.register(inst)
            print(f"registered {ref.vip}/{ref.instance_id} at {stored.host}:{stored.port or stored.secure_port}",
                  flush=True)  # fmt: skip
            _heartbeat_until_stopped(client, inst, ref, args.lease_renewal, stop, alive=envoy.alive)
    finally:
        crashed = not envoy.alive()
        envoy.stop()
        print("envoy stopped", flush=True)
    return 1 if crashed and not stop.is_set() else 0


def _sidecar_secure_port(args: argparse.Namespace) -> int:
    """`sidecar --svip NAME --secure-port P --port APP`: the port of the mTLS listener in front of the app (0: none)."""
    if not args.svip:
        if args.secure_port:
            raise ConfigError("--secure-port: needs --svip NAME (the secure port serves an SVIP)")
        return 0
    if not args.secure_port or not args.port:
        raise ConfigError("--svip: needs --secure-port P (Envoy's mTLS listener, what gets registered) and --port "
                          "APP_PORT (where the app listens on 127.0.0.1)")  # fmt: skip
    if not 1 <= args.secure_port <= 65535:
        raise ConfigError(f"--secure-port: {args.secure_port} is out of range 1-65535")
    if args.secure_port in (args.port, args.inbound_port):
        raise ConfigError("--secure-port: must differ from --port and --inbound-port")
    return int(args.secure_port)


def _sidecar_identity(args: argparse.Namespace, work: Path, stop: threading.Event) -> Any:
    """The sidecar's certificate of its service's identity, when its token is a service token: written under
    `work` for Envoy and renewed by a thread until `stop`. None for another token (the sidecar then cannot call
    SVIPs); an SVIP sidecar refuses to start without one."""
    from meshactors.envoy.sds import IDENTITY_DIR
    from meshactors.identity_agent import IdentityAgent
    from meshactors.registry.cert_client import CertificateClient

    check_s, ttl_s = _bundle_check_s(args), _cert_ttl_s(args)
    client = CertificateClient(**_registry_conn(args))
    agent = IdentityAgent(lambda csr: client.sign(csr, ttl_s), work / IDENTITY_DIR,
                          check=lambda: client.bundle(check_s), check_s=check_s)  # fmt: skip
    try:
        issued = agent.refresh()
    except PermissionDenied as exc:
        client.close()
        if args.svip:
            raise ConfigError(f"--svip: the sidecar of an SVIP needs its service's token (--token, from `meshactors "
                              f"token create --service NAME --vip {args.svip}`): {exc.message}") from exc  # fmt: skip
        print(f"no identity certificate ({exc.message}); calls to SVIPs will fail", file=sys.stderr, flush=True)
        return None
    except MeshError as exc:
        if args.svip:
            client.close()
            raise
        print(f"no identity certificate yet ({exc.message}); retrying in the background", file=sys.stderr, flush=True)
        issued = None
    agent.start(stop)
    if issued is not None:
        print(f"identity {issued.spiffe_id}: certificate in {agent.directory}, renewed at "
              f"{time.strftime('%H:%M:%S', time.localtime(issued.renew_at_s))}", flush=True)  # fmt: skip
    return issued


def _bundle_check_s(args: argparse.Namespace) -> float:
    """--bundle-check-interval in seconds (default the agent's), checked."""
    from meshactors.identity_agent import CHECK_S

    check_s = CHECK_S if args.bundle_check_interval is None else float(args.bundle_check_interval)
    if not 0.5 <= check_s <= 3600:
        raise ConfigError(f"--bundle-check-interval: {check_s:g} is out of range 0.5 .. 3600 seconds")
    return check_s


def _cert_ttl_s(args: argparse.Namespace) -> int:
    """--cert-ttl in seconds (0: the CA's lifetime), checked; the CA also refuses one longer than its own."""
    from meshactors.ca.authority import MAX_LEAF_TTL_S, MIN_LEAF_TTL_S

    ttl_s = int(args.cert_ttl or 0)
    if ttl_s and not MIN_LEAF_TTL_S <= ttl_s <= MAX_LEAF_TTL_S:
        raise ConfigError(f"--cert-ttl: {ttl_s} is out of range {MIN_LEAF_TTL_S} .. {MAX_LEAF_TTL_S} seconds")
    return ttl_s


def _cert_ttl_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cert-ttl", type=int, default=None, metavar="SECONDS", help="ask the CA for identity "
                        "certificates this short-lived (at least 10 s, at most the CA's `up --cert-ttl`; default: "
                        "the CA's); renewed at 50-80 %% of it")  # fmt: skip


def cmd_identity(args: argparse.Namespace) -> int:
    """Keep a proxyless app's identity in --dir (the key made here, the leaf from the CA for the service of --token,
    the mesh's roots), renewed until SIGINT/SIGTERM: the files `bootstrap --grpc --identity-dir` points gRPC at."""
    from meshactors.identity_agent import IdentityAgent
    from meshactors.registry.cert_client import CertificateClient

    if not args.dir:
        raise ConfigError("--dir: must not be empty")
    check_s, ttl_s = _bundle_check_s(args), _cert_ttl_s(args)
    directory = Path(args.dir).expanduser().resolve()
    stop = _stop_on_signals()
    client = CertificateClient(**_registry_conn(args))
    try:
        agent = IdentityAgent(lambda csr: client.sign(csr, ttl_s), directory, check=lambda: client.bundle(check_s),
                              check_s=check_s)  # fmt: skip
        try:
            issued = agent.refresh()
        except PermissionDenied as exc:
            raise ConfigError(f"--token: an identity needs a service token (`meshactors token create --service "
                              f"NAME`): {exc.message}") from exc  # fmt: skip
        print(f"identity {issued.spiffe_id}: {directory}/{{cert,key,bundle}}.pem, renewed at "
              f"{time.strftime('%H:%M:%S', time.localtime(issued.renew_at_s))}", flush=True)  # fmt: skip
        if not args.once:
            agent.run(stop)
    finally:
        client.close()
    return 0


def _sidecar_inbound(args: argparse.Namespace) -> Any:
    """`sidecar --inbound-port Q`: an inbound listener on --host:Q in front of the app on 127.0.0.1:--port, and Q
    is what gets registered (so calls to the VIP pass this sidecar). Plain VIPs only: an SVIP's is --secure-port."""
    from meshactors.envoy.bootstrap import Inbound

    if args.inbound_port is None:
        return None
    if not args.vip or not args.port:
        raise ConfigError("--inbound-port: needs --vip and --port (the app's plain port); an SVIP's listener is "
                          "--secure-port")  # fmt: skip
    if not 1 <= args.inbound_port <= 65535:
        raise ConfigError(f"--inbound-port: {args.inbound_port} is out of range 1-65535")
    if args.inbound_port == args.port:
        raise ConfigError("--inbound-port: must differ from --port (the app listens there)")
    return Inbound(listen=(args.host, args.inbound_port), app=("127.0.0.1", args.port))


def _tracing(args: argparse.Namespace, service_name: str) -> Any:
    """`--tracing-otlp HOST:PORT [--tracing-sampling PERCENT]` as a bootstrap Tracing, or None (tracing off)."""
    from meshactors.envoy.bootstrap import DEFAULT_TRACING_SAMPLING, Tracing

    if not args.tracing_otlp:
        if args.tracing_sampling is not None:
            raise ConfigError("--tracing-sampling: needs --tracing-otlp HOST:PORT (tracing is off without it)")
        return None
    sampling = DEFAULT_TRACING_SAMPLING if args.tracing_sampling is None else args.tracing_sampling
    if not 0 <= sampling <= 100:
        raise ConfigError(f"--tracing-sampling: {sampling:g} is not a percentage (0-100)")
    return Tracing(_address(args.tracing_otlp, "--tracing-otlp"), service_name, sampling)


def _tracing_args(p: argparse.ArgumentParser, service: str) -> None:
    p.add_argument("--tracing-otlp", metavar="HOST:PORT", help="send OpenTelemetry spans of every request to this "
                   f"OTLP gRPC collector, as service {service} (default: no tracing)")  # fmt: skip
    p.add_argument("--tracing-sampling", type=float, metavar="PERCENT", help="with --tracing-otlp: the percentage "
                   "of requests that start a trace here (default 100)")  # fmt: skip


def cmd_deregister(args: argparse.Namespace) -> int:
    from meshactors.model import InstanceRef
    from meshactors.registry.client import RegistryClient

    with RegistryClient(**_registry_conn(args)) as client:
        ref = InstanceRef(args.vip, args.instance_id)
        client.deregister(ref)
        print(f"deregistered {ref}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from meshactors.registry.client import RegistryClient
    from meshactors.v1 import registry_pb2 as pb

    with RegistryClient(**_registry_conn(args)) as client:
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
    with PolicyClient(**_registry_conn(args)) as client:
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

    with PolicyClient(**_registry_conn(args)) as client:
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

    with PolicyClient(**_registry_conn(args)) as client:
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

    with PolicyClient(**_registry_conn(args)) as client:
        revision = client.delete(args.vip)
    print(f"deleted the policy of {args.vip} at revision {revision}")
    return 0


# ---- intentions -------------------------------------------------------------------------------------------------


def cmd_intention_set(args: argparse.Namespace) -> int:
    from meshactors.registry.intention_client import IntentionClient

    with IntentionClient(**_registry_conn(args)) as client:
        resp = client.set(args.source, args.destination, args.intention_command)
    if resp.previous_action == args.intention_command:
        print(f"{args.source} -> {args.destination}: already {args.intention_command} (revision {resp.revision})")
    else:
        was = f" (was {resp.previous_action})" if resp.previous_action else ""
        print(f"{args.source} -> {args.destination}: {args.intention_command}{was} at revision {resp.revision}")
    return 0


def cmd_intention_delete(args: argparse.Namespace) -> int:
    from meshactors.registry.intention_client import IntentionClient

    with IntentionClient(**_registry_conn(args)) as client:
        revision = client.delete(args.source, args.destination)
    print(f"deleted the intention {args.source} -> {args.destination} at revision {revision}")
    return 0


def cmd_intention_default(args: argparse.Namespace) -> int:
    from meshactors.registry.intention_client import IntentionClient

    with IntentionClient(**_registry_conn(args)) as client:
        revision = client.set_default(args.action)
    print(f"mesh default: {args.action} at revision {revision}")
    return 0


def cmd_intention_ls(args: argparse.Namespace) -> int:
    from meshactors.registry.intention_client import IntentionClient

    with IntentionClient(**_registry_conn(args)) as client:
        resp = client.list()
    rows = [{"source": i.source, "destination": i.destination, "action": i.action} for i in resp.intentions]
    if args.json:
        print(json.dumps({"revision": resp.revision, "default": resp.default_action,
                          "default_stored": resp.default_stored, "intentions": rows}, indent=2))  # fmt: skip
        return 0
    print(f"{'SOURCE':<32} {'DESTINATION':<32} ACTION")
    for row in rows:
        print(f"{row['source']:<32} {row['destination']:<32} {row['action']}")
    how = "" if resp.default_stored else " (built in: never set)"
    print(f"{len(rows)} intention(s); mesh default {resp.default_action}{how}; revision {resp.revision}")
    return 0


# ---- tokens -----------------------------------------------------------------------------------------------------


def cmd_token_create(args: argparse.Namespace) -> int:
    from meshactors.registry.token_client import TokenClient

    role = "admin" if args.admin else "proxy" if args.proxy else "service"
    if role == "service" and not args.service:
        raise InvalidArgument("--service", "give --service NAME (with --vip ...), --admin or --proxy")
    if role != "service" and (args.service or args.vip):
        raise InvalidArgument("--service", f"a {role} token names no service or VIPs")
    if args.node and role != "proxy":
        raise InvalidArgument("--node", "only a --proxy token is for a node")
    with TokenClient(**_registry_conn(args)) as client:
        token, info = client.create(
            role, service=args.service or "", vips=args.vip, node=args.node or "", description=args.description
        )
    what = f"service {info.service} ({', '.join(info.vips)})" if role == "service" else role
    print(f"created token {info.id}: {what}; it is shown once, keep it:", file=sys.stderr, flush=True)
    print(token, flush=True)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from meshactors.registry.token_client import TokenClient

    with TokenClient(**_registry_conn(args)) as client:
        revision = client.revoke(args.id)
    print(f"revoked token {args.id} at revision {revision}")
    return 0


def cmd_token_ls(args: argparse.Namespace) -> int:
    from meshactors.registry.token_client import ROLE_NAMES, TokenClient

    with TokenClient(**_registry_conn(args)) as client:
        items = client.list()
    rows = [{"id": t.id, "role": ROLE_NAMES.get(t.role, "?"), "service": t.service, "vips": list(t.vips),
             "node": t.node, "description": t.description, "created_ms": t.created_ms} for t in items]  # fmt: skip
    if args.json:
        print(json.dumps({"tokens": rows}, indent=2))
        return 0
    print(f"{'ID':<17} {'ROLE':<8} {'SERVICE':<20} {'VIPS / NODE':<32} CREATED (UTC)  DESCRIPTION")
    for r in rows:
        names = ",".join(r["vips"]) or r["node"] or "-"
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["created_ms"] / 1000))
        print(f"{r['id']:<17} {r['role']:<8} {r['service'] or '-':<20} {names:<32} {created}  {r['description']}")
    print(f"{len(rows)} token(s)")
    return 0


# ---- ca ---------------------------------------------------------------------------------------------------------

EXPIRING_SHARE = 0.2  # an identity whose leaf has less than this share of its lifetime left missed its renewals


def expiry_state(not_before_ms: int, not_after_ms: int, now_ms: int) -> str:
    """ok, expiring (less than EXPIRING_SHARE of its lifetime left: renewal is due at 50-80 %, so it was missed)
    or expired."""
    if now_ms >= not_after_ms:
        return "expired"
    lifetime = max(1, not_after_ms - not_before_ms)
    return "expiring" if (not_after_ms - now_ms) < EXPIRING_SHARE * lifetime else "ok"


def cmd_ca_show(args: argparse.Namespace) -> int:
    from meshactors.registry.cert_client import CertificateClient

    with CertificateClient(**_registry_conn(args)) as client:
        shown = client.show()
    now = shown.now_ms

    def utc(ms: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))

    roots = [{"serial": r.serial, "fingerprint_sha256": r.fingerprint_sha256, "not_before_ms": r.not_before_ms,
              "not_after_ms": r.not_after_ms, "signing": r.signing} for r in shown.roots]  # fmt: skip
    identities = [{"spiffe_id": i.spiffe_id, "serial": i.serial, "not_before_ms": i.not_before_ms,
                   "not_after_ms": i.not_after_ms, "issued_ms": i.issued_ms, "issuer_serial": i.issuer_serial,
                   "active": i.active, "state": expiry_state(i.not_before_ms, i.not_after_ms, now)}
                  for i in shown.identities]  # fmt: skip
    for i in identities:
        if i["state"] != "ok":
            print(f"warning: {i['spiffe_id']}: its certificate {'expired' if i['state'] == 'expired' else 'expires'}"
                  f" at {utc(i['not_after_ms'])} UTC and was not renewed", file=sys.stderr)  # fmt: skip
    if args.json:
        doc = {"trust_domain": shown.trust_domain, "leaf_ttl_seconds": shown.leaf_ttl_seconds, "now_ms": now,
               "roots": roots, "identities": identities}  # fmt: skip
        print(json.dumps(doc, indent=2))
        return 0
    print(f"trust domain {shown.trust_domain}; leaves live {shown.leaf_ttl_seconds} s")
    print(f"{'ROOT SERIAL':<42} {'NOT AFTER (UTC)':<20} {'SIGNING':<8} SHA-256")
    for r in roots:
        print(f"{r['serial']:<42} {utc(r['not_after_ms']):<20} {'yes' if r['signing'] else 'no':<8} "
              f"{r['fingerprint_sha256']}")  # fmt: skip
    print(f"{'IDENTITY':<48} {'NOT AFTER (UTC)':<20} {'STATE':<9} ISSUED (UTC)")
    for i in identities:
        print(f"{i['spiffe_id']:<48} {utc(i['not_after_ms']):<20} {i['state']:<9} {utc(i['issued_ms'])}")
    print(f"{len(roots)} root(s), {len(identities)} identit{'y' if len(identities) == 1 else 'ies'}")
    return 0


def cmd_ca_rotate(args: argparse.Namespace) -> int:
    """A root rotation, step by step (`--step`), or every step left in order, each after the previous one reached
    every identity on record: stage -> every identity renewed (it trusts both roots) -> activate -> every identity
    renewed onto the new root -> finish. Interrupted or timed out, running it again resumes where it stopped."""
    from meshactors.ca.rotation import STEPS, next_step
    from meshactors.registry.cert_client import CertificateClient

    if args.phase_wait < 0 or args.timeout <= 0:
        raise ConfigError("--phase-wait must be >= 0 and --timeout > 0 seconds")
    with CertificateClient(**_registry_conn(args)) as client:
        shown = client.show()
        serials = tuple(r.serial for r in shown.roots)
        signing = next((r.serial for r in shown.roots if r.signing), "")
        todo = [args.step] if args.step else list(STEPS[STEPS.index(next_step(serials, signing)) :])
        for i, step in enumerate(todo):
            done = client.rotate(step, force=args.force)
            roots = ", ".join(f"{r.serial[:12]}{' (signs)' if r.signing else ''}" for r in done.roots)
            print(f"ca rotate: {step} done; roots {roots}", flush=True)
            if i == len(todo) - 1 or step == "finish":
                break
            _wait_for_renewals(client, step, done.now_ms, done.signing_serial, args.phase_wait, args.timeout)
    last = todo[-1]
    print("ca rotate: done, the bundle holds only the new root" if last == "finish" else
          f"ca rotate: next step: {STEPS[STEPS.index(last) + 1]}", flush=True)  # fmt: skip
    return 0


def _wait_for_renewals(client: Any, step: str, since_ms: int, signing: str, phase_wait: float, timeout: float) -> None:
    """After `step`: at least `phase_wait` s (sidecars check every 10 s by default), and until every active identity
    on record with a valid leaf renewed since (after stage) or holds a leaf of `signing` (after activate). An
    identity that asked the CA nothing for three of its check intervals has no running sidecar and holds nothing
    up."""
    from meshactors.ca.rotation import HeldLeaf, left_on_old_roots

    start = time.monotonic()
    last_line = 0.0
    while True:
        shown = client.show()
        valid = [i for i in shown.identities if i.not_after_ms > shown.now_ms and i.active]
        if step == "stage":
            waiting = sorted(i.spiffe_id for i in valid if i.issued_ms < since_ms)
        else:
            held = [HeldLeaf(i.spiffe_id, i.issuer_serial, i.not_after_ms) for i in valid]
            waiting = left_on_old_roots(held, signing, shown.now_ms)
        elapsed = time.monotonic() - start
        if not waiting and elapsed >= phase_wait:
            return
        if elapsed > timeout:
            raise Unavailable(f"after {step}, {len(waiting)} identities had not renewed within {timeout:g} s "
                              f"({', '.join(waiting[:5])}); `meshactors ca rotate` again resumes")  # fmt: skip
        if time.monotonic() - last_line >= 2.0:
            last_line = time.monotonic()
            print(f"ca rotate: after {step}, {len(valid) - len(waiting)} of {len(valid)} identities renewed "
                  f"({elapsed:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        time.sleep(0.5)


# ---- status -----------------------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    info = _mesh(args, {"ray_address": args.ray_address, "namespace": args.namespace}, ("ray_address", "registry"))
    _require_admin(args, str(info["registry"]), _tls_ca(args, info))
    _ray_auth_env(info)  # before Ray is imported (by the runtime): it reads the auth mode once
    from meshactors.runtime.ops import driver
    from meshactors.runtime.status import actor_status, format_table, to_json

    address = info["ray_address"]
    namespace = info.get("namespace") or defaults.NAMESPACE
    with driver(address, namespace):
        rows = actor_status(namespace)
    ca = _ca_summary(str(info["registry"]), _token(args), _tls_ca(args, info))
    policies = _status_policies(str(info["registry"]), _token(args), _tls_ca(args, info))
    if args.json:
        doc = {"namespace": namespace, "ray_address": address, "actors": rows, "ca": ca, "policies": policies}
        print(json.dumps(to_json(doc), indent=2))
        return 0
    print(format_table(rows))
    if "error" in ca:
        print(f"ca: not answering ({ca['error']})")
    else:
        soonest = ca["soonest"]
        when = f"; soonest expiry {soonest['not_after']} UTC ({soonest['spiffe_id']})" if soonest else ""
        print(
            f"ca: {ca['identities']} identit{'y' if ca['identities'] == 1 else 'ies'}{when}; "
            f"{len(ca['expiring'])} expiring, {len(ca['expired'])} expired (details: meshactors ca show)"
        )
    if "error" in policies:
        print(f"policies: not answering ({policies['error']})")
    else:
        shown = policies["problems"][:STATUS_POLICY_PROBLEMS]
        print(f"policies: {policies['documents']} document{'' if policies['documents'] == 1 else 's'}, "
              f"{policies['problem_count']} problem{'' if policies['problem_count'] == 1 else 's'}"
              f"{' (details: meshactors policy get VIP)' if shown else ''}")  # fmt: skip
        for p in shown:
            print(f"  {p['vip']}: {p['field']}: {p['reason']}")
        if policies["problem_count"] > len(shown):
            print(f"  ... and {policies['problem_count'] - len(shown)} more (status --json)")
    return 0


STATUS_POLICY_PROBLEMS = 20  # problems `status` prints; --json has them all


def _status_policies(registry: str, token: str, tls_ca: str | None) -> dict[str, Any]:
    """What `status` says about traffic policies: how many documents, and their problems against the instances
    registered now (a split or route naming a version no UP instance has). Not answering is said, not an error."""
    from meshactors.registry.policy_client import PolicyClient

    try:
        with PolicyClient(registry, token=token, tls_ca=tls_ca, timeout_s=5) as client:
            documents, problems = client.problems()
    except MeshError as exc:
        return {"error": exc.message[:300]}
    rows = [{"vip": p.vip, "field": p.field, "reason": p.reason} for p in problems]
    return {"documents": documents, "problem_count": len(rows), "problems": rows}


def _ca_summary(registry: str, token: str, tls_ca: str | None) -> dict[str, Any]:
    """What `status` says about certificates: how many identities, the soonest expiry, and the identities that
    missed their renewals (each also a warning on stderr). The CA not answering is said, not an error."""
    from meshactors.registry.cert_client import CertificateClient

    try:
        with CertificateClient(registry, token=token, tls_ca=tls_ca, timeout_s=5) as client:
            shown = client.show()
    except MeshError as exc:
        return {"error": exc.message[:300]}
    states = {i.spiffe_id: expiry_state(i.not_before_ms, i.not_after_ms, shown.now_ms) for i in shown.identities}
    for spiffe_id, state in states.items():
        if state != "ok":
            print(f"warning: {spiffe_id}: its certificate {'expired' if state == 'expired' else 'expires soon'} and "
                  "was not renewed (meshactors ca show)", file=sys.stderr)  # fmt: skip
    first = shown.identities[0] if shown.identities else None  # the CA lists the soonest expiry first
    soonest = None
    if first is not None:
        soonest = {"spiffe_id": first.spiffe_id, "not_after_ms": first.not_after_ms,
                   "not_after": time.strftime("%Y-%m-%d %H:%M", time.gmtime(first.not_after_ms / 1000))}  # fmt: skip
    return {
        "identities": len(shown.identities), "soonest": soonest,
        "expiring": sorted(k for k, v in states.items() if v == "expiring"),
        "expired": sorted(k for k, v in states.items() if v == "expired"),
    }  # fmt: skip


def cmd_proxy_status(args: argparse.Namespace) -> int:
    info = _mesh(args, {"ray_address": args.ray_address, "namespace": args.namespace}, ("ray_address", "registry"))
    _require_admin(args, str(info["registry"]), _tls_ca(args, info))
    _ray_auth_env(info)
    from meshactors.runtime import status
    from meshactors.runtime.ops import driver

    address = info["ray_address"]
    namespace = info.get("namespace") or defaults.NAMESPACE
    if args.envoy_admin and not args.node:
        raise InvalidArgument("--envoy-admin", "shows one proxy's Envoy: give its NODE id too")
    if not args.node:
        with driver(address, namespace):
            rows = status.proxy_status(namespace)
        if args.json:
            print(json.dumps(status.to_json({"namespace": namespace, "sessions": rows}), indent=2))
            return 0
        print(status.format_proxy_status(rows))
        return 0
    from meshactors.envoy import config_dump

    dump = config_dump.fetch(args.envoy_admin) if args.envoy_admin else None
    with driver(address, namespace):
        sessions = status.node_status(namespace, args.node)
    status.add_proxy_view(sessions, config_dump.held_resources(dump) if dump is not None else None)
    if args.json:
        out = {"namespace": namespace, "node_id": args.node, "sessions": sessions}
        print(json.dumps(status.to_json(out), indent=2))
        return 0
    print(status.format_node_status(sessions))
    return 0


# ---- prometheus-config --------------------------------------------------------------------------------------------


def cmd_prometheus_config(args: argparse.Namespace) -> int:
    from meshactors.telemetry.scrape import render

    info = discovery.find(args.state_dir, args.ready_file)
    token_file = args.token_file or ""
    if not token_file and info.get("state_dir"):  # the embedded default's proxy token: enough to scrape
        kept = Path(info["state_dir"]) / "proxy-token"
        token_file = str(kept) if kept.exists() else ""
    if not token_file:
        raise ConfigError("--token-file: give a file holding an API token (`meshactors token create --proxy`)")
    print(render(info.get("metrics") or {}, args.scrape_interval, args.job, str(Path(token_file).resolve())), end="")
    return 0


# ---- top: golden signals per VIP ------------------------------------------------------------------------------


def cmd_top(args: argparse.Namespace) -> int:
    """Worst VIPs first (error %, then p99), from every xDS server's aggregate; refreshes like `top` on a terminal."""
    if args.interval <= 0:
        raise ConfigError(f"--interval: {args.interval:g} s must be positive")
    info = _mesh(args, {"ray_address": args.ray_address, "namespace": args.namespace}, ("ray_address", "registry"))
    _require_admin(args, str(info["registry"]), _tls_ca(args, info))
    _ray_auth_env(info)
    from meshactors.runtime.ops import driver
    from meshactors.runtime.status import golden_signals
    from meshactors.telemetry.golden import format_top

    namespace = info.get("namespace") or defaults.NAMESPACE
    live = not (args.once or args.json) and sys.stdout.isatty()
    with driver(info["ray_address"], namespace):
        while True:
            table = golden_signals(namespace)
            if args.vip:
                table = [r for r in table if r["vip"] == args.vip]
            if args.json:
                print(json.dumps({"namespace": namespace, "vips": table}, indent=2))
                return 0
            text = format_top(table)
            if not live:
                print(text)
                return 0
            title = f"{time.strftime('%H:%M:%S')}  meshactors top  (every {args.interval:g} s, Ctrl-C quits)"
            sys.stdout.write(f"\x1b[H\x1b[2J{title}\n\n{text}\n")
            sys.stdout.flush()
            time.sleep(args.interval)


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


def _xds_conn(args: argparse.Namespace) -> tuple[list[tuple[str, int]], str | None]:
    """The xDS servers' addresses (--xds, else the ready file's) and the CA to verify their TLS with."""
    info = _mesh(args, {"xds": args.xds}, ("xds",))
    spec = args.xds or ",".join(info.get("xds") or [])
    if not spec:
        raise ConfigError("--xds HOST:PORT[,HOST:PORT...] is required (the ready file names no xDS server)")
    return [_address(part, "--xds") for part in spec.split(",") if part.strip()], _tls_ca(args, info)


def bootstrap_text(args: argparse.Namespace) -> str:
    import yaml

    from meshactors.envoy.bootstrap import envoy_bootstrap, grpc_bootstrap

    xds, tls_ca = _xds_conn(args)
    token = _token(args, "proxy_token")
    identity_dir = getattr(args, "identity_dir", None)
    if args.grpc:
        zone = getattr(args, "zone", None)
        locality = {"zone": zone} if zone else None
        if identity_dir is not None:
            if not identity_dir:
                raise ConfigError("--identity-dir: must not be empty")
            identity_dir = str(Path(identity_dir).expanduser().resolve())
        doc = grpc_bootstrap(xds, args.node_id, locality=locality, token=token, tls_ca=tls_ca,
                             identity_dir=identity_dir)  # fmt: skip
        return json.dumps(doc, indent=2) + "\n"
    if identity_dir is not None:
        raise ConfigError("--identity-dir: only with --grpc (a sidecar's Envoy gets its identity from `sidecar`)")
    if args.tracing_service is not None and not args.tracing_otlp:
        raise ConfigError("--tracing-service: needs --tracing-otlp HOST:PORT (tracing is off without it)")
    doc = envoy_bootstrap(
        xds, args.node_id, listen=_address(args.listen, "--listen"), admin=_address(args.admin, "--admin"),
        token=token, tls_ca=tls_ca, stats_flush_s=_stats_flush(args),
        tracing=_tracing(args, args.tracing_service or args.node_id), zone=args.zone or "",
        **({"node_cluster": args.node_cluster} if args.node_cluster else {}),
    )  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False)


def _stats_flush(args: argparse.Namespace) -> float | None:
    """--stats-flush-interval in seconds (0: no metrics sink), checked."""
    value = float(args.stats_flush_interval)
    if value < 0 or value > 3600:
        raise ConfigError(f"--stats-flush-interval: {value:g} s is outside 0-3600 (0 turns the metrics sink off)")
    return value or None


def _golden_flags(p: argparse.ArgumentParser) -> None:
    from meshactors.envoy.bootstrap import DEFAULT_STATS_FLUSH_S

    p.add_argument("--stats-flush-interval", type=float, default=DEFAULT_STATS_FLUSH_S, metavar="SECONDS",
                   help="send the golden signals (requests, errors, latency per VIP) to the control plane this "
                   f"often (default {DEFAULT_STATS_FLUSH_S:g} s; 0: no metrics sink, no stats inclusion "
                   "list)")  # fmt: skip


def cmd_bootstrap(args: argparse.Namespace) -> int:
    sys.stdout.write(bootstrap_text(args))
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    given: dict[str, Any] = {"registry": args.registry, "etcd": _etcd_spec(args), "ray_address": args.ray_address,
                             "namespace": args.namespace}  # fmt: skip
    if args.xds:
        given["xds"] = [a.strip() for a in args.xds.split(",") if a.strip()]
    info = _mesh(args, given, ("registry", "xds", "etcd", "ray_address"))
    tls_ca = _tls_ca(args, info)
    _require_admin(args, str(info["registry"]), tls_ca)
    info = {**info, "tls": tls_ca is not None, "tls_ca": tls_ca or ""}
    info["token"] = _token(args)
    info["proxy_token"] = _token(args, "proxy_token")
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
            progress=lambda text: print(f"chaos: {text}", file=sys.stderr, flush=True),
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


def _etcd_tls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etcd-ca", metavar="FILE", help="CA (PEM) that signed the https:// etcd's certificate")
    p.add_argument("--etcd-cert", metavar="FILE", help="client certificate (PEM) for an etcd that asks for one")
    p.add_argument("--etcd-key", metavar="FILE", help="the client certificate's private key (PEM)")


def _etcd_spec(args: argparse.Namespace) -> str:
    """--etcd with the --etcd-ca/--etcd-cert/--etcd-key files folded in: one spec every component reads."""
    from meshactors.store.etcdspec import with_tls_files

    return with_tls_files(args.etcd or "", args.etcd_ca or "", args.etcd_cert or "", args.etcd_key or "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshactors", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Subcommand)

    up = sub.add_parser(
        "up",
        help="run the whole control plane on this machine (embedded etcd + local Ray)",
        late_arguments=_add_up_flags,
    )
    up.add_argument(
        "--etcd",
        help="use this etcd instead of starting one: comma-separated URLs; http://USER:PASSWORD@HOST:PORT for etcd "
        "auth, https:// for TLS (with --etcd-ca ...)",
    )
    _etcd_tls_args(up)
    up.add_argument(
        "--etcd-port", metavar="PORT", help="client port of the embedded etcd (default: last run's, else a free one)"
    )
    up.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    up.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"where the embedded etcd keeps its data, the "
                    f"ready file (ready.json) and the logs (logs/) go (default {DEFAULT_STATE_DIR})")  # fmt: skip
    up.add_argument("--ready-file", help="also write the ready file (JSON: the addresses) here once everything answers")
    up.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="with --tls-cert: the CA (PEM) that signed it, which the ready file tells clients to trust "
        "(default: the --tls-cert file itself)",
    )
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
    car.add_argument("--proxy-token", help="the token Envoy sends on its ADS stream (default: --token's, else the "
                     "ready file's proxy token)")  # fmt: skip
    _golden_flags(car)
    car.add_argument("--inbound-port", type=int, metavar="PORT", help="with --vip/--port: Envoy listens on "
                     "--host:PORT in front of the app (on 127.0.0.1:--port) and PORT is registered, so calls to the "
                     "VIP pass this sidecar too (default: --port is registered, no inbound listener); with --svip "
                     "--secure-port P --port APP, Envoy terminates mTLS on --host:P in front of the app and P is "
                     "registered")  # fmt: skip
    _tracing_args(car, "<vip> (or <svip>)")
    car.add_argument("--bundle-check-interval", type=float, default=None, metavar="SECONDS", help="how often the "
                     "identity agent asks the CA whether its roots moved (a rotation step), renewing at once if they "
                     "did (default 10; 0.5 .. 3600)")  # fmt: skip
    _cert_ttl_arg(car)
    car.set_defaults(func=cmd_sidecar)

    ident = sub.add_parser("identity", help="keep a proxyless app's certificate, key and trust bundle in a directory "
                           "(for `bootstrap --grpc --identity-dir`), renewed until stopped")  # fmt: skip
    _registry_args(ident)
    ident.add_argument("--dir", required=True, help="where cert.pem, key.pem and bundle.pem go (made 0700)")
    ident.add_argument("--once", action="store_true", help="write the files once and exit (no renewal)")
    ident.add_argument("--bundle-check-interval", type=float, default=None, metavar="SECONDS", help="how often to "
                       "ask the CA whether its roots moved, renewing at once if they did (default 10; 0.5 .. "
                       "3600)")  # fmt: skip
    _cert_ttl_arg(ident)
    ident.set_defaults(func=cmd_identity)

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
    _tls_args(bs)
    _where_args(bs)
    bs.add_argument("--node-id", required=True, help="this proxy's node id (the only per-proxy setting)")
    bs.add_argument("--listen", default=defaults.ENVOY_LISTEN, help="outbound listener apps send HTTP to")
    bs.add_argument(
        "--admin", default=defaults.ENVOY_ADMIN, help=f"Envoy admin address (default {defaults.ENVOY_ADMIN})"
    )
    bs.add_argument("--grpc", action="store_true", help="print a GRPC_XDS_BOOTSTRAP file for proxyless gRPC")
    bs.add_argument("--identity-dir", metavar="DIR", help="with --grpc: the directory `meshactors identity --dir` "
                    "keeps (certificate_providers over its PEM files, and the server listener template), for SVIP "
                    "mTLS and xDS-enabled servers")  # fmt: skip
    bs.add_argument("--zone", help="the proxy's or gRPC client's zone (node.locality.zone; locality failover "
                    "prefers instances there; default: unknown)")  # fmt: skip
    bs.add_argument("--node-cluster", help="node.cluster: the VIP of the app this proxy serves, named as the caller "
                    "in the golden signals (default: meshactors, shown as caller \"unknown\")")  # fmt: skip
    _golden_flags(bs)
    _tracing_args(bs, "--tracing-service (default: the node id)")
    bs.add_argument("--tracing-service", help="with --tracing-otlp: the service name on its spans (default: the "
                    "node id)")  # fmt: skip
    bs.set_defaults(func=cmd_bootstrap)

    demo = sub.add_parser("demo", help="show the whole story on the embedded default in under a minute")
    demo.add_argument("--keep-dir", help="keep logs and state here instead of a temp dir (its own state dir)")
    demo.set_defaults(func=cmd_demo)

    ch = sub.add_parser("chaos", help="kill actors (and etcd) under load through a real Envoy; report the damage")
    _where_args(ch)
    _tls_args(ch)
    ch.add_argument("--registry", help="registry API host:port (instead of the ready file)")
    ch.add_argument("--xds", help="xDS servers HOST:PORT[,...] (instead of the ready file)")
    ch.add_argument("--etcd", help="etcd URL(s) (instead of the ready file), as for `up --etcd`")
    _etcd_tls_args(ch)
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

    inten = sub.add_parser("intention", help="who may call whom: allow/deny a source service to call a VIP/SVIP")
    isub = inten.add_subparsers(dest="intention_command", required=True)
    for action in ("allow", "deny"):
        ia = isub.add_parser(action, help=f"{action} calls from --from (a service, or '*': any) to --to (a VIP/SVIP)")
        _registry_args(ia)
        ia.add_argument("--from", dest="source", required=True, help="the calling service's name, or '*'")
        ia.add_argument("--to", dest="destination", required=True, help="the destination VIP/SVIP")
        ia.set_defaults(func=cmd_intention_set)
    idl = isub.add_parser("delete", help="delete the intention from --from to --to (the fallback applies again)")
    _registry_args(idl)
    idl.add_argument("--from", dest="source", required=True, help="the calling service's name, or '*'")
    idl.add_argument("--to", dest="destination", required=True, help="the destination VIP/SVIP")
    idl.set_defaults(func=cmd_intention_delete)
    ils = isub.add_parser("ls", help="list the intentions and the mesh default")
    _registry_args(ils)
    ils.add_argument("--json", action="store_true")
    ils.set_defaults(func=cmd_intention_ls)
    idf = isub.add_parser("default", help="set the mesh default for callers no intention names (admin)")
    _registry_args(idf)
    idf.add_argument("action", choices=["allow", "deny"])
    idf.set_defaults(func=cmd_intention_default)

    tok = sub.add_parser("token", help="API tokens: create (printed once), revoke, list (admin only)")
    tsub = tok.add_subparsers(dest="token_command", required=True)
    tc = tsub.add_parser("create", help="create a token; prints it alone on the last line")
    _registry_args(tc)
    kind = tc.add_mutually_exclusive_group()
    kind.add_argument("--admin", action="store_true", help="everything: tokens, policies, operator commands")
    kind.add_argument("--proxy", action="store_true", help="discovery only (xDS, registry reads)")
    tc.add_argument("--service", help="a service token: registers instances under its VIPs")
    tc.add_argument("--vip", action="append", default=[], help="a VIP/SVIP the service owns (repeat; default: "
                    "the service's name)")  # fmt: skip
    tc.add_argument("--node", help="with --proxy: the one node id it may discover for")
    tc.add_argument("--description", default="", help="a note shown by `token ls`")
    tc.set_defaults(func=cmd_token_create)
    tr = tsub.add_parser("revoke", help="revoke a token by its id (from `token ls`)")
    _registry_args(tr)
    tr.add_argument("id")
    tr.set_defaults(func=cmd_token_revoke)
    tl = tsub.add_parser("ls", help="list tokens (never their secrets)")
    _registry_args(tl)
    tl.add_argument("--json", action="store_true")
    tl.set_defaults(func=cmd_token_ls)

    ca = sub.add_parser("ca", help="the mesh CA: its roots and every identity's certificate expiry (admin only)")
    casub = ca.add_subparsers(dest="ca_command", required=True)
    cs = casub.add_parser("show", help="the roots (which one signs) and each identity's last certificate, with a "
                          "warning for one that expired or missed its renewal")  # fmt: skip
    _registry_args(cs)
    cs.add_argument("--json", action="store_true")
    cs.set_defaults(func=cmd_ca_show)
    cr = casub.add_parser("rotate", help="rotate the root: stage a new one, let it sign, drop the old one, each step "
                          "once every identity renewed after the previous one (running it again resumes)")  # fmt: skip
    _registry_args(cr)
    cr.add_argument("--step", choices=["stage", "activate", "finish"], help="run only this step")
    cr.add_argument(
        "--phase-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait at least this long "
        "between steps, for sidecars to check the CA (they do every 10 s by default; default 30)",
    )
    cr.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="give up waiting for renewals "
                    "after this long (the rotation stays where it is, safe; default 600)")  # fmt: skip
    cr.add_argument("--force", action="store_true", help="finish even if a valid leaf of the old root is on record")
    cr.set_defaults(func=cmd_ca_rotate)

    st = sub.add_parser("status", help="list the control plane's actors with their states and restart counts")
    _where_args(st)
    _tls_args(st)
    st.add_argument("--ray-address", help="Ray cluster address (instead of the ready file)")
    st.add_argument("--namespace", help="Ray namespace of the actors (instead of the ready file)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    ps = sub.add_parser(
        "proxy-status",
        help="every connected proxy: its xDS server and sync status per type URL; with NODE, per resource what was "
        "sent next to what the proxy holds",
    )
    ps.add_argument("node", nargs="?", help="one proxy's node id: per resource, what was sent and what it holds")
    ps.add_argument(
        "--envoy-admin",
        metavar="HOST:PORT",
        help="that proxy's Envoy admin address: show what its /config_dump holds (else what the proxy ACKed)",
    )
    _where_args(ps)
    _tls_args(ps)
    ps.add_argument("--ray-address", help="Ray cluster address (instead of the ready file)")
    ps.add_argument("--namespace", help="Ray namespace of the actors (instead of the ready file)")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_proxy_status)

    pc = sub.add_parser("prometheus-config", help="print a prometheus.yml scraping every actor's /metrics")
    pc.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                    help=f"the state dir of the `meshactors up` to use (default {DEFAULT_STATE_DIR})")  # fmt: skip
    pc.add_argument("--ready-file", help="read the metrics URLs from this ready file (instead of the state dir's)")
    pc.add_argument("--scrape-interval", default="15s", help="Prometheus' scrape interval (default 15s)")
    pc.add_argument("--job", default="meshactors", help="the scrape job's name (default meshactors)")
    pc.add_argument("--token-file", help="a file holding the API token Prometheus sends (default: the state dir's "
                    "proxy-token)")  # fmt: skip
    pc.set_defaults(func=cmd_prometheus_config)

    top = sub.add_parser("top", help="golden signals per VIP (RPS, error %, p50/p95/p99), worst first, refreshing")
    _where_args(top)
    _tls_args(top)
    top.add_argument("--ray-address", help="Ray cluster address (instead of the ready file)")
    top.add_argument("--namespace", help="Ray namespace of the actors (instead of the ready file)")
    top.add_argument("--vip", help="only this destination VIP")
    top.add_argument("--once", action="store_true", help="print the table once (also when stdout is no terminal)")
    top.add_argument("--json", action="store_true", help="print the rows once as JSON")
    top.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="refresh period (default 2 s)")
    top.set_defaults(func=cmd_top)

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


def _tls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", metavar="FILE", help="verify the control plane's TLS certificate with this CA (PEM; "
                   "default: $MESHACTORS_TLS_CA, else the ready file's when TLS is on; none: plaintext)")  # fmt: skip


def _where_args(p: argparse.ArgumentParser) -> None:
    """How a command finds the running mesh when no address is given."""
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help=f"the state dir of the `meshactors up` to use (default {DEFAULT_STATE_DIR})")  # fmt: skip
    p.add_argument("--ready-file", help="read the addresses from this ready file (instead of the state dir's)")
    p.add_argument("--token", help="the API token to send (default: $MESHACTORS_TOKEN, else the ready file's)")


def _instance_args(reg: argparse.ArgumentParser, host_default: str | None = None) -> None:
    _registry_args(reg)
    reg.add_argument("--vip", help="plain-traffic name, e.g. myservice")
    reg.add_argument("--svip", help="mTLS name, e.g. myservice-secure")
    reg.add_argument("--host", required=host_default is None, default=host_default, help="the app's address")
    reg.add_argument("--port", type=int, help="plain port (with --vip)")
    reg.add_argument("--secure-port", type=int, help="mTLS port (with --svip)")
    reg.add_argument("--app", help="application name (default: the VIP)")
    reg.add_argument("--instance-id", help="instance id (default: host:port)")
    reg.add_argument("--zone", default="default", help="the instance's zone (default: default); a sidecar's Envoy "
                     "is in it too (node.locality.zone, what locality failover prefers)")  # fmt: skip
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
    _tls_args(p)
    _where_args(p)


def _command(args: argparse.Namespace) -> str:
    sub = (
        getattr(args, "policy_command", None)
        or getattr(args, "token_command", None)
        or getattr(args, "intention_command", None)
    )
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
