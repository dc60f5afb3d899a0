"""CSR rate limiting per identity: burst, refill, independence of identities, bounded memory."""

from __future__ import annotations

import pytest

from meshactors.ca.limits import CsrRateLimiter
from meshactors.errors import InvalidArgument, ResourceExhausted


def test_burst_then_refused_then_refilled() -> None:
    lim = CsrRateLimiter(burst=3, per_s=1.0)
    for _ in range(3):
        lim.take("spiffe://td/svc/a", 0.0)
    with pytest.raises(ResourceExhausted, match=r"spiffe://td/svc/a.*retry in 1\.0 s"):
        lim.take("spiffe://td/svc/a", 0.0)
    assert lim.refused == 1
    lim.take("spiffe://td/svc/a", 1.0)  # one token back after a second
    with pytest.raises(ResourceExhausted):
        lim.take("spiffe://td/svc/a", 1.0)


def test_identities_have_their_own_buckets() -> None:
    lim = CsrRateLimiter(burst=1, per_s=0.1)
    lim.take("a", 0.0)
    lim.take("b", 0.0)  # a's exhaustion does not touch b
    with pytest.raises(ResourceExhausted):
        lim.take("a", 0.0)


def test_refill_is_capped_at_the_burst() -> None:
    lim = CsrRateLimiter(burst=2, per_s=100.0)
    lim.take("a", 0.0)
    for _ in range(2):
        lim.take("a", 1000.0)
    with pytest.raises(ResourceExhausted):
        lim.take("a", 1000.0)


def test_memory_is_bounded() -> None:
    lim = CsrRateLimiter(burst=1, per_s=1.0, max_tracked=10)
    for i in range(100):
        lim.take(f"id{i}", 0.0)
    assert len(lim) == 10


@pytest.mark.parametrize(("kwargs", "field"), [({"burst": 0}, "burst"), ({"per_s": 0}, "per_s"),
                                              ({"max_tracked": 0}, "max_tracked")])  # fmt: skip
def test_bad_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        CsrRateLimiter(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
