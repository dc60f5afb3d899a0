"""The CA's issuance records (what `ca show` lists) and the expiry states it warns about."""

from __future__ import annotations

import pytest

from meshactors.cli import expiry_state
from meshactors.errors import CodecError, InvalidArgument
from meshactors.store import codec
from meshactors.store.ca import IssuedRecord, decode_issued, encode_issued
from meshactors.store.keys import KeySchema

HOUR = 3600 * 1000


def test_an_issuance_record_round_trips_and_a_malformed_one_is_a_codec_error() -> None:
    rec = IssuedRecord("orders", "spiffe://mesh.local/svc/orders", "1f2e", 1_000, 1_000 + 24 * HOUR, 2_000)
    assert decode_issued(encode_issued(rec)) == rec
    with pytest.raises(CodecError, match="issuance record"):
        decode_issued(codec.encode("ca_issued", {"service": "orders"}))
    with pytest.raises(CodecError):
        decode_issued(codec.encode("ca_root", {"serial": "1"}))  # another kind of record


def test_one_key_per_service_outside_the_ca_prefix() -> None:
    keys = KeySchema("/m")
    assert keys.ca_issued_to("orders") == "/m/issued/orders"
    assert not keys.ca_issued_to("orders").startswith(keys.ca)  # loading the CA never lists them
    for bad in ("", "Orders", "a/b", "x" * 300):
        with pytest.raises(InvalidArgument, match="service"):
            keys.ca_issued_to(bad)


@pytest.mark.parametrize(
    ("now_h", "state"),
    [(0, "ok"), (12, "ok"), (19, "ok"), (19.5, "expiring"), (23.9, "expiring"), (24, "expired"), (30, "expired")],
)
def test_expiry_state_warns_once_the_renewal_window_has_passed(now_h: float, state: str) -> None:
    # a 24 h leaf renews at 50-80 % of its life: with under 20 % left it missed every renewal
    assert expiry_state(0, 24 * HOUR, int(now_h * HOUR)) == state
