"""What every process knows of the read side without its protos: the settings records and the builders' names.

Every actor unpickles `MeshSettings`, which holds these records, and the runtime names the builders; keeping them
here rather than beside the code that uses them (meshactors.snapshot.publisher, meshactors.snapshot.source, which
load the Envoy protos) keeps a shard's or an API's process from loading protos it never uses. Both re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshactors import defaults
from meshactors.registry.shardmap import ShardMap


def builder_name(index: int) -> str:
    return f"snapshot-builder-{index}"


def builder_map(count: int) -> ShardMap:
    return ShardMap([builder_name(i) for i in range(count)])


@dataclass(frozen=True, slots=True)
class BuilderSettings:
    coalesce_s: float = 0.001  # bursts of changes to one VIP within this window become one build and push
    orphan_grace_s: float = 60.0  # interest of a host whose update stream is gone is dropped after this
    names_coalesce_s: float = 0.1  # the known-names set (~110 B a name) is rebuilt at most this often
    trust_domain: str = defaults.TRUST_DOMAIN  # SVIP clusters check the servers' SPIFFE IDs in this trust domain


@dataclass(frozen=True, slots=True)
class VipSourceSettings:
    # VIP keys one xDS server holds whose name has no registration; past it a new unknown name is refused
    max_unknown_vips: int = 10_000
