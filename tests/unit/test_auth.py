"""API tokens and the authorization rules: minting, parsing, verifying, revocation through the token table, and
who may write which VIPs or replace whose instances (pure logic, no etcd)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meshactors.auth.model import (
    Identity,
    Role,
    TokenRecord,
    bearer,
    may_replace,
    mint,
    parse,
    require_admin,
    require_discovery,
    require_names,
    verify,
)
from meshactors.errors import InvalidArgument, NotReady, PermissionDenied, Unauthenticated
from meshactors.model import Instance
from meshactors.registry.shard import RegistryShardCore
from meshactors.registry.shardmap import ShardMap
from meshactors.store.keys import KeySchema
from meshactors.store.tokens import (
    TokenBatch,
    TokenPut,
    TokenRemoved,
    TokensLoaded,
    TokenTable,
    decode_token,
    encode_token,
)
from tests.unit.test_shard_leases import LeaseStore


def test_a_minted_token_verifies_and_its_record_holds_only_the_hash_of_its_secret() -> None:
    token, record = mint(Role.SERVICE, service="orders", vips=["orders", "orders-secure"], created_ms=5)
    token_id, secret = parse(token)
    assert (
        token_id == record.id
        and secret not in repr(record.to_dict())
        and secret not in encode_token(record).decode(errors="replace")
    )
    who = verify(record, secret)
    assert who == Identity(record.id, Role.SERVICE, "orders", frozenset({"orders", "orders-secure"}))
    assert who.principal == "service:orders"
    assert decode_token(encode_token(record)) == record
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        verify(record, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        verify(None, secret)


def test_a_service_token_defaults_to_owning_its_own_name() -> None:
    _, record = mint(Role.SERVICE, service="billing")
    assert record.vips == ("billing",)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"role": Role.SERVICE, "service": "Bad_Name"}, "service"),
        ({"role": Role.SERVICE, "service": "ok", "vips": ["ok", "NOPE\n"]}, "vips[1]"),
        ({"role": Role.ADMIN, "service": "ok"}, "service"),
        ({"role": Role.ADMIN, "node": "n1"}, "node"),
        ({"role": Role.PROXY, "node": "x" * 300}, "node"),
        ({"role": Role.PROXY, "description": "two\nlines"}, "description"),
    ],
)
def test_bad_token_requests_name_the_field(kwargs: dict[str, object], field: str) -> None:
    role = kwargs.pop("role")
    with pytest.raises(InvalidArgument) as err:
        mint(role, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize(
    "text", ["", "ma1", "ma1.0123.abc", "ma2.0123456789abcdef." + "a" * 43, "x" * 5000, "ma1.0123456789abcdef.short"]
)
def test_malformed_tokens_are_unauthenticated_and_never_echoed(text: str) -> None:
    with pytest.raises(Unauthenticated) as err:
        parse(text)
    assert len(text) < 8 or text not in err.value.message


def test_bearer_header_parsing() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthenticated):
            bearer(bad)


def test_who_may_write_which_names() -> None:
    orders = Identity("a" * 16, Role.SERVICE, "orders", frozenset({"orders", "orders-secure"}))
    admin = Identity("b" * 16, Role.ADMIN)
    proxy = Identity("c" * 16, Role.PROXY, node="n1")
    require_names(orders, ["orders", "orders-secure"], "Register")
    require_names(admin, ["anything"], "Register")
    with pytest.raises(PermissionDenied, match="does not own 'billing'"):
        require_names(orders, ["orders", "billing"], "Register")
    with pytest.raises(PermissionDenied, match="proxy token"):
        require_names(proxy, ["orders"], "Deregister")
    with pytest.raises(PermissionDenied, match="admin token"):
        require_admin(orders, "policy Apply")
    require_admin(admin, "policy Apply")
    require_discovery(proxy, "xDS", node="n1")
    require_discovery(orders, "List")
    with pytest.raises(PermissionDenied, match="for node 'n1'"):
        require_discovery(proxy, "xDS", node="n2")


def test_who_may_replace_an_instance() -> None:
    assert may_replace("", "service:billing")  # recorded before owners were kept
    assert may_replace("service:orders", "service:orders")
    assert may_replace("service:orders", "admin:0123456789abcdef")
    assert not may_replace("service:orders", "service:billing")
    assert not may_replace("service:orders", "")


def _put(record: TokenRecord, rev: int) -> TokenPut:
    return TokenPut(record, rev)


def test_the_token_table_follows_creation_and_revocation() -> None:
    revoked: list[str] = []
    table = TokenTable(on_revoked=revoked.append)
    token, record = mint(Role.PROXY)
    with pytest.raises(NotReady):
        table.authenticate(token)
    table.apply(TokensLoaded((), 10))
    with pytest.raises(Unauthenticated):
        table.authenticate(token)
    table.apply(TokenBatch((_put(record, 11),), 11))
    assert table.authenticate(token).role is Role.PROXY
    table.apply(TokenBatch((TokenRemoved(record.id, 12),), 12))
    assert revoked == [record.id]
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        table.authenticate(token)
    other_token, other = mint(Role.ADMIN)
    table.apply(TokenBatch((_put(other, 13),), 13))
    table.apply(TokensLoaded((), 14))  # a re-listing without it: gone too
    assert revoked == [record.id, other.id]
    with pytest.raises(Unauthenticated):
        table.authenticate(other_token)


async def test_a_shard_refuses_to_replace_an_instance_another_service_registered() -> None:
    store = LeaseStore(seed=1)
    shard = RegistryShardCore(store, KeySchema(), ShardMap(["registry-shard-0"]), "registry-shard-0")  # type: ignore[arg-type]
    shard._ready.set()
    inst = Instance(
        app="", instance_id="i-1", host="127.0.0.1", vip="orders", port=8080, registered_by="service:orders"
    )
    await shard.register(inst)
    leases_before = set(store.leases)
    rogue = replace(inst, host="10.9.9.9", weight=10000, registered_by="service:billing")
    with pytest.raises(PermissionDenied, match="registered by service:orders"):
        await shard.register(rogue)
    assert store.leases == leases_before, "a refused registration leaves no lease behind"
    [kv] = store.kv.values()
    assert b"10.9.9.9" not in kv.value
    await shard.register(replace(inst, port=8081))  # the owner may
    await shard.register(replace(inst, port=8082, registered_by="admin:0123456789abcdef"))  # and an admin
