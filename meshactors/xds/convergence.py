"""ConvergenceTracker: from a change's time at its source to the last ACK of every session that holds it.

A source stamps a pushed snapshot with when it saw the change (`Snapshot.changed_at`, wall clock). When the
host applies it, every session holding the key that has not yet ACKed the key's current versions is waited on;
each request a waited-on session sends (an ACK lands in one) is checked, and when the last one has caught up
the time since the change is one sample. A newer change to a key still converging joins it (the earliest time
is kept: a change has reached the fleet once a version at least as new has). A session that closes is no longer
waited on; a change whose every waited-on session closed, or that waits longer than `give_up_s` (a NACKed
version is never ACKed), is counted as abandoned, not sampled. Memory: one entry per key converging and one per
(session, key) waited on, both bounded by what the host holds."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from meshactors.telemetry.histogram import Histogram

S = TypeVar("S", bound=Hashable)
K = TypeVar("K", bound=Hashable)

GIVE_UP_S = 300.0


@dataclass(slots=True)
class _Pending(Generic[S]):
    changed_at: float
    waiting: set[S] = field(default_factory=set)
    acked: int = 0


class ConvergenceTracker(Generic[S, K]):
    """`caught_up(session, key)` says whether a session has ACKed what the host holds of a key (True also when
    it no longer holds the key); samples go to `histogram` in seconds."""

    def __init__(
        self,
        caught_up: Callable[[S, K], bool],
        histogram: Histogram | None = None,
        clock: Callable[[], float] = time.time,
        give_up_s: float = GIVE_UP_S,
    ) -> None:
        self._caught_up = caught_up
        self.histogram = histogram or Histogram()
        self._clock = clock
        self.give_up_s = give_up_s
        self._pending: dict[K, _Pending[S]] = {}
        self._by_session: dict[S, set[K]] = {}
        self.abandoned = 0

    def __len__(self) -> int:
        """Keys with a change not yet ACKed by every session holding them."""
        return len(self._pending)

    def waiting(self, key: K) -> set[S]:
        pending = self._pending.get(key)
        return set(pending.waiting) if pending is not None else set()

    def changed(self, key: K, changed_at: float, holders: Iterable[S]) -> None:
        """A key's snapshot changed (`changed_at`: when its source saw the change; 0 or less: unknown, e.g. a
        resend after a reconnect, which starts no measurement but joins one under way)."""
        pending = self._pending.get(key)
        if pending is None and changed_at <= 0:
            return
        lagging = [s for s in holders if not self._caught_up(s, key)]
        if pending is None:
            if not lagging:  # nothing any session must ACK: nothing converges
                return
            pending = self._pending[key] = _Pending(changed_at)
        elif changed_at > 0:
            pending.changed_at = min(pending.changed_at, changed_at)
        for session in lagging:
            pending.waiting.add(session)
            self._by_session.setdefault(session, set()).add(key)

    def check(self, session: S) -> None:
        """After a request of `session` (an ACK may have landed): the keys it has caught up on are done."""
        keys = self._by_session.get(session)
        if not keys:
            return
        for key in [k for k in keys if self._caught_up(session, k)]:
            self._done(session, key, acked=True)

    def closed(self, session: S) -> None:
        """The session ended: it is no longer waited on."""
        for key in list(self._by_session.get(session, ())):
            self._done(session, key, acked=False)

    def expire(self) -> int:
        """Give up on changes older than `give_up_s`; returns how many."""
        cutoff = self._clock() - self.give_up_s
        old = [k for k, p in self._pending.items() if p.changed_at < cutoff]
        for key in old:
            pending = self._pending.pop(key)
            for session in pending.waiting:
                self._unlink(session, key)
        self.abandoned += len(old)
        return len(old)

    def _unlink(self, session: S, key: K) -> None:
        keys = self._by_session.get(session)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_session[session]

    def _done(self, session: S, key: K, *, acked: bool) -> None:
        self._unlink(session, key)
        pending = self._pending.get(key)
        if pending is None:
            return
        pending.waiting.discard(session)
        pending.acked += int(acked)
        if pending.waiting:
            return
        del self._pending[key]
        if pending.acked:
            self.histogram.observe(self._clock() - pending.changed_at)
        else:
            self.abandoned += 1
