"""Root rotation's rules: which step may run now, and what still holds a leaf of a root that is about to go.

A rotation is three steps over the trust bundle (oldest root first) and its signing root:
  stage     one root -> (old, new), the old one still signs: every peer learns to trust the new root first;
  activate  (old, new) -> the new one signs: every peer renews onto it (it already trusts both);
  finish    (old, new) -> (new): the old root goes, once no valid leaf of it is left on record (or forced).
The steps are refused out of order with InvalidArgument naming `step` and saying what comes next.

Only active identities hold a rotation up: one whose sidecars all stopped keeps a valid leaf on record for up to its
lifetime but will never renew. `Liveness` says which identities asked the CA anything (a Sign, or the Bundle check
sidecars make every 10 s by default) within three of their check intervals (ACTIVE_S when unknown); for ACTIVE_S
after a (re)start it knows nothing yet and counts every identity as active, so a restart never lets a step skip a
live one (one that checks less often than every ACTIVE_S / 3 may still be missed right after a restart).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from meshactors.errors import InvalidArgument

STEPS = ("stage", "activate", "finish")
ACTIVE_S = 30.0  # an identity that asked the CA nothing for this long has no running sidecar (they ask every 10 s)
MAX_TRACKED = 100_000  # identities Liveness remembers (one per service token at most)


class Liveness:
    """When each identity last asked the CA, in memory (a restarted CA starts over, see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, active_s: float = ACTIVE_S) -> None:
        self._clock = clock
        self._active_s = active_s
        self._since = clock()
        self._until: dict[str, float] = {}  # identity -> when it stops counting as active without another call

    def saw(self, spiffe_id: str, check_interval_s: float = 0.0) -> None:
        """`spiffe_id` asked the CA now; it asks again every `check_interval_s` (0: unknown, ACTIVE_S applies)."""
        if spiffe_id in self._until or len(self._until) < MAX_TRACKED:
            window = 3 * check_interval_s if check_interval_s > 0 else self._active_s
            self._until[spiffe_id] = self._clock() + min(max(window, self._active_s), 3 * 3600)

    def active(self, spiffe_id: str) -> bool:
        now = self._clock()
        if now - self._since < self._active_s:
            return True
        until = self._until.get(spiffe_id)
        return until is not None and now < until


@dataclass(frozen=True, slots=True)
class HeldLeaf:
    """The last leaf on record of one identity: which root signed it and until when it is valid."""

    spiffe_id: str
    issuer_serial: str
    not_after_ms: int


def next_step(serials: tuple[str, ...], signing: str) -> str:
    """The step a rotation is at: `stage` with one root, `activate` while the oldest signs, `finish` after."""
    if len(serials) <= 1:
        return "stage"
    return "activate" if signing != serials[-1] else "finish"


def check_step(step: str, serials: tuple[str, ...], signing: str) -> None:
    """InvalidArgument("step") unless `step` is the one the bundle (`serials`, oldest first) and its signing root
    are ready for."""
    if step not in STEPS:
        raise InvalidArgument("step", f"{step[:40]!r} is not one of {', '.join(STEPS)}")
    due = next_step(serials, signing)
    if step != due:
        where = "no rotation is in progress" if due == "stage" else f"the bundle holds {len(serials)} roots"
        raise InvalidArgument("step", f"{step} cannot run now: {where}; the next step is {due}")


def left_on_old_roots(leaves: Iterable[HeldLeaf], signing: str, now_ms: int) -> list[str]:
    """The identities whose last leaf on record is still valid and was signed by another root than `signing`:
    dropping that root now would fail their handshakes. Sorted."""
    return sorted(leaf.spiffe_id for leaf in leaves if leaf.issuer_serial != signing and leaf.not_after_ms > now_ms)
