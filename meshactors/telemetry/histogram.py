"""Histogram: fixed-bucket bookkeeping kept as plain data, so actors report it in statistics and /metrics alike."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Seconds. The control plane converges in milliseconds on one host and in seconds under load or across nodes;
# Istio's pilot_proxy_convergence_time starts at 0.1 s, which would put every sample of ours in its first bucket.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@dataclass(frozen=True, slots=True)
class HistogramData:
    """What a histogram holds: `counts[i]` samples <= `bounds[i]` and > the bound before it (not cumulative);
    the last count (one more than the bounds) is every sample above the last bound."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) per bucket as Prometheus writes them, "+Inf" last."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == math.inf else _le(bound), total))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistogramData:
        return cls(tuple(data["bounds"]), tuple(data["counts"]), float(data["sum"]), int(data["count"]))


def _le(bound: float) -> str:
    return repr(float(bound))


class Histogram:
    """Samples counted into fixed buckets (upper bounds, inclusive, as Prometheus' `le`); memory is the bounds."""

    __slots__ = ("_counts", "bounds", "count", "sum")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        if not self.bounds or list(self.bounds) != sorted(set(self.bounds)) or not all(map(math.isfinite, self.bounds)):
            raise ValueError("histogram bounds: give finite, strictly increasing upper bounds")
        self._counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """One sample; a negative one (a clock step between hosts) counts as 0."""
        value = max(0.0, float(value))
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def data(self) -> HistogramData:
        return HistogramData(self.bounds, tuple(self._counts), self.sum, self.count)
