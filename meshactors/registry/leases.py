"""Lease bookkeeping of one shard: last heartbeats, and Eureka-style self-preservation decided in memory."""

from __future__ import annotations

from collections import deque
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
    # False for a registration that has not renewed since it was written: its silence says nothing about a
    # partition, so it neither counts towards self-preservation nor is held by it (etcd expires it as usual).
    renewed: bool = True


@dataclass(frozen=True, slots=True)
class SweepDecision:
    """What one sweep concluded. `hold` are leases the shard must keep alive itself (self-preservation)."""

    total: int
    late: tuple[InstanceRef, ...]
    self_preservation: bool
    hold: tuple[LeaseEntry, ...]


@dataclass(frozen=True, slots=True)
class SelfPreservationPolicy:
    """Eureka's rule: when more than `ratio` of the renewals expected per minute are missing, expire nothing.

    Each instance that renews is expected to send 60 / renewal interval renewals a minute; the renewals of the
    late ones (`late_factor` renewal intervals without a heartbeat, well before a lease of 3 intervals runs out)
    are the missing ones, so the guard engages before a partition expires anything. Only instances that have
    renewed count (as expected renewals and as holders): a registration that never heartbeat is not evidence of
    a partition, and a few of them must not stop expiry. Below `min_instances` renewing instances the guard stays
    off: in a small mesh one dead instance is a large fraction.
    """

    ratio: float = 0.15
    min_instances: int = 10
    late_factor: float = 1.5
    enabled: bool = True

    def engaged(self, late: float, total: float, instances: int | None = None) -> bool:
        """`late` and `total`: renewals per minute expected of the late instances and of every renewing one."""
        count = total if instances is None else instances
        return self.enabled and count >= self.min_instances and total > 0 and late / total > self.ratio


class LeaseBook:
    """Per-instance lease state of one shard. Pure: time comes from the injected clock."""

    def __init__(self, policy: SelfPreservationPolicy | None = None, clock: Callable[[], float] | None = None):
        import time

        self.policy = policy or SelfPreservationPolicy()
        self.clock = clock or time.monotonic
        self._entries: dict[InstanceRef, LeaseEntry] = {}
        self.self_preservation = False
        self._renewals: deque[list[int]] = deque()  # [second, heartbeats in it], the last minute's
        self.expected_per_minute = 0.0  # as of the last sweep

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ref: object) -> bool:
        return ref in self._entries

    def get(self, ref: InstanceRef) -> LeaseEntry | None:
        return self._entries.get(ref)

    def track(self, ref: InstanceRef, lease_id: int, settings: LeaseSettings, renewed: bool = True) -> None:
        """A registration was reloaded (renewed: it was renewing before) or written (renewed=False): its lease
        starts fresh now."""
        now = self.clock()
        self._entries[ref] = LeaseEntry(ref, lease_id, settings, now, now, renewed)

    def heartbeat(self, ref: InstanceRef) -> None:
        entry = self._entries.get(ref)
        if entry is not None:
            now = self.clock()
            entry.last_heartbeat = now
            entry.lease_refreshed = now
            entry.renewed = True
            second = int(now)
            if self._renewals and self._renewals[-1][0] == second:
                self._renewals[-1][1] += 1
            else:
                self._renewals.append([second, 1])

    def renewals_last_minute(self) -> int:
        horizon = int(self.clock()) - 60
        while self._renewals and self._renewals[0][0] <= horizon:
            self._renewals.popleft()
        return sum(count for _, count in self._renewals)

    def statistics(self) -> dict[str, float | int | bool]:
        return {
            "self_preservation": self.self_preservation,
            "renewals_last_minute": self.renewals_last_minute(),
            "expected_renewals_per_minute": round(self.expected_per_minute, 1),
            "never_renewed": sum(1 for e in self._entries.values() if not e.renewed),
        }

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
        renewing = [e for e in self._entries.values() if e.renewed]
        expected = sum(60 / e.settings.renewal_interval_s for e in renewing)
        missing = sum(60 / e.settings.renewal_interval_s for e in late if e.renewed)
        self.expected_per_minute = expected
        engaged = self.policy.engaged(missing, expected, len(renewing))
        self.self_preservation = engaged
        hold: tuple[LeaseEntry, ...] = ()
        if engaged:
            # Keep a held lease at least two renewal intervals away from running out.
            hold = tuple(
                e
                for e in late
                if e.renewed and (e.lease_refreshed + e.settings.duration_s) - now <= 2 * e.settings.renewal_interval_s
            )
        return SweepDecision(len(self._entries), tuple(e.ref for e in late), engaged, hold)
