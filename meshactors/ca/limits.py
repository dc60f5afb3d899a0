"""CSR rate limiting: a token bucket per identity, so one service's runaway renewals cannot starve the others."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from meshactors.errors import InvalidArgument, ResourceExhausted

CSR_BURST = 50  # CSRs one identity may send at once (a fleet of its instances starting together)
CSR_PER_S = 5.0  # sustained CSRs per second per identity (24 h leaves renew ~once every 12-19 h per instance)
MAX_TRACKED = 10_000  # identities with a bucket; the least recently used one is dropped beyond (it refills anyway)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class CsrRateLimiter:
    """`take(identity, now)` spends one token of `identity`'s bucket (`burst` deep, refilled at `per_s`), or raises
    ResourceExhausted saying when to retry. `now` is a monotonic clock in seconds (injected, so tests need no
    sleeping). Memory is bounded by `max_tracked` buckets."""

    def __init__(self, burst: int = CSR_BURST, per_s: float = CSR_PER_S, max_tracked: int = MAX_TRACKED) -> None:
        if burst < 1:
            raise InvalidArgument("burst", f"must be at least 1 (got {burst})")
        if per_s <= 0:
            raise InvalidArgument("per_s", f"must be greater than 0 (got {per_s})")
        if max_tracked < 1:
            raise InvalidArgument("max_tracked", f"must be at least 1 (got {max_tracked})")
        self.burst, self.per_s, self.max_tracked = burst, per_s, max_tracked
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.refused = 0

    def take(self, identity: str, now: float) -> None:
        bucket = self._buckets.pop(identity, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.at) * self.per_s)
        bucket.at = now
        self._buckets[identity] = bucket
        while len(self._buckets) > self.max_tracked:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            self.refused += 1
            wait = (1.0 - bucket.tokens) / self.per_s
            raise ResourceExhausted(
                f"certificate requests of {identity} exceed {self.per_s:g}/s (burst {self.burst}); "
                f"retry in {wait:.1f} s"
            )
        bucket.tokens -= 1.0

    def __len__(self) -> int:
        return len(self._buckets)
