"""Lease bookkeeping of one shard: last heartbeats, and Eureka-style self-preservation decided in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meshactors.model import InstanceRef, LeaseSettings


@dataclass(slots=True)
class LeaseEntry:
    ref: InstanceRef
    lease_id: int
    settings: LeaseSettings
    last_heartbeat: float
    lease_refreshed: float  # last time the etcd lease was kept alive (by a heartbeat or by self-preservation)


@dataclass(frozen=True, slots=True)
class SweepDecision:
    """What one sweep concluded. `hold` are leases the shard must keep alive itself (self-preservation)."""

    total: int
    late: tuple[InstanceRef, ...]
    self_preservation: bool
    hold: tuple[LeaseEntry, ...]


@dataclass(frozen=True, slots=True)
class SelfPreservationPolicy:
    """Eureka's rule: when more than `ratio` of the instances missed heartbeats at once, expire none of them.

    An instance is late once `late_factor` renewal intervals passed without a heartbeat, which is well before
    its lease (3 intervals by default) runs out, so the guard engages before a partition expires anything.
    Below `min_instances` the guard stays off: in a small mesh one dead instance is a large fraction.
    """

    ratio: float = 0.15
    min_instances: int = 10
    late_factor: float = 1.5
    enabled: bool = True

    def engaged(self, late: int, total: int) -> bool:
        return self.enabled and total >= self.min_instances and late > self.ratio * total


class LeaseBook:
    """Per-instance lease state of one shard. Pure: time comes from the injected clock."""

    def __init__(self, policy: SelfPreservationPolicy | None = None, clock: Callable[[], float] | None = None):
        import time

        self.policy = policy or SelfPreservationPolicy()
        self.clock = clock or time.monotonic
        self._entries: dict[InstanceRef, LeaseEntry] = {}
        self.self_preservation = False

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ref: object) -> bool:
        return ref in self._entries

    def get(self, ref: InstanceRef) -> LeaseEntry | None:
        return self._entries.get(ref)

    def track(self, ref: InstanceRef, lease_id: int, settings: LeaseSettings) -> None:
        """A registration was written (or reloaded): its lease starts fresh now."""
        now = self.clock()
        self._entries[ref] = LeaseEntry(ref, lease_id, settings, now, now)

    def heartbeat(self, ref: InstanceRef) -> None:
        entry = self._entries.get(ref)
        if entry is not None:
            now = self.clock()
            entry.last_heartbeat = now
            entry.lease_refreshed = now

    def held(self, ref: InstanceRef) -> None:
        """The shard kept this lease alive on the instance's behalf (self-preservation)."""
        entry = self._entries.get(ref)
        if entry is not None:
            entry.lease_refreshed = self.clock()

    def forget(self, ref: InstanceRef) -> LeaseEntry | None:
        return self._entries.pop(ref, None)

    def sweep(self) -> SweepDecision:
        now = self.clock()
        late = [
            e
            for e in self._entries.values()
            if now - e.last_heartbeat > self.policy.late_factor * e.settings.renewal_interval_s
        ]
        engaged = self.policy.engaged(len(late), len(self._entries))
        self.self_preservation = engaged
        hold: tuple[LeaseEntry, ...] = ()
        if engaged:
            # Keep a held lease at least two renewal intervals away from running out.
            hold = tuple(
                e
                for e in late
                if (e.lease_refreshed + e.settings.duration_s) - now <= 2 * e.settings.renewal_interval_s
            )
        return SweepDecision(len(self._entries), tuple(e.ref for e in late), engaged, hold)
