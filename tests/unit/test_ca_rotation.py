"""Root rotation's rules: the steps in order, and the identities still on a root about to be dropped."""

from __future__ import annotations

import pytest

from meshactors.ca.rotation import HeldLeaf, Liveness, check_step, left_on_old_roots, next_step
from meshactors.errors import InvalidArgument


def test_the_steps_come_in_order() -> None:
    assert next_step(("a",), "a") == "stage"
    assert next_step(("a", "b"), "a") == "activate"
    assert next_step(("a", "b"), "b") == "finish"
    check_step("stage", ("a",), "a")
    check_step("activate", ("a", "b"), "a")
    check_step("finish", ("a", "b"), "b")


@pytest.mark.parametrize(
    ("step", "serials", "signing", "says"),
    [
        ("activate", ("a",), "a", "no rotation is in progress; the next step is stage"),
        ("finish", ("a",), "a", "no rotation is in progress; the next step is stage"),
        ("stage", ("a", "b"), "a", "the bundle holds 2 roots; the next step is activate"),
        ("finish", ("a", "b"), "a", "the next step is activate"),
        ("activate", ("a", "b"), "b", "the next step is finish"),
        ("spin", ("a",), "a", "is not one of stage, activate, finish"),
    ],
)
def test_a_step_out_of_order_names_the_field_and_what_comes_next(
    step: str, serials: tuple[str, ...], signing: str, says: str
) -> None:
    with pytest.raises(InvalidArgument, match="step") as err:
        check_step(step, serials, signing)
    assert says in err.value.message


def test_only_valid_leaves_of_another_root_hold_the_old_root() -> None:
    leaves = [
        HeldLeaf("spiffe://td/svc/b", "old", 2_000),  # valid, old root: holds it
        HeldLeaf("spiffe://td/svc/a", "old", 3_000),
        HeldLeaf("spiffe://td/svc/c", "new", 2_000),  # renewed onto the new root
        HeldLeaf("spiffe://td/svc/d", "old", 1_000),  # expired: nobody presents it any more
    ]
    assert left_on_old_roots(leaves, "new", 1_000) == ["spiffe://td/svc/a", "spiffe://td/svc/b"]
    assert left_on_old_roots(leaves, "new", 5_000) == []


def test_liveness_counts_everyone_right_after_a_start_then_only_who_asked_lately() -> None:
    now = [1000.0]
    live = Liveness(clock=lambda: now[0], active_s=30)
    assert live.active("spiffe://td/svc/never-seen")  # just started: it cannot know yet, so it assumes alive
    live.saw("spiffe://td/svc/a", check_interval_s=1)  # 3 intervals, but never under ACTIVE_S
    live.saw("spiffe://td/svc/slow", check_interval_s=60)  # three of its intervals: 180 s
    now[0] += 31
    assert not live.active("spiffe://td/svc/never-seen") and not live.active("spiffe://td/svc/a")
    assert live.active("spiffe://td/svc/slow")
    live.saw("spiffe://td/svc/a")
    assert live.active("spiffe://td/svc/a")
    now[0] += 200
    assert not live.active("spiffe://td/svc/slow") and not live.active("spiffe://td/svc/a")
