"""Maps a VIP name to the registry shard that owns it, by rendezvous (highest-random-weight) hashing."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from meshactors.errors import ConfigError


def shard_name(index: int) -> str:
    return f"registry-shard-{index}"


def _weight(shard: str, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{shard}\x00{key}".encode(), digest_size=8).digest(), "big")


class ShardMap:
    """Rendezvous hashing: adding a shard moves only the VIPs the new shard wins (about 1/N of them)."""

    def __init__(self, shards: Sequence[str]) -> None:
        if not shards:
            raise ConfigError("the registry needs at least one shard")
        if len(set(shards)) != len(shards):
            raise ConfigError(f"duplicate shard names in {list(shards)}")
        self.shards = tuple(shards)

    @classmethod
    def of_size(cls, count: int) -> ShardMap:
        if count < 1:
            raise ConfigError(f"--shards must be at least 1 (got {count})")
        return cls([shard_name(i) for i in range(count)])

    def owner(self, vip: str) -> str:
        return max(self.shards, key=lambda s: _weight(s, vip))
