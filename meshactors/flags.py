"""The `meshactors up` flags: one table from each flag to the MeshSettings field it sets, with unit and check.

Every default shown and used comes from the settings records themselves (MeshSettings and the shard, builder and
xDS host records it holds, whose defaults come from meshactors.defaults or their own dataclasses), so a default is
written once. Values are converted and checked here, after argparse: a bad one is a ConfigError naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshactors import cluster_auth, defaults
from meshactors.ca.authority import MAX_LEAF_TTL_S, MIN_LEAF_TTL_S
from meshactors.ca.identity import validate_trust_domain
from meshactors.errors import ConfigError, InvalidArgument
from meshactors.settings import MeshSettings
from meshactors.store.keys import KeySchema
from meshactors.tlsconfig import absolute

Check = Callable[[Any], str | None]  # a problem with the value, or None


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number from 0 to 65535"


def fraction(v: float) -> str | None:
    return None if 0 <= v <= 1 else "must be a fraction from 0 to 1"


def non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def key_prefix(v: str) -> str | None:
    try:
        KeySchema(v)
    except ConfigError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class Flag:
    """One `up` flag. `paths` are dotted MeshSettings fields (e.g. "xds.limits.max_names_per_type"); the value given
    times `scale` is stored in each. A bool flag is a switch: given, it stores the opposite of the default."""

    flag: str
    paths: tuple[str, ...]
    kind: type
    help: str
    unit: str = ""
    scale: float = 1.0
    check: Check | None = None
    group: str = "deployment"
    note: str = ""  # said after the default, e.g. what 0 means
    metavar: str = ""
    own_default: Any = None  # for a flag that sets no field as given (no paths): its default

    @property
    def dest(self) -> str:
        return "up_" + self.flag.removeprefix("--").replace("-", "_")

    @property
    def default(self) -> Any:
        """The flag's default, in the flag's unit, read from the settings records."""
        value = field_default(self.paths[0]) if self.paths else self.own_default
        if self.kind is bool or self.scale == 1.0:
            return value
        return round(value / self.scale, 9)

    def help_text(self) -> str:
        if self.kind is bool:
            return self.help
        note = f"; {self.note}" if self.note else ""
        if self.kind is str:
            return f"{self.help} (default {self.default if self.default != '' else 'none'}{note})"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.help} (default {self.default:g}{unit}{note})"

    def convert(self, raw: Any) -> Any:
        """The value of the flag as given on the command line (`raw` is None when it was not)."""
        if self.kind is bool:
            return (not self.default) if raw else self.default
        if raw is None:
            return self.default
        try:
            value = self.kind(raw)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(self.kind, "a value")
            raise ConfigError(f"{self.flag}: {raw!r} is not {kind}") from None
        problem = self.check(value) if self.check is not None else None
        if problem:
            raise ConfigError(f"{self.flag}: {problem} (got {raw})")
        return value


_BASE = MeshSettings(etcd="")


def field_default(path: str) -> Any:
    obj: Any = _BASE
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _replace(obj: Any, path: list[str], value: Any) -> Any:
    head, *rest = path
    return dataclasses.replace(obj, **{head: _replace(getattr(obj, head), rest, value) if rest else value})


_SHARD, _BUILDER, _XDS = "registry shards", "snapshot builders", "xDS servers"
_TLS = "transport security"
_CA = "mesh CA (SVIP mTLS)"


def trust_domain(v: str) -> str | None:
    try:
        validate_trust_domain(v)
    except InvalidArgument as exc:
        return exc.reason
    return None


def leaf_ttl(v: int) -> str | None:
    return None if MIN_LEAF_TTL_S <= v <= MAX_LEAF_TTL_S else f"must be {MIN_LEAF_TTL_S}-{MAX_LEAF_TTL_S} seconds"


UP_FLAGS: tuple[Flag, ...] = (
    Flag("--namespace", ("namespace",), str, "Ray namespace of the actors", check=non_empty, metavar="NAME"),
    Flag("--key-prefix", ("key_prefix",), str, "etcd key prefix", check=key_prefix, metavar="PREFIX"),
    Flag(
        "--host",
        ("registry_host", "xds_host"),
        str,
        "address the control plane's servers listen on",
        check=non_empty,
        metavar="HOST",
    ),
    Flag(
        "--tls-cert",
        ("tls_cert",),
        str,
        "PEM certificate (chain) the registry, Eureka and xDS APIs serve TLS with, on any host; a file every "
        "node that runs them can read",
        group=_TLS,
        note="plaintext, allowed only on a loopback --host",
        metavar="FILE",
    ),
    Flag(
        "--tls-key",
        ("tls_key",),
        str,
        "PEM private key of --tls-cert (unencrypted; keep it 0600)",
        group=_TLS,
        metavar="FILE",
    ),
    Flag(
        "--insecure",
        ("insecure",),
        bool,
        "allow a non-loopback --host without --tls-cert: the APIs then serve plaintext to the network (a warning)",
        group=_TLS,
    ),
    Flag(
        "--trust-domain",
        ("trust_domain", "builder.trust_domain"),
        str,
        "the mesh CA's trust domain: every workload identity is spiffe://<it>/svc/<service>",
        check=trust_domain,
        group=_CA,
        metavar="NAME",
    ),
    Flag(
        "--cert-ttl",
        ("cert_ttl_s",),
        int,
        "lifetime of the workload certificates the mesh CA issues (renewed at 50-80 % of it)",
        unit="s",
        check=leaf_ttl,
        group=_CA,
        metavar="SECONDS",
    ),
    Flag(
        "--ca-key-file",
        ("ca_key_file",),
        str,
        "0600 file with the key the CA root's private key is sealed with in etcd; a file every node running "
        "the registry API can read (created there if missing)",
        group=_CA,
        note="<state dir>/ca.key",
        metavar="FILE",
    ),
    Flag(
        "--registry-port",
        ("registry_port",),
        int,
        "registry gRPC API port",
        check=port,
        note="0: a free one",
        metavar="PORT",
    ),
    Flag(
        "--eureka-port",
        ("eureka_port",),
        int,
        "Eureka-compatible REST API port",
        check=port,
        note="0: a free one",
        metavar="PORT",
    ),
    Flag(
        "--dashboard-port",
        ("dashboard_port",),
        int,
        "mesh dashboard (HTTP) port",
        check=port,
        note="0: a free one",
        metavar="PORT",
    ),
    Flag("--shards", ("shards",), int, "number of registry shard actors", check=at_least(1), group=_SHARD),
    Flag(
        "--shard-sweep-interval-s",
        ("shard.sweep_interval_s",),
        float,
        "how often a shard looks for expired leases",
        unit="s",
        check=positive,
        group=_SHARD,
    ),
    Flag(
        "--shard-ready-wait-s",
        ("shard.ready_wait_s",),
        float,
        "how long a call waits for a restarting shard to load",
        unit="s",
        check=at_least(0),
        group=_SHARD,
    ),
    Flag(
        "--shard-etcd-retry-s",
        ("shard.etcd_retry_s",),
        float,
        "how long a shard retries an etcd write that failed as unavailable (an etcd member failover)",
        unit="s",
        check=at_least(0),
        group=_SHARD,
    ),
    Flag(
        "--self-preservation-ratio",
        ("shard.policy.ratio",),
        float,
        "stop expiring leases when more than this fraction of a shard's instances are late at once",
        check=fraction,
        group=_SHARD,
    ),
    Flag(
        "--self-preservation-min-instances",
        ("shard.policy.min_instances",),
        int,
        "below this many instances in a shard self-preservation stays off",
        unit="instances",
        check=at_least(0),
        group=_SHARD,
    ),
    Flag(
        "--no-self-preservation",
        ("shard.policy.enabled",),
        bool,
        "always expire late leases (no Eureka-style self-preservation)",
        group=_SHARD,
    ),
    Flag("--builders", ("builders",), int, "number of snapshot builder actors", check=at_least(1), group=_BUILDER),
    Flag(
        "--builder-coalesce-ms",
        ("builder.coalesce_s",),
        float,
        "changes to one VIP within this window become one build and push",
        unit="ms",
        scale=0.001,
        check=at_least(0),
        group=_BUILDER,
    ),
    Flag(
        "--builder-orphan-grace-s",
        ("builder.orphan_grace_s",),
        float,
        "interest of an xDS server whose update stream is gone is dropped after this",
        unit="s",
        check=at_least(0),
        group=_BUILDER,
    ),
    Flag(
        "--builder-names-coalesce-ms",
        ("builder.names_coalesce_s",),
        float,
        "the set of known VIP names (the known-VIPs guard every proxy gets) is rebuilt at most this often",
        unit="ms",
        scale=0.001,
        check=at_least(0),
        group=_BUILDER,
    ),
    Flag("--xds-servers", ("xds_servers",), int, "number of xDS server actors", check=at_least(1), group=_XDS),
    Flag(
        "--max-new-streams-per-s",
        ("xds.max_new_streams_per_s",),
        float,
        "new ADS streams each xDS server accepts per second; beyond: RESOURCE_EXHAUSTED",
        unit="per s",
        check=positive,
        group=_XDS,
    ),
    Flag(
        "--xds-fetch-timeout-s",
        ("xds.fetch_timeout_s",),
        float,
        "how long an xDS server waits for a builder's resources before retrying (the names stay subscribed)",
        unit="s",
        check=positive,
        group=_XDS,
    ),
    Flag(
        "--xds-fetch-retry-s",
        ("xds.fetch_retry_s",),
        float,
        "after a failed fetch, an xDS server fetches the names still subscribed again after this",
        unit="s",
        check=positive,
        group=_XDS,
    ),
    Flag(
        "--xds-unsubscribe-grace-s",
        ("xds.unsubscribe_grace_s",),
        float,
        "a VIP no session wants any more is unsubscribed from its builder after this",
        unit="s",
        check=at_least(0),
        group=_XDS,
    ),
    Flag(
        "--xds-out-of-sync-after-s",
        ("xds.out_of_sync_after_s",),
        float,
        "a session STALE or ERROR on a type URL for longer than this counts in meshactors_xds_sessions_out_of_sync",
        unit="s",
        check=positive,
        group=_XDS,
    ),
    Flag(
        "--xds-cluster-idle-s",
        ("xds.cluster_idle_s",),
        float,
        "a VIP an Envoy sent no request to for this long has its clusters collected from that Envoy; its next "
        "request discovers them again (0: never collect)",
        unit="s",
        check=at_least(0),
        group=_XDS,
    ),
    Flag(
        "--xds-idle-report-gap-s",
        ("xds.idle_report_gap_s",),
        float,
        "the longest silence of an Envoy's metrics reports that still counts as evidence it sent no request",
        unit="s",
        check=positive,
        group=_XDS,
    ),
    Flag(
        "--xds-max-names-per-type",
        ("xds.limits.max_names_per_type",),
        int,
        "resource names one stream may subscribe to per type URL",
        unit="names",
        check=at_least(1),
        group=_XDS,
    ),
    Flag(
        "--xds-max-name-length",
        ("xds.limits.max_name_length",),
        int,
        "longest resource name a stream may subscribe to",
        unit="characters",
        check=at_least(1),
        group=_XDS,
    ),
    Flag(
        "--xds-max-unknown-vips",
        ("vip_source.max_unknown_vips",),
        int,
        "VIPs with no registration one xDS server holds for its clients; past it a new one is refused "
        "(registered VIPs never are)",
        unit="VIPs",
        check=at_least(1),
        group=_XDS,
    ),
    Flag(
        "--telemetry-max-vips",
        ("telemetry_max_vips",),
        int,
        "destination VIPs one xDS server keeps golden signals (requests, errors, latency) for; later ones are "
        'counted as VIP "other"',
        unit="VIPs",
        check=at_least(1),
        group=_XDS,
    ),
    Flag(
        "--xds-max-type-urls",
        ("xds.limits.max_type_urls",),
        int,
        "type URLs one stream may use",
        unit="type URLs",
        check=at_least(1),
        group=_XDS,
    ),
)

# Sets xds_ports to (PORT, PORT + 1, ...), one per xDS server, the way MeshSettings.xds_port_list() counts them.
XDS_PORT = Flag(
    "--xds-port",
    (),
    int,
    "first xDS server's port; the others follow",
    check=port,
    group=_XDS,
    note="0: free ports",
    metavar="PORT",
    own_default=defaults.XDS_PORT,
)


# The MeshSettings fields no flag of the table above sets, and how they are set instead. A unit test holds every
# other field to a flag.
SET_ELSEWHERE: dict[str, str] = {
    "etcd": "--etcd, a launcher flag (without it `up` starts an embedded etcd)",
    "xds_ports": "--xds-port (the first port; the others follow)",
    "actor_resources": "--actor-resource",
    "colocate": "--shape (auto: colocated on the local Ray `up` starts)",
    "metrics_ports": "resolved by deploy, one free port per actor",
    "log_dir": "<state dir>/logs",
    "log_echo": "whether `up` runs on a terminal",
    # A secret must not travel on a command line (any user on the host reads it from the process list): it is
    # read from a 0600 file given by --cluster-secret-file, or generated by deploy.
    "cluster_secret": "--cluster-secret-file, else a random one per deployment",
}

SECRET_FILE_MAX_BYTES = 4096


def read_cluster_secret(path: str) -> str:
    """The cluster secret in the file at `path` (surrounding whitespace dropped). The file must be readable by its
    owner only; a bad one is a ConfigError naming the flag and the reason, never the file's content."""
    flag = "--cluster-secret-file"
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{flag}: {path} is not a regular file")
    if mode & 0o077:
        raise ConfigError(
            f"{flag}: {path} is readable or writable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        )
    if len(raw) > SECRET_FILE_MAX_BYTES:
        raise ConfigError(f"{flag}: {path} is larger than {SECRET_FILE_MAX_BYTES} bytes")
    try:
        secret = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{flag}: the secret in {path} must be printable ASCII") from None
    if reason := cluster_auth.problem(secret):
        raise ConfigError(f"{flag}: the secret in {path} {reason}")
    return secret


def add_up_flags(parser: argparse.ArgumentParser) -> None:
    """Every MeshSettings flag of `meshactors up`, in groups, with defaults and units in the help."""
    groups: dict[str, Any] = {}
    for flag in (*UP_FLAGS, XDS_PORT):
        group = groups.get(flag.group) or groups.setdefault(flag.group, parser.add_argument_group(flag.group))
        if flag.kind is bool:
            group.add_argument(flag.flag, dest=flag.dest, action="store_true", help=flag.help_text())
        else:
            metavar = flag.metavar or {int: "N", float: "X", str: "VALUE"}[flag.kind]
            group.add_argument(flag.flag, dest=flag.dest, metavar=metavar, help=flag.help_text())
    groups["deployment"].add_argument(
        "--actor-resource",
        dest="up_actor_resource",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="a Ray resource every control-plane actor asks for (keeps them on nodes that offer it; repeatable)",
    )
    groups["deployment"].add_argument(
        "--shape",
        dest="up_shape",
        choices=SHAPES,
        default=AUTO_SHAPE,
        help="how the roles run: 'colocated', all in one mesh host actor (the least memory and processes); "
        "'separate', one actor per role (what spreads over a cluster's nodes); 'auto' (default): colocated on the "
        "local Ray `up` starts, separate with --ray-address",
    )
    groups["deployment"].add_argument(
        "--cluster-secret-file",
        dest="up_cluster_secret_file",
        metavar="PATH",
        help="a 0600 file holding the secret the actors' internal gRPC calls carry "
        f"({cluster_auth.MIN_LENGTH}+ printable characters; default: a random one per deployment)",
    )


AUTO_SHAPE, COLOCATED, SEPARATE = "auto", "colocated", "separate"
SHAPES = (AUTO_SHAPE, COLOCATED, SEPARATE)


def colocate(shape: str, ray_address: str | None) -> bool:
    """Whether the `--shape` given runs every role in one mesh host (auto: on a local Ray, not on a cluster)."""
    if shape not in SHAPES:
        raise ConfigError(f"--shape: {shape!r} is not one of {', '.join(SHAPES)}")
    return shape == COLOCATED or (shape == AUTO_SHAPE and not ray_address)


def actor_resources(pairs: list[str]) -> tuple[tuple[str, float], ...]:
    out = []
    for pair in pairs:
        name, sep, amount = pair.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not sep or not name or value <= 0:
            raise ConfigError(f"--actor-resource {pair!r} is not NAME=AMOUNT with AMOUNT > 0")
        out.append((name, value))
    return tuple(out)


def mesh_settings(args: argparse.Namespace, etcd: str = "") -> MeshSettings:
    """The MeshSettings the `up` flags in `args` describe (etcd "" : `up` starts an embedded one)."""
    settings = dataclasses.replace(_BASE, etcd=etcd)
    for flag in UP_FLAGS:
        value = flag.convert(getattr(args, flag.dest, None))
        if flag.scale != 1.0:
            value = value * flag.scale
        for path in flag.paths:
            try:
                settings = _replace(settings, path.split("."), value)
            except ConfigError as exc:
                raise ConfigError(f"{flag.flag}: {exc}") from exc
    first = XDS_PORT.convert(getattr(args, XDS_PORT.dest, None))
    if first and first + settings.xds_servers - 1 > 65535:
        raise ConfigError(
            f"--xds-port: {first} leaves no room for {settings.xds_servers} xDS servers (ports up to 65535)"
        )
    ports = tuple((first + i) if first else 0 for i in range(settings.xds_servers))
    settings = dataclasses.replace(
        settings, xds_ports=ports, tls_cert=absolute(settings.tls_cert), tls_key=absolute(settings.tls_key),
        ca_key_file=absolute(settings.ca_key_file),
    )  # fmt: skip
    secret_file = getattr(args, "up_cluster_secret_file", None)
    if secret_file:
        settings = dataclasses.replace(settings, cluster_secret=read_cluster_secret(secret_file))
    return dataclasses.replace(
        settings,
        actor_resources=actor_resources(getattr(args, "up_actor_resource", [])),
        colocate=colocate(getattr(args, "up_shape", AUTO_SHAPE) or AUTO_SHAPE, getattr(args, "ray_address", None)),
    )
