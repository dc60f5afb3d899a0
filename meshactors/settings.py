"""MeshSettings: the one picklable record of how a deployment is configured, passed to every actor.

Defaults come from meshactors.defaults and from the component records it holds (shard, builder, xDS host);
the `up` flags that set each field are in meshactors.flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from meshactors import cluster_auth, defaults
from meshactors.errors import ConfigError, InvalidArgument
from meshactors.registry.leases import SelfPreservationPolicy
from meshactors.registry.shard import ShardSettings
from meshactors.snapshot.settings import BuilderSettings, VipSourceSettings
from meshactors.store.etcdspec import redact
from meshactors.store.keys import KeySchema
from meshactors.xds.settings import HostSettings

# Kept for callers that import them from here; the values live in meshactors.defaults.
DEFAULT_NAMESPACE = defaults.NAMESPACE
DEFAULT_REGISTRY_PORT = defaults.REGISTRY_PORT
DEFAULT_XDS_PORT = defaults.XDS_PORT
DEFAULT_EUREKA_PORT = defaults.EUREKA_PORT


@dataclass(frozen=True)
class MeshSettings:
    etcd: str  # comma-separated etcd client URLs ("" only before `up` has chosen or started one)
    namespace: str = defaults.NAMESPACE
    key_prefix: str = defaults.KEY_PREFIX
    shards: int = defaults.SHARDS
    registry_host: str = defaults.HOST
    registry_port: int = defaults.REGISTRY_PORT
    shard: ShardSettings = field(default_factory=ShardSettings)
    builders: int = defaults.BUILDERS
    builder: BuilderSettings = field(default_factory=BuilderSettings)
    xds_servers: int = defaults.XDS_SERVERS
    xds_host: str = defaults.HOST
    xds_ports: tuple[int, ...] = ()  # one per xDS server; empty: defaults.XDS_PORT, +1, ...
    # (actor name, port) of each actor's Prometheus /metrics, resolved once by deploy so a restarted actor
    # serves them on the same port (the ready file lists them); an actor not listed picks a free port
    metrics_ports: tuple[tuple[str, int], ...] = ()
    xds: HostSettings = field(default_factory=HostSettings)
    vip_source: VipSourceSettings = field(default_factory=VipSourceSettings)  # in each xDS server
    # destination VIPs each xDS server keeps golden signals for (meshactors.telemetry.golden); later ones: "other"
    telemetry_max_vips: int = 1000
    eureka_port: int = defaults.EUREKA_PORT  # the Eureka REST API, on registry_host
    dashboard_port: int = defaults.DASHBOARD_PORT  # the mesh dashboard (HTTP), on registry_host
    # Ray resources every control-plane actor asks for, e.g. {"meshactors": 1} to keep them on labeled nodes.
    actor_resources: tuple[tuple[str, float], ...] = ()
    # The co-hosted shape: every role (shards, builders, xDS servers, APIs, dashboard, controller) runs as a
    # component of one mesh host actor (meshactors.runtime.host), not in an actor process of its own.
    colocate: bool = False
    # Where each actor writes its records (<log_dir>/<actor>.log, JSON, rotated); "": stderr only. On a node that
    # cannot create it, an actor writes under Ray's session log directory instead (meshactors.runtime.logs).
    log_dir: str = ""
    # What an actor also writes to stderr (which Ray forwards to the driver): "all" records as JSON, or only
    # "warnings" (and errors) as human lines, for `up` on a terminal.
    log_echo: str = "all"
    # TLS of the public listeners (registry API, Eureka API, xDS servers): PEM files every node running those
    # actors can read (absolute paths; each server reads them when it starts). "": plaintext, allowed only on a
    # loopback host unless `insecure` (meshactors.tlsconfig has the rule).
    tls_cert: str = ""
    tls_key: str = ""
    insecure: bool = False  # plaintext on a non-loopback host is meant
    # What every internal gRPC call between the actors carries (meshactors.cluster_auth): the same for every actor
    # of the deployment, so restarted actors keep it. "" only before deploy has generated one. Never in a repr.
    cluster_secret: str = field(default="", repr=False)
    # The mesh CA (meshactors.ca, served by the registry API as CertificateService): its trust domain (also what
    # the builders put in SVIP clusters' SAN checks: builder.trust_domain, set by the same flag), the lifetime of
    # the leaves it issues, and the 0600 key file its root key is sealed with in etcd (an absolute path every node
    # running the registry API can read; `up` creates <state dir>/ca.key when none is given). The file's path is
    # not a secret; its content never leaves it.
    trust_domain: str = defaults.TRUST_DOMAIN
    cert_ttl_s: int = defaults.CERT_TTL_S
    ca_key_file: str = ""

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"shards must be at least 1 (got {self.shards})")
        if not 0 <= self.registry_port <= 65535:
            raise ConfigError(f"registry port {self.registry_port} is out of range")
        if not 0 <= self.eureka_port <= 65535:
            raise ConfigError(f"Eureka port {self.eureka_port} is out of range")
        if not 0 <= self.dashboard_port <= 65535:
            raise ConfigError(f"dashboard port {self.dashboard_port} is out of range")
        if self.builders < 1:
            raise ConfigError(f"builders must be at least 1 (got {self.builders})")
        if self.xds_servers < 1:
            raise ConfigError(f"xds servers must be at least 1 (got {self.xds_servers})")
        if self.xds_ports and len(self.xds_ports) != self.xds_servers:
            raise ConfigError(f"{len(self.xds_ports)} xDS ports given for {self.xds_servers} xDS servers")
        KeySchema(self.key_prefix)
        if self.cluster_secret and (reason := cluster_auth.problem(self.cluster_secret)):
            raise ConfigError(f"cluster_secret: {reason}")
        # here, not at the top: the CA package loads cryptography, and an actor that only unpickles its settings
        # (which does not run this) has no use for it
        from meshactors.ca.authority import MAX_LEAF_TTL_S, MIN_LEAF_TTL_S
        from meshactors.ca.identity import validate_trust_domain

        for name, td in (("trust_domain", self.trust_domain), ("builder.trust_domain", self.builder.trust_domain)):
            try:
                validate_trust_domain(td, name)
            except InvalidArgument as exc:
                raise ConfigError(f"{name}: {exc.reason}") from None
        if not MIN_LEAF_TTL_S <= self.cert_ttl_s <= MAX_LEAF_TTL_S:
            raise ConfigError(f"cert_ttl_s: {self.cert_ttl_s} is out of range {MIN_LEAF_TTL_S}-{MAX_LEAF_TTL_S} s")
        if self.log_echo not in ("all", "warnings", "none"):
            raise ConfigError(f"log_echo must be all, warnings or none (got {self.log_echo!r})")

    def __repr__(self) -> str:
        """Every field, with the etcd spec's password redacted (settings are logged and shown in errors)."""
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        shown["etcd"] = redact(self.etcd)
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"MeshSettings({fields})"

    @property
    def keys(self) -> KeySchema:
        return KeySchema(self.key_prefix)

    @property
    def registry_address(self) -> str:
        return f"{self.registry_host}:{self.registry_port}"

    @property
    def tls(self) -> bool:
        """The public listeners serve TLS."""
        return bool(self.tls_cert)

    @property
    def eureka_url(self) -> str:
        """The Eureka service URL clients are given (they add apps/...)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.registry_host}:{self.eureka_port}/eureka"

    @property
    def dashboard_url(self) -> str:
        """Where the dashboard's page is (no credentials in it)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.registry_host}:{self.dashboard_port}/"

    def metrics_port(self, actor: str) -> int:
        """The port `actor` serves /metrics on (0: any free port)."""
        return dict(self.metrics_ports).get(actor, 0)

    def xds_port_list(self) -> tuple[int, ...]:
        return self.xds_ports or tuple(defaults.XDS_PORT + i for i in range(self.xds_servers))

    @property
    def xds_addresses(self) -> list[str]:
        return [f"{self.xds_host}:{p}" for p in self.xds_port_list()]


def shard_settings(
    sweep_interval_s: float | None = None,
    ratio: float | None = None,
    min_instances: int | None = None,
    enabled: bool | None = None,
) -> ShardSettings:
    """ShardSettings with some fields changed; the others keep the records' own defaults."""
    base, policy = ShardSettings(), SelfPreservationPolicy()
    return ShardSettings(
        sweep_interval_s=base.sweep_interval_s if sweep_interval_s is None else sweep_interval_s,
        ready_wait_s=base.ready_wait_s,
        etcd_retry_s=base.etcd_retry_s,
        policy=SelfPreservationPolicy(
            ratio=policy.ratio if ratio is None else ratio,
            min_instances=policy.min_instances if min_instances is None else min_instances,
            late_factor=policy.late_factor,
            enabled=policy.enabled if enabled is None else enabled,
        ),
    )
