"""Lease bookkeeping and Eureka-style self-preservation, with a manual clock."""

from __future__ import annotations

from meshactors.model import InstanceRef, LeaseSettings
from meshactors.registry.leases import LeaseBook, SelfPreservationPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _book(n: int, policy: SelfPreservationPolicy | None = None) -> tuple[LeaseBook, Clock, list[InstanceRef]]:
    clock = Clock()
    book = LeaseBook(policy or SelfPreservationPolicy(), clock)
    refs = [InstanceRef("svc", f"i-{i}") for i in range(n)]
    for i, ref in enumerate(refs):
        book.track(ref, 100 + i, LeaseSettings(30, 90))
    return book, clock, refs


def test_heartbeating_instances_are_never_late() -> None:
    book, clock, refs = _book(20)
    for _ in range(10):
        clock.now += 30
        for ref in refs:
            book.heartbeat(ref)
        decision = book.sweep()
        assert decision.late == () and not decision.self_preservation and decision.hold == ()


def test_a_few_dead_instances_expire_normally() -> None:
    book, clock, refs = _book(20)
    clock.now += 50  # > 1.5 renewal intervals
    for ref in refs[2:]:
        book.heartbeat(ref)
    decision = book.sweep()
    assert set(decision.late) == set(refs[:2])  # 10% < 15%
    assert not decision.self_preservation
    assert decision.hold == ()  # etcd lets their leases run out


def test_mass_heartbeat_loss_engages_self_preservation_before_any_lease_runs_out() -> None:
    book, clock, refs = _book(20)
    clock.now += 46  # everyone missed a heartbeat; leases (90 s) have 44 s left
    decision = book.sweep()
    assert decision.self_preservation and book.self_preservation
    assert len(decision.late) == 20
    # all leases are within two renewal intervals of running out: the shard keeps every one alive itself
    assert {e.ref for e in decision.hold} == set(refs)
    for e in decision.hold:
        book.held(e.ref)
    clock.now += 10
    assert book.sweep().hold == ()  # just refreshed: nothing to hold this round
    clock.now += 25
    again = book.sweep()
    assert again.self_preservation and len(again.hold) == 20


def test_self_preservation_ends_when_heartbeats_come_back() -> None:
    book, clock, refs = _book(20)
    clock.now += 46
    assert book.sweep().self_preservation
    for ref in refs[1:]:
        book.heartbeat(ref)
    decision = book.sweep()
    assert not decision.self_preservation
    assert decision.late == (refs[0],)


def test_threshold_is_strictly_more_than_the_ratio() -> None:
    book, clock, refs = _book(20)
    clock.now += 46
    for ref in refs[3:]:
        book.heartbeat(ref)
    assert not book.sweep().self_preservation  # 3/20 = 15%: not more than 15%
    book2, clock2, refs2 = _book(20)
    clock2.now += 46
    for ref in refs2[4:]:
        book2.heartbeat(ref)
    assert book2.sweep().self_preservation  # 4/20 = 20%


def test_small_meshes_do_not_engage() -> None:
    book, clock, _ = _book(5)
    clock.now += 46
    decision = book.sweep()
    assert len(decision.late) == 5 and not decision.self_preservation


def test_disabled_policy_never_engages() -> None:
    book, clock, _ = _book(50, SelfPreservationPolicy(enabled=False))
    clock.now += 46
    assert not book.sweep().self_preservation


def test_forget_and_retrack() -> None:
    book, clock, refs = _book(3)
    assert book.forget(refs[0]) is not None and refs[0] not in book and len(book) == 2
    assert book.forget(refs[0]) is None
    book.track(refs[0], 999, LeaseSettings(1, 3))
    entry = book.get(refs[0])
    assert entry is not None and entry.lease_id == 999 and entry.last_heartbeat == clock.now


def test_registrations_that_never_heartbeat_neither_engage_nor_are_held() -> None:
    # Ten silent registrations on a shard used to engage self-preservation, which then held their leases for good.
    book, clock, _refs = _book(0)
    silent = [InstanceRef("svc", f"new-{i}") for i in range(10)]
    for i, ref in enumerate(silent):
        book.track(ref, 500 + i, LeaseSettings(30, 90), renewed=False)
    clock.now += 46
    decision = book.sweep()
    assert set(decision.late) == set(silent) and not decision.self_preservation and decision.hold == ()
    assert book.statistics()["never_renewed"] == 10


def test_a_few_silent_registrations_among_renewing_ones_do_not_stop_expiry() -> None:
    book, clock, refs = _book(50)
    silent = [InstanceRef("svc", f"new-{i}") for i in range(10)]  # 10/60 instances: more than the 15 % ratio
    for i, ref in enumerate(silent):
        book.track(ref, 500 + i, LeaseSettings(30, 90), renewed=False)
    for _ in range(3):
        clock.now += 30
        for ref in refs:
            book.heartbeat(ref)
        decision = book.sweep()
    assert set(decision.late) == set(silent) and not decision.self_preservation and decision.hold == ()
    stats = book.statistics()
    assert stats["renewals_last_minute"] == 100 and stats["expected_renewals_per_minute"] == 100.0


def test_the_threshold_weighs_instances_by_the_renewals_they_owe() -> None:
    # 2 late instances of 21 (under 15 %), but they renew every second: 120 of 158 renewals a minute are missing.
    book, clock, refs = _book(19)
    fast = [InstanceRef("svc", f"fast-{i}") for i in range(2)]
    for i, ref in enumerate(fast):
        book.track(ref, 700 + i, LeaseSettings(1, 3))
    clock.now += 20
    for ref in refs:
        book.heartbeat(ref)
    decision = book.sweep()
    assert set(decision.late) == set(fast) and decision.self_preservation
    assert {e.ref for e in decision.hold} == set(fast)


def test_a_registration_counts_once_it_heartbeats() -> None:
    book, clock, _refs = _book(0)
    late = [InstanceRef("svc", f"i-{i}") for i in range(12)]
    for i, ref in enumerate(late):
        book.track(ref, 800 + i, LeaseSettings(30, 90), renewed=False)
        book.heartbeat(ref)  # renewing, then a partition
    clock.now += 46
    decision = book.sweep()
    assert decision.self_preservation and len(decision.hold) == 12
