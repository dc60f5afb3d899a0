"""Who may use the Eureka API, on the real stack: no, bad and revoked tokens get 401 (with a Basic challenge), a
service's token cannot write another service's VIP nor take over its instance id (403), nothing is written when
refused, and a real py-eureka-client registers with the token as its basic-auth password and is refused without."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from meshactors.registry.client import RegistryClient
from meshactors.registry.token_client import TokenClient
from meshactors.store.etcd import EtcdStore
from tests.integration.test_eureka import (
    CHILD,
    JSON,
    Eureka,
    _ask,
    _line,
    _tag,
    _until,
    basic_auth,
    java_json,
    url_with_token,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
CHALLENGE = 'Basic realm="meshactors"'


@pytest.fixture(scope="module")
def tokens(stack: dict[str, Any]) -> Iterator[TokenClient]:
    with TokenClient(stack["registry"], token=stack["token"]) as client:
        yield client


@pytest.fixture(scope="module")
def admin(stack: dict[str, Any]) -> Eureka:
    return Eureka(stack["eureka"], stack["token"])


def _service(tokens: TokenClient, name: str, eureka: Eureka) -> tuple[str, str]:
    """A service token owning the VIP `name`: (token, its id), once the Eureka API knows it (it learns of new
    tokens from etcd a moment after they are created; used at once, one may still be unknown there)."""
    token, info = tokens.create("service", service=name, vips=[name])
    _until(lambda: eureka.with_token(token).get_json("/v2/apps").status == 200, 10,
           f"the new token of {name} reaches the Eureka API")  # fmt: skip
    return token, info.id


def _owned_instance(eureka: Eureka, registry: RegistryClient, app: str, vip: str, iid: str) -> None:
    r = eureka.request("POST", f"/v2/apps/{app}", java_json(app, iid, 8080, vip), JSON)
    assert r.status == 204, r.body
    assert [i.instance_id for i in registry.list(vip=vip)[0]] == [iid]


def _writes(app: str, iid: str, vip: str) -> list[tuple[str, str, bytes]]:
    """Every Eureka write on one instance: register, heartbeat, status override and its removal, metadata, cancel."""
    base = f"/v2/apps/{app}"
    return [
        ("POST", base, java_json(app, iid, 9999, vip)),
        ("PUT", f"{base}/{iid}?status=UP&lastDirtyTimestamp=1", b""),
        ("PUT", f"{base}/{iid}/status?value=OUT_OF_SERVICE", b""),
        ("DELETE", f"{base}/{iid}/status?value=UP", b""),
        ("PUT", f"{base}/{iid}/metadata?owner=rogue", b""),
        ("DELETE", f"{base}/{iid}", b""),
    ]


def _reads(app: str, iid: str, vip: str) -> list[tuple[str, str, bytes]]:
    return [(m, p, b"") for m, p in [("GET", "/v2/apps"), ("GET", "/apps/delta"), ("GET", f"/v2/apps/{app}"),
                                     ("GET", f"/v2/apps/{app}/{iid}"), ("GET", f"/v2/instances/{iid}"),
                                     ("GET", f"/v2/vips/{vip}"), ("GET", f"/svips/{vip}")]]  # fmt: skip


def _unchanged(registry: RegistryClient, vip: str, iid: str, owner: str) -> None:
    [inst] = registry.list(vip=vip)[0]
    assert (inst.instance_id, inst.port, inst.status, inst.registered_by) == (iid, 8080, 1, owner)
    assert dict(inst.metadata).get("owner") is None


async def test_no_credentials_get_401_with_a_basic_challenge_and_write_nothing(
    stack: dict[str, Any], admin: Eureka, registry: RegistryClient, store: EtcdStore
) -> None:
    app, vip = f"ANON-{_tag()}".upper(), f"anon-{_tag()}"
    iid = f"{vip}-1"
    _owned_instance(admin, registry, app, vip, iid)
    anonymous = Eureka(stack["eureka"])
    before = await store.revision()
    for method, path, body in _writes(app, iid, vip) + _reads(app, iid, vip):
        r = anonymous.request(method, path, body, JSON)
        assert r.status == 401, (method, path, r.status, r.body)
        assert r.headers.get("WWW-Authenticate") == CHALLENGE, r.headers
        assert "no credentials" in r.body.decode() and "http://app:TOKEN@" in r.body.decode(), r.body
    assert await store.revision() == before
    _unchanged(registry, vip, iid, registry_principal(stack))
    assert admin.request("DELETE", f"/v2/apps/{app}/{iid}").status == 200


def registry_principal(stack: dict[str, Any]) -> str:
    """What the stack's admin token is recorded as (`admin:<token id>`)."""
    return "admin:" + stack["token"].split(".")[1]


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (basic_auth("app", "not-a-token"), "not a meshactors token"),
        ("Bearer ma1." + secrets.token_hex(8) + "." + secrets.token_urlsafe(32), "unknown or revoked"),
        (basic_auth("app", "ma1." + secrets.token_hex(8) + "." + secrets.token_urlsafe(32)), "unknown or revoked"),
        ("Basic %%%", "not base64"),
        ("Negotiate abc", "neither `Basic`"),
        ("Bearer " + "x" * 5000, "at most"),
    ],
)
async def test_a_bad_token_gets_401_and_writes_nothing(
    stack: dict[str, Any], admin: Eureka, registry: RegistryClient, store: EtcdStore, header: str, words: str
) -> None:
    app, vip = f"BAD-{_tag()}".upper(), f"bad-{_tag()}"
    iid = f"{vip}-1"
    _owned_instance(admin, registry, app, vip, iid)
    before = await store.revision()
    for method, path, body in _writes(app, iid, vip) + _reads(app, iid, vip)[:2]:
        r = admin.request(method, path, body, {**JSON, "Authorization": header})
        assert r.status == 401 and words in r.body.decode(), (method, path, r.status, r.body)
        assert r.headers.get("WWW-Authenticate") == CHALLENGE
        assert header.split(" ")[-1][:40] not in r.body.decode()  # the credential is never echoed
    assert await store.revision() == before
    _unchanged(registry, vip, iid, registry_principal(stack))
    assert admin.request("DELETE", f"/v2/apps/{app}/{iid}").status == 200


async def test_a_revoked_token_gets_401_once_the_revocation_reaches_the_eureka_api(
    stack: dict[str, Any], admin: Eureka, tokens: TokenClient, registry: RegistryClient, store: EtcdStore
) -> None:
    vip = f"revoked-{_tag()}"
    app, iid = vip.upper(), f"{vip}-1"
    token, token_id = _service(tokens, vip, admin)
    owner = admin.with_token(token, user=app)
    _owned_instance(owner, registry, app, vip, iid)  # the token works, through basic auth ...
    bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    assert owner.request("GET", f"/v2/apps/{app}/{iid}", headers=bearer).status == 200  # ... and as a Bearer token

    tokens.revoke(token_id)
    _until(lambda: owner.get_json("/v2/apps").status == 401, 10, "the revocation reaches the Eureka API")
    before = await store.revision()
    for method, path, body in _writes(app, iid, vip):
        r = owner.request(method, path, body, JSON)
        assert r.status == 401 and "unknown or revoked" in r.body.decode(), (method, path, r.status, r.body)
        assert r.headers.get("WWW-Authenticate") == CHALLENGE
    assert owner.request("GET", "/v2/apps", headers=bearer).status == 401
    assert await store.revision() == before
    _unchanged(registry, vip, iid, f"service:{vip}")
    assert admin.request("DELETE", f"/v2/apps/{app}/{iid}").status == 200


async def test_a_service_token_cannot_write_another_services_vip_nor_take_over_its_instance(
    stack: dict[str, Any], admin: Eureka, tokens: TokenClient, registry: RegistryClient, store: EtcdStore
) -> None:
    vip, rogue_vip = f"owned-{_tag()}", f"rogue-{_tag()}"
    app, iid = vip.upper(), f"{vip}-1"
    owner_token, owner_id = _service(tokens, vip, admin)
    rogue_token, rogue_id = _service(tokens, rogue_vip, admin)
    owner, rogue = admin.with_token(owner_token, app), admin.with_token(rogue_token, rogue_vip.upper())
    try:
        _owned_instance(owner, registry, app, vip, iid)
        _unchanged(registry, vip, iid, f"service:{vip}")  # who registered it is recorded on the instance
        before = await store.revision()
        for method, path, body in _writes(app, iid, vip):
            r = rogue.request(method, path, body, JSON)
            text = r.body.decode()
            assert r.status == 403, (method, path, r.status, text)
            assert f"service '{rogue_vip}' does not own '{vip}'" in text, (method, path, text)
            assert "WWW-Authenticate" not in r.headers

        # The hijack: the owner's app and instance id, under a VIP the rogue does own (which would drop the owner's).
        hijack = java_json(app, iid, 6666, rogue_vip)
        r = rogue.request("POST", f"/v2/apps/{app}", hijack, JSON)
        assert r.status == 403 and f"registered by service:{vip}" in r.body.decode(), r.body
        assert f"service:{rogue_vip} may not replace it" in r.body.decode(), r.body
        # A proxy token reads but writes nothing.
        proxy = admin.with_token(stack["proxy_token"], "proxy")
        assert proxy.get_json(f"/v2/apps/{app}/{iid}").status == 200
        r = proxy.request("POST", f"/v2/apps/{app}", java_json(app, iid, 6666, vip), JSON)
        assert r.status == 403 and "proxy token" in r.body.decode() and f"'{vip}'" in r.body.decode(), r.body
        assert proxy.request("DELETE", f"/v2/apps/{app}/{iid}").status == 403
        assert await store.revision() == before
        _unchanged(registry, vip, iid, f"service:{vip}")
        assert registry.list(vip=rogue_vip)[0] == []

        # Everything refused above, the owner may do (and the rogue may use its own VIP under its own app).
        for method, path, body in _writes(app, iid, vip)[1:]:
            assert owner.request(method, path, body, JSON).status == 200, (method, path)
        assert registry.list(vip=vip)[0] == []
        rogue_app = rogue_vip.upper()
        assert (
            rogue.request("POST", f"/v2/apps/{rogue_app}", java_json(rogue_app, iid, 6666, rogue_vip), JSON).status
            == 204
        )
        [inst] = registry.list(vip=rogue_vip)[0]
        assert inst.registered_by == f"service:{rogue_vip}"
        assert rogue.request("DELETE", f"/v2/apps/{rogue_app}/{iid}").status == 200
    finally:
        tokens.revoke(owner_id)
        tokens.revoke(rogue_id)
        for name in (vip, rogue_vip):
            for inst in registry.list(vip=name)[0]:
                admin.request("DELETE", f"/v2/apps/{inst.app}/{inst.instance_id}")


def _child(server: str, app: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), "--server", server, "--app", app, "--port", str(port), "--renewal", "1",
         "--duration", "3"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def _end(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
        child.wait(timeout=10)


def test_py_eureka_client_registers_with_basic_auth_and_is_refused_without(
    stack: dict[str, Any], tokens: TokenClient, registry: RegistryClient, backends: Any, admin: Eureka
) -> None:
    b = backends("pyauth")
    app = f"pyauth-{_tag()}"  # the client's VIP is its app name in lower case: the service token owns it
    token, token_id = _service(tokens, app, admin)
    anonymous = _child(stack["eureka"] + "/", app, b.port)
    try:
        started = json.loads(_line(anonymous, 30))
        assert started["started"] is True
        refused = {(f["error"], f["status"]) for f in started["failures"]}
        assert ("EUREKA_ERROR_REGISTER", 401) in refused and ("EUREKA_ERROR_DISCOVER", 401) in refused, started
        assert registry.list(vip=app)[0] == []
        assert _ask(anonymous, "apps") == {"apps": {}}  # it could not fetch the registry either
    finally:
        _end(anonymous)

    child = _child(url_with_token(stack["eureka"], token, app) + "/", app, b.port)
    try:
        assert json.loads(_line(child, 30)) == {"started": True, "failures": []}, child.stderr
        [inst] = registry.list(vip=app)[0]
        assert inst.app == app.upper() and inst.port == b.port and inst.registered_by == f"service:{app}"
        _until(lambda: app.upper() in _ask(child, "apps")["apps"], 10, "the client's fetch shows itself")
        assert _ask(child, "failures") == {"failures": []}  # its heartbeats and fetches are accepted
        assert _ask(child, "stop") == {"stopped": True}
        child.wait(timeout=10)
        assert registry.list(vip=app)[0] == []
    finally:
        _end(child)
        tokens.revoke(token_id)
