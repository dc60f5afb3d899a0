"""The read side's statistics records (snapshot builder, VIP source): plain data, no protobuf, cheap to unpickle.

A builder's and an xDS server's `statistics` answers hold them, and the dashboard and `status` that unpickle them
need not load the Envoy protos for that; meshactors.snapshot.publisher and meshactors.snapshot.source re-export
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BuilderStatistics:
    builder: str
    ready: bool
    incarnation: str
    revision: int
    instances: int
    vips_with_interest: int
    hosts: tuple[str, ...]
    update_streams_open: int
    builds: int
    pushes: int
    events: int
    resyncs: int
    update_streams: int
    inconsistent_builds: int
    policy_changes: int
    policies: int
    known_names: int  # names with a registration (-1: another builder owns the known-names key)
    known_names_builds: int
    intention_changes: int = 0  # intention watch changes applied
    intention_builds: int = 0  # intentions (RBAC) snapshots built
    resources_changed_by_type: dict[str, int] = field(default_factory=dict)  # resources a build gave a new version
    resources_pushed_by_type: dict[str, int] = field(default_factory=dict)  # changed resources sent to xDS servers
    resources_held_by_type: dict[str, int] = field(default_factory=dict)  # in the snapshots built and kept


@dataclass(frozen=True, slots=True)
class VipSourceStatistics:
    known_names: int  # -1 until the known-names snapshot was first seen
    vip_keys_held: int
    unknown_vip_keys_held: int
    unknown_vip_budget: int
    refused_by_budget: int
