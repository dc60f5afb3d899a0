"""Idle bookkeeping of one proxy: when it last used each VIP it holds, from its own metrics reports, and which are idle.

A VIP is idle only on evidence: the proxy reported without a gap longer than `max_gap_s` over the whole idle time,
and none of those reports showed a request to the VIP. A proxy whose reports stop (no metrics sink, a stream that
went to another server, a slow flush) has nothing collected. Pure: the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class IdleBook:
    """`idle_s`: how long a VIP goes without a request before it is idle; `max_gap_s`: the longest silence between
    two reports that still counts as continuous evidence."""

    __slots__ = ("_clock", "_last_report", "_last_use", "_run_start", "idle_s", "max_gap_s")

    def __init__(self, idle_s: float, max_gap_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if idle_s <= 0 or max_gap_s <= 0:
            raise ValueError("idle_s and max_gap_s must be positive")
        self.idle_s = idle_s
        self.max_gap_s = max_gap_s
        self._clock = clock
        self._last_use: dict[str, float] = {}  # VIP -> when it was last seen used (or first seen held)
        self._run_start: float | None = None  # when the current run of gap-free reports began
        self._last_report: float | None = None

    def _continuous(self, now: float) -> bool:
        return self._last_report is not None and now - self._last_report <= self.max_gap_s

    def report(self, used: Iterable[str]) -> None:
        """A metrics report arrived from the proxy; `used` are the VIPs it shows requests to."""
        now = self._clock()
        if not self._continuous(now):
            self._run_start = now  # evidence starts afresh: nothing before a gap counts
        self._last_report = now
        for vip in used:
            self._last_use[vip] = now

    def idle(self, held: Iterable[str]) -> list[str]:
        """Of the VIPs the proxy holds now, those idle for `idle_s` on continuous evidence (sorted). A VIP seen held
        for the first time starts its idle time now; VIPs no longer held are forgotten."""
        now = self._clock()
        held = set(held)
        self._last_use = {vip: t for vip, t in self._last_use.items() if vip in held}
        for vip in held:
            self._last_use.setdefault(vip, now)
        if not self._continuous(now) or self._run_start is None:
            return []
        start = self._run_start
        return sorted(vip for vip in held if now - max(self._last_use[vip], start) >= self.idle_s)

    def forget(self, vip: str) -> None:
        """`vip` was collected: if the proxy holds it again, its idle time starts then."""
        self._last_use.pop(vip, None)

    @property
    def tracked(self) -> int:
        return len(self._last_use)


class ActivityRelay:
    """Reports of proxies whose ADS stream is on another xDS server (Envoy's round-robin picker puts its metrics
    stream on any server): per node, the VIPs used since the last `take`, relayed to the other servers in one batch.
    An entry with no VIPs still says "it reported": the evidence of no use. Bounded: at most `max_nodes` nodes per
    batch (later ones wait for the next; `dropped` counts them) and the VIPs a report names."""

    def __init__(self, max_nodes: int = 20_000) -> None:
        self.max_nodes = max_nodes
        self._batch: dict[str, tuple[set[str], list[int]]] = {}
        self.relayed = 0  # reports offered and kept for a batch
        self.dropped = 0  # reports of nodes past the bound of a batch

    def offer(self, node_id: str, used: Iterable[str], aborts: int = 0) -> None:
        held = self._batch.get(node_id)
        if held is None:
            if len(self._batch) >= self.max_nodes:
                self.dropped += 1
                return
            held = self._batch[node_id] = (set(), [0])
        held[0].update(used)
        held[1][0] += aborts
        self.relayed += 1

    def take(self) -> dict[str, tuple[tuple[str, ...], int]]:
        """The batch so far (node id -> (VIPs used, sorted; outbound aborts)), and a new one begins."""
        batch, self._batch = self._batch, {}
        return {node: (tuple(sorted(vips)), aborts[0]) for node, (vips, aborts) in batch.items()}


__all__ = ["ActivityRelay", "IdleBook"]
