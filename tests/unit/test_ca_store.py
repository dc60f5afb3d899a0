"""CA records without etcd: created once in one fenced transaction (two actors starting at once keep one root), loaded
back with the key unsealed, refused with a wrong key file or trust domain, rotated in three fenced steps."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization

from meshactors.ca import SpiffeId, issue, verify_leaf
from meshactors.ca.sealing import Kek
from meshactors.errors import CodecError, ConfigError, Conflict, InvalidArgument, PermissionDenied
from meshactors.store import codec
from meshactors.store.ca import CaStore, decode_bundle, decode_root, encode_root
from meshactors.store.keys import KeySchema
from tests.unit.test_ca import _csr
from tests.unit.test_policy_store import TxnStore

KEYS = KeySchema("/t")
TD = "mesh.test"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
KEK = Kek.generate("/state/ca.key")


def _ca_keys(store: TxnStore) -> list[str]:
    return sorted(k for k in store.kvs if k.startswith(KEYS.ca))


async def test_ensure_creates_one_root_and_the_bundle_in_one_commit_then_loads_it() -> None:
    store = TxnStore()
    first = await CaStore(store, KEYS, KEK).ensure(TD, NOW)
    assert first.created and len(store.commits) == 1
    assert _ca_keys(store) == [KEYS.ca_bundle, KEYS.ca_root(first.ca.serial)]
    assert first.bundle.serials == (first.ca.serial,) and first.revision == store.kvs[KEYS.ca_bundle].mod_revision
    rec = decode_root(store.kvs[KEYS.ca_root(first.ca.serial)].value)
    plain = first.ca.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert plain not in rec.sealed_key and b"PRIVATE KEY" not in store.kvs[KEYS.ca_root(first.ca.serial)].value
    assert rec.kek_id == KEK.kek_id and repr(rec.sealed_key) not in repr(rec) and rec.sealed_key.hex() not in repr(rec)
    bundle = decode_bundle(store.kvs[KEYS.ca_bundle].value)
    assert bundle.trust_domain == TD and bundle.active == first.ca.serial and bundle.roots == (first.ca.cert_pem,)

    again = await CaStore(store, KEYS, Kek(KEK.key, "/elsewhere/ca.key")).ensure(TD, NOW)  # a restarted actor
    assert not again.created and len(store.commits) == 1
    assert again.ca.serial == first.ca.serial
    assert again.ca.key.private_numbers() == first.ca.key.private_numbers()
    read = await CaStore(store, KEYS, KEK).read_bundle()
    assert read is not None and read[0].serials == (first.ca.serial,) and read[1] == first.ca.serial


async def test_two_actors_starting_at_once_keep_one_root() -> None:
    shared, elsewhere = TxnStore(), TxnStore()
    winner = await CaStore(elsewhere, KEYS, KEK).ensure(TD, NOW)

    def other_actor_commits_first(store: TxnStore) -> None:  # lands between the loser's read and its commit
        for kv in elsewhere.kvs.values():
            store.put(kv.key, kv.value)

    shared.before_commit.append(other_actor_commits_first)
    loser = await CaStore(shared, KEYS, KEK).ensure(TD, NOW)
    assert not loser.created and loser.ca.serial == winner.ca.serial
    assert _ca_keys(shared) == [KEYS.ca_bundle, KEYS.ca_root(winner.ca.serial)]
    assert shared.commits == []  # the loser's transaction wrote nothing


async def test_a_wrong_key_file_or_trust_domain_is_a_clear_error_and_writes_nothing() -> None:
    store = TxnStore()
    await CaStore(store, KEYS, KEK).ensure(TD, NOW)
    before = dict(store.kvs)
    with pytest.raises(ConfigError, match=re.escape("key file /state/other.key")):
        await CaStore(store, KEYS, Kek.generate("/state/other.key")).ensure(TD, NOW)
    with pytest.raises(ConfigError, match=r"'mesh\.test'.*'other\.test'"):
        await CaStore(store, KEYS, KEK).ensure("other.test", NOW)
    assert store.kvs == before and len(store.commits) == 1


async def test_damaged_or_inconsistent_records_are_codec_errors() -> None:
    store = TxnStore()
    state = await CaStore(store, KEYS, KEK).ensure(TD, NOW)
    root_key = KEYS.ca_root(state.ca.serial)
    good = store.kvs[root_key].value
    rec = decode_root(good)
    flipped = rec.sealed_key[:-1] + bytes([rec.sealed_key[-1] ^ 1])
    store.put(root_key, encode_root(type(rec)(rec.serial, rec.cert_pem, flipped, rec.kek_id, 1)))
    with pytest.raises(CodecError, match="does not decrypt"):
        await CaStore(store, KEYS, KEK).load(TD)
    store.put(root_key, codec.encode("ca_root", {"serial": rec.serial}))
    with pytest.raises(CodecError, match="malformed"):
        await CaStore(store, KEYS, KEK).load(TD)
    store.remove(root_key)
    with pytest.raises(CodecError, match="does not exist"):
        await CaStore(store, KEYS, KEK).load(TD)


async def test_rotation_stage_activate_finish_with_leaves_verifying_throughout() -> None:
    store = TxnStore()
    cas = CaStore(store, KEYS, KEK)
    start = await cas.ensure(TD, NOW)
    orders = SpiffeId(TD, "orders")
    old_leaf = issue(start.ca, _csr(), orders, now=NOW)

    staged = await cas.stage_root(start, NOW)
    new_serial = staged.bundle.serials[1]
    assert staged.ca.serial == start.ca.serial and staged.bundle.serials == (start.ca.serial, new_serial)
    assert (await cas.load(TD)).ca.serial == start.ca.serial  # type: ignore[union-attr]  # the old root still signs
    with pytest.raises(Conflict, match="reload"):
        await cas.stage_root(start, NOW)  # a stale state is fenced

    active = await cas.activate(staged, new_serial)
    assert active.ca.serial == new_serial
    loaded = await cas.load(TD)
    assert loaded is not None and loaded.ca.serial == new_serial and loaded.revision == active.revision
    new_leaf = issue(loaded.ca, _csr(), orders, now=NOW)
    for leaf in (old_leaf, new_leaf):
        assert verify_leaf(loaded.bundle, leaf, NOW) == orders

    final = await cas.finish(active)
    assert final.bundle.serials == (new_serial,)
    assert _ca_keys(store) == [KEYS.ca_bundle, KEYS.ca_root(new_serial)]
    read = await cas.read_bundle()
    assert read is not None and read[0].serials == (new_serial,)
    assert verify_leaf(read[0], new_leaf, NOW) == orders
    with pytest.raises(PermissionDenied, match="does not chain"):
        verify_leaf(read[0], old_leaf, NOW)
    with pytest.raises(InvalidArgument) as err:
        await cas.activate(final, start.ca.serial)
    assert err.value.field == "serial"


def test_ca_keys_are_under_their_own_prefix_and_validate_the_serial() -> None:
    assert KEYS.ca_root("ab12") == "/t/ca/roots/ab12" and KEYS.parse_ca_root("/t/ca/roots/ab12") == "ab12"
    assert KEYS.ca_bundle == "/t/ca/bundle" and KEYS.ca_bundle.startswith(KEYS.ca)
    for other in (KEYS.instances, KEYS.policies, KEYS.tokens):
        assert not other.startswith(KEYS.ca) and not KEYS.ca.startswith(other)
    for bad in ("AB12", "", "../x", "a" * 41):
        with pytest.raises(InvalidArgument) as err:
            KEYS.ca_root(bad)
        assert err.value.field == "serial"
    with pytest.raises(InvalidArgument):
        KEYS.parse_ca_root("/t/ca/bundle")
