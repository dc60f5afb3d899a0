"""Who may use the Eureka API: the Authorization header's token (basic-auth password or Bearer), VIP ownership on
every write, no replacing another identity's instance, and the HTTP statuses of each refusal (pure logic and an
in-process aiohttp server, no etcd)."""

from __future__ import annotations

import base64
import json
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from meshactors.auth.guard import Authenticator
from meshactors.auth.model import MAX_AUTH_HEADER, Identity, Role, http_token, mint
from meshactors.errors import PermissionDenied, Unauthenticated
from meshactors.eureka import http as eureka_http
from meshactors.eureka.service import EurekaRegistry
from meshactors.eureka.view import EurekaView
from meshactors.registry.shardmap import ShardMap
from meshactors.store.base import Store
from meshactors.store.keys import KeySchema
from meshactors.store.tokens import TokenPut, TokensLoaded
from tests.unit.test_eureka import FakeShards

ADMIN = Identity("0123456789abcdef", Role.ADMIN)
ORDERS = Identity("1111111111111111", Role.SERVICE, "orders", frozenset({"orders", "orders-v2"}))
BILLING = Identity("2222222222222222", Role.SERVICE, "billing", frozenset({"billing"}))
PROXY = Identity("3333333333333333", Role.PROXY)
IID = "10.0.0.5:orders:8080"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_token_is_the_basic_auth_password_or_the_bearer_token() -> None:
    assert http_token(_basic("orders", "ma1.x.y")) == "ma1.x.y"
    assert http_token(_basic("", "ma1.x.y")) == "ma1.x.y"  # the user name is free, even empty
    assert http_token("basic " + base64.b64encode(b"a:b:c").decode()) == "b:c"  # only the first colon splits
    assert http_token("Bearer ma1.x.y") == "ma1.x.y" and http_token("bearer  ma1.x.y ") == "ma1.x.y"


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (None, "no credentials"),
        ("", "no credentials"),
        ("Bearer", "without a token"),
        ("Digest abc", "neither `Basic`"),
        ("Basic !!!not-base64", "not base64"),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "not base64"),
        (_basic("app", ""), "no password"),
        ("Basic " + base64.b64encode(b"just-a-user").decode(), "no password"),
        ("Bearer " + "a" * MAX_AUTH_HEADER, "at most"),
    ],
)
def test_missing_or_malformed_credentials_say_what_is_wrong(header: str | None, words: str) -> None:
    with pytest.raises(Unauthenticated, match=words):
        http_token(header)


def _info(app: str = "ORDERS", iid: str = IID, vips: str = "orders") -> dict[str, Any]:
    return {"app": app, "instanceId": iid, "hostName": "10.0.0.5", "port": 8080, "vipAddress": vips}


def _registry() -> tuple[FakeShards, EurekaRegistry]:
    shards, view = FakeShards(), EurekaView()
    view.replace_all([], 0)
    return shards, EurekaRegistry(shards, ShardMap.of_size(2), view)


async def test_a_registration_records_who_made_it() -> None:
    shards, reg = _registry()
    await reg.register(ORDERS, "orders", _info(vips="orders,orders-v2"))
    assert {r.registered_by for r in shards.records.values()} == {"service:orders"} and len(shards.records) == 2
    await reg.register(ADMIN, "orders", _info(iid="by-admin"))
    assert [r.registered_by for r in reg.view.find("ORDERS", "by-admin")] == ["admin:0123456789abcdef"]


async def test_a_service_writes_only_under_the_vips_it_owns_and_nothing_is_written_otherwise() -> None:
    shards, reg = _registry()
    with pytest.raises(PermissionDenied, match="does not own 'orders'"):
        await reg.register(BILLING, "orders", _info())
    with pytest.raises(PermissionDenied, match="does not own 'orders-v3'"):  # one of several names not owned
        await reg.register(ORDERS, "orders", _info(vips="orders,orders-v3"))
    assert shards.records == {} and reg.view.find("ORDERS", IID) == []

    await reg.register(ORDERS, "orders", _info())
    before = dict(shards.records)
    refused = [
        reg.renew(BILLING, "orders", IID),
        reg.cancel(BILLING, "orders", IID),
        reg.override_status(BILLING, "orders", IID, "OUT_OF_SERVICE"),
        reg.delete_override(BILLING, "orders", IID, "UP"),
        reg.update_metadata(BILLING, "orders", IID, {"owner": "billing"}),
    ]
    for call in refused:
        with pytest.raises(PermissionDenied, match=r"service 'billing' does not own 'orders'"):
            await call
    assert shards.records == before and shards.rev == 1


async def test_an_instance_id_registered_by_another_identity_is_not_hijacked() -> None:
    shards, reg = _registry()
    await reg.register(ORDERS, "orders", _info())
    before = dict(shards.records)
    # billing owns its own VIP, but re-registering orders' instance under it would drop orders' record
    with pytest.raises(PermissionDenied, match="registered by service:orders"):
        await reg.register(BILLING, "orders", _info(vips="billing"))
    assert shards.records == before
    # under another app the same id is another instance, and billing may register it under its own VIP
    await reg.register(BILLING, "billing", _info(app="BILLING", vips="billing"))
    assert len(shards.records) == 2
    # an admin may replace anything
    await reg.register(ADMIN, "orders", _info(vips="orders-v2"))
    assert sorted(r.vip for r in shards.records.values()) == ["billing", "orders-v2"]


async def test_a_proxy_token_writes_nothing() -> None:
    shards, reg = _registry()
    with pytest.raises(PermissionDenied, match="under 'orders' needs a service or admin token; this is a proxy"):
        await reg.register(PROXY, "orders", _info())
    await reg.register(ORDERS, "orders", _info())
    with pytest.raises(PermissionDenied, match="proxy token"):
        await reg.cancel(PROXY, "orders", IID)
    assert len(shards.records) == 1


async def _client(tokens: list[tuple[str, Any]]) -> tuple[TestClient[Any, Any], FakeShards]:
    shards, reg = _registry()
    auth = Authenticator(cast(Store, object()), KeySchema(), "test")
    auth.table.apply(TokensLoaded(tuple(TokenPut(record, 1) for _, record in tokens), 1))
    client: TestClient[Any, Any] = TestClient(TestServer(eureka_http.build_app(reg, auth)))
    await client.start_server()
    return client, shards


async def test_http_statuses_of_refusals_and_the_basic_auth_challenge() -> None:
    orders_token, orders = mint(Role.SERVICE, service="orders")
    billing_token, billing = mint(Role.SERVICE, service="billing")
    proxy_token, proxy = mint(Role.PROXY)
    revoked_token, _ = mint(Role.SERVICE, service="orders")  # its record is not in the table
    client, shards = await _client([("o", orders), ("b", billing), ("p", proxy)])
    body = json.dumps({"instance": _info()}).encode()
    json_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    try:
        for headers, words in [
            ({}, "no credentials"),
            ({"Authorization": "Bearer nonsense"}, "not a meshactors token"),
            ({"Authorization": _basic("orders", revoked_token)}, "unknown or revoked"),
        ]:
            for method, path in [("POST", "/eureka/v2/apps/ORDERS"), ("GET", "/eureka/apps/"), ("GET", "/nope")]:
                async with client.request(method, path, data=body, headers={**json_headers, **headers}) as r:
                    text = await r.text()
                    assert r.status == 401 and words in text, (method, path, text)
                    assert r.headers["WWW-Authenticate"] == 'Basic realm="meshactors"'
                    assert revoked_token not in text
        for token in (billing_token, proxy_token):
            headers = {**json_headers, "Authorization": _basic("orders", token)}
            async with client.post("/eureka/v2/apps/ORDERS", data=body, headers=headers) as r:
                assert r.status == 403 and "'orders'" in await r.text()
                assert "WWW-Authenticate" not in r.headers
        assert shards.records == {}

        async with client.post(
            "/eureka/v2/apps/ORDERS", data=body, headers={**json_headers, "Authorization": _basic("x", orders_token)}
        ) as r:
            assert r.status == 204, await r.text()
        assert [r.registered_by for r in shards.records.values()] == ["service:orders"]
        for token in (billing_token, proxy_token):  # any valid token reads
            async with client.get("/eureka/apps", headers={**json_headers, "Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200 and IID in await r.text()
        async with client.delete(
            f"/eureka/apps/ORDERS/{IID}", headers={"Authorization": _basic("b", billing_token)}
        ) as r:
            assert r.status == 403 and "does not own 'orders'" in await r.text()
        async with client.delete(
            f"/eureka/apps/ORDERS/{IID}", headers={"Authorization": _basic("o", orders_token)}
        ) as r:
            assert r.status == 200
        assert shards.records == {}
    finally:
        await client.close()
