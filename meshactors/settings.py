"""MeshSettings: the one picklable record of how a deployment is configured, passed to every actor.

Defaults come from meshactors.defaults and from the component records it holds (shard, builder, xDS host);
the `up` flags that set each field are in meshactors.flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshactors import defaults
from meshactors.errors import ConfigError
from meshactors.registry.leases import SelfPreservationPolicy
from meshactors.registry.shard import ShardSettings
from meshactors.snapshot.publisher import BuilderSettings
from meshactors.snapshot.source import VipSourceSettings
from meshactors.store.keys import KeySchema
from meshactors.xds.host import HostSettings

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
    eureka_port: int = defaults.EUREKA_PORT  # the Eureka REST API, on registry_host
    # Ray resources every control-plane actor asks for, e.g. {"meshactors": 1} to keep them on labeled nodes.
    actor_resources: tuple[tuple[str, float], ...] = ()
    # Where each actor writes its records (<log_dir>/<actor>.log, JSON, rotated); "": stderr only. On a node that
    # cannot create it, an actor writes under Ray's session log directory instead (meshactors.runtime.logs).
    log_dir: str = ""
    # What an actor also writes to stderr (which Ray forwards to the driver): "all" records as JSON, or only
    # "warnings" (and errors) as human lines, for `up` on a terminal.
    log_echo: str = "all"

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"shards must be at least 1 (got {self.shards})")
        if not 0 <= self.registry_port <= 65535:
            raise ConfigError(f"registry port {self.registry_port} is out of range")
        if not 0 <= self.eureka_port <= 65535:
            raise ConfigError(f"Eureka port {self.eureka_port} is out of range")
        if self.builders < 1:
            raise ConfigError(f"builders must be at least 1 (got {self.builders})")
        if self.xds_servers < 1:
            raise ConfigError(f"xds servers must be at least 1 (got {self.xds_servers})")
        if self.xds_ports and len(self.xds_ports) != self.xds_servers:
            raise ConfigError(f"{len(self.xds_ports)} xDS ports given for {self.xds_servers} xDS servers")
        KeySchema(self.key_prefix)
        if self.log_echo not in ("all", "warnings", "none"):
            raise ConfigError(f"log_echo must be all, warnings or none (got {self.log_echo!r})")

    @property
    def keys(self) -> KeySchema:
        return KeySchema(self.key_prefix)

    @property
    def registry_address(self) -> str:
        return f"{self.registry_host}:{self.registry_port}"

    @property
    def eureka_url(self) -> str:
        """The Eureka service URL clients are given (they add apps/...)."""
        return f"http://{self.registry_host}:{self.eureka_port}/eureka"

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
