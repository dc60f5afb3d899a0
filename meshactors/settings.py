"""MeshSettings: the one picklable record of how a deployment is configured, passed to every actor."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshactors.errors import ConfigError
from meshactors.registry.leases import SelfPreservationPolicy
from meshactors.registry.shard import ShardSettings
from meshactors.store.keys import DEFAULT_PREFIX, KeySchema

DEFAULT_NAMESPACE = "meshactors"
DEFAULT_REGISTRY_PORT = 7070


@dataclass(frozen=True)
class MeshSettings:
    etcd: str  # comma-separated etcd client URLs
    namespace: str = DEFAULT_NAMESPACE
    key_prefix: str = DEFAULT_PREFIX
    shards: int = 2
    registry_host: str = "127.0.0.1"
    registry_port: int = DEFAULT_REGISTRY_PORT
    shard: ShardSettings = field(default_factory=ShardSettings)

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"shards must be at least 1 (got {self.shards})")
        if not 0 <= self.registry_port <= 65535:
            raise ConfigError(f"registry port {self.registry_port} is out of range")
        KeySchema(self.key_prefix)

    @property
    def keys(self) -> KeySchema:
        return KeySchema(self.key_prefix)

    @property
    def registry_address(self) -> str:
        return f"{self.registry_host}:{self.registry_port}"


def shard_settings(
    sweep_interval_s: float = 1.0, ratio: float = 0.15, min_instances: int = 10, enabled: bool = True
) -> ShardSettings:
    return ShardSettings(
        sweep_interval_s=sweep_interval_s,
        policy=SelfPreservationPolicy(ratio=ratio, min_instances=min_instances, enabled=enabled),
    )
