"""MeshSettings: the one picklable record of how a deployment is configured, passed to every actor."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshactors.errors import ConfigError
from meshactors.registry.leases import SelfPreservationPolicy
from meshactors.registry.shard import ShardSettings
from meshactors.store.keys import DEFAULT_PREFIX, KeySchema
from meshactors.xds.host import HostSettings

DEFAULT_NAMESPACE = "meshactors"
DEFAULT_REGISTRY_PORT = 7070
# Outside Ray's default worker port range (10002-19999) and the kernel's ephemeral range (32768+).
DEFAULT_XDS_PORT = 7080
DEFAULT_EUREKA_PORT = 8761  # where Eureka clients look by default


@dataclass(frozen=True)
class MeshSettings:
    etcd: str  # comma-separated etcd client URLs
    namespace: str = DEFAULT_NAMESPACE
    key_prefix: str = DEFAULT_PREFIX
    shards: int = 2
    registry_host: str = "127.0.0.1"
    registry_port: int = DEFAULT_REGISTRY_PORT
    shard: ShardSettings = field(default_factory=ShardSettings)
    builders: int = 2
    xds_servers: int = 2
    xds_host: str = "127.0.0.1"
    xds_ports: tuple[int, ...] = ()  # one per xDS server; empty: DEFAULT_XDS_PORT, +1, ...
    xds: HostSettings = field(default_factory=HostSettings)
    eureka_port: int = DEFAULT_EUREKA_PORT  # the Eureka REST API, on registry_host
    # Ray resources every control-plane actor asks for, e.g. {"meshactors": 1} to keep them on labeled nodes.
    actor_resources: tuple[tuple[str, float], ...] = ()

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

    def xds_port_list(self) -> tuple[int, ...]:
        return self.xds_ports or tuple(DEFAULT_XDS_PORT + i for i in range(self.xds_servers))

    @property
    def xds_addresses(self) -> list[str]:
        return [f"{self.xds_host}:{p}" for p in self.xds_port_list()]


def shard_settings(
    sweep_interval_s: float = 1.0, ratio: float = 0.15, min_instances: int = 10, enabled: bool = True
) -> ShardSettings:
    return ShardSettings(
        sweep_interval_s=sweep_interval_s,
        policy=SelfPreservationPolicy(ratio=ratio, min_instances=min_instances, enabled=enabled),
    )
