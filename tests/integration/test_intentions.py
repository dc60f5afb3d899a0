"""Intentions end to end: real `meshactors sidecar`s and Envoys, the CLI, the registry API, etcd and the builders.

An SVIP served by `orders` behind its sidecar; two callers, `web` (kept allowed) and `api` (flipped). A denied
caller gets 403 with the deciding rule in the server Envoy's RBAC stats, an allowed one 200; flipping `api` takes
effect within a second while `web`'s loop of requests sees no failure and the listener is never rebuilt; the CLI
refuses bad input naming the field and stores nothing; only the destination's owner or an admin may write.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshactors.errors import PermissionDenied
from meshactors.registry.client import RegistryClient
from meshactors.registry.intention_client import IntentionClient
from meshactors.registry.token_client import TokenClient
from meshactors.store.server import free_port
from meshactors.testing.backends import Backend, get
from meshactors.testing.waits import until
from tests.integration.test_svip_mtls import Sidecar

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FLIP_BOUND_S = 1.0  # an intention change reaches the server's Envoy within this


def _stats(admin: int, contains: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter={contains}", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    out = {}
    for line in lines:
        key, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


@pytest.fixture(scope="module")
def mesh(stack: dict[str, Any], session_dir: Path) -> Iterator[dict[str, Any]]:
    rnd = uuid.uuid4().hex[:6]
    server_svc, web_svc, api_svc = f"orders-{rnd}", f"web-{rnd}", f"api-{rnd}"
    svip = f"{server_svc}-secure"
    with TokenClient(stack["registry"], token=stack["token"]) as tokens:
        server_token, _ = tokens.create("service", service=server_svc, vips=[svip])
        web_token, _ = tokens.create("service", service=web_svc)
        api_token, _ = tokens.create("service", service=api_svc)
    app, web_app, api_app = Backend(server_svc), Backend(web_svc), Backend(api_svc)
    server = Sidecar(stack, session_dir / f"int-{server_svc}", server_token, "--svip", svip, "--secure-port",
                     str(free_port()), "--port", str(app.port))  # fmt: skip
    web = Sidecar(stack, session_dir / f"int-{web_svc}", web_token, "--vip", web_svc, "--port", str(web_app.port))
    api = Sidecar(stack, session_dir / f"int-{api_svc}", api_token, "--vip", api_svc, "--port", str(api_app.port))
    with RegistryClient(stack["registry"], token=stack["token"]) as registry:
        try:
            until(lambda: registry.list(vip=svip)[0], 30, f"{svip} was not registered ({server.proc.poll()})", 0.1)
            yield {
                "svip": svip, "server_svc": server_svc, "web_svc": web_svc, "api_svc": api_svc, "server": server,
                "web": web, "api": api, "server_token": server_token, "web_token": web_token,
                "ready": str(Path(stack["state_dir"]) / "ready.json"),
            }  # fmt: skip
        finally:
            with IntentionClient(stack["registry"], token=stack["token"]) as intentions:
                intentions.set_default("allow")  # what the other tests of the session expect
            results = [server.stop(), web.stop(), api.stop()]
            for backend in (app, web_app, api_app):
                backend.stop()
    for code, _, err in results:
        assert code == 0, err[-2000:]


@pytest.fixture(scope="module")
def admin_api(stack: dict[str, Any]) -> Iterator[IntentionClient]:
    with IntentionClient(stack["registry"], token=stack["token"]) as client:
        yield client


def _cli(mesh: dict[str, Any], *args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    extra = ["--token", token] if token else []
    return subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "intention", *args, "--ready-file", mesh["ready"], *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _call(mesh: dict[str, Any], caller: str) -> int:
    try:
        return get(("127.0.0.1", mesh[caller].listen), mesh["svip"], timeout_s=5).status
    except OSError:
        return 0


def _rbac(mesh: dict[str, Any]) -> dict[str, int]:
    return _stats(mesh["server"].admin, "rbac")


def test_a_denied_caller_gets_403_an_allowed_one_200_and_the_rule_is_in_the_rbac_stats(mesh: dict[str, Any]) -> None:
    svip, web, api = mesh["svip"], mesh["web_svc"], mesh["api_svc"]
    for action, source in (("allow", web), ("deny", api)):
        done = _cli(mesh, action, "--from", source, "--to", svip)
        assert done.returncode == 0, done.stderr
        assert f"{source} -> {svip}: {action}" in done.stdout
    until(lambda: _call(mesh, "web") == 200, 30, "web never got a 200 through the SVIP", 0.02)
    until(lambda: _call(mesh, "api") == 403, 30, "api was never refused", 0.02)
    reply = get(("127.0.0.1", mesh["api"].listen), svip, timeout_s=5)
    assert (reply.status, reply.body) == (403, "RBAC: access denied")
    stats = _rbac(mesh)
    assert stats.get(f"http.inbound_secure.rbac.policy.deny:svc/{api}.denied", 0) >= 1, stats
    assert stats.get(f"http.inbound_secure.rbac.policy.allow:svc/{web}.shadow_allowed", 0) >= 1, stats
    assert stats.get("http.inbound_secure.rbac.denied", 0) >= 1, stats


def test_flipping_an_intention_takes_effect_within_a_second_and_a_kept_caller_never_fails(
    mesh: dict[str, Any], admin_api: IntentionClient
) -> None:
    svip, api = mesh["svip"], mesh["api_svc"]
    admin_api.set(mesh["web_svc"], svip, "allow")
    admin_api.set(api, svip, "allow")
    until(lambda: _call(mesh, "api") == 200 and _call(mesh, "web") == 200, 30, "api was never let through", 0.02)
    listeners = _stats(mesh["server"].admin, "listener_manager.listener_")
    statuses: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            statuses.append(_call(mesh, "web"))

    keeper = threading.Thread(target=loop, daemon=True)
    keeper.start()
    took: dict[str, float] = {}
    try:
        for action, expect in (("deny", 403), ("allow", 200), ("deny", 403), ("allow", 200)):
            start = time.perf_counter()
            admin_api.set(api, svip, action)
            until(
                lambda expect=expect: _call(mesh, "api") == expect, 10, f"api never got {expect} after {action}", 0.02
            )
            took.setdefault(action, 0.0)
            took[action] = max(took[action], time.perf_counter() - start)
    finally:
        stop.set()
        keeper.join(timeout=10)
    print(f"intention flip to first effect: deny {took['deny'] * 1000:.0f} ms, allow {took['allow'] * 1000:.0f} ms "
          f"(worst of 2 each); web sent {len(statuses)} requests meanwhile")  # fmt: skip
    assert max(took.values()) < FLIP_BOUND_S, took
    assert len(statuses) >= 10 and set(statuses) == {200}, [s for s in statuses if s != 200][:10]
    assert _stats(mesh["server"].admin, "listener_manager.listener_") == listeners  # ECDS: the listener is kept
    assert mesh["server"].proc.poll() is None


def test_the_mesh_default_decides_for_callers_without_an_intention(
    mesh: dict[str, Any], admin_api: IntentionClient
) -> None:
    svip, api = mesh["svip"], mesh["api_svc"]
    admin_api.set(api, svip, "deny")
    admin_api.delete(api, svip)  # api now falls to the mesh default (allow: never set in this session yet)
    until(lambda: _call(mesh, "api") == 200, 10, "api was not allowed by the default", 0.02)
    done = _cli(mesh, "default", "deny")
    assert done.returncode == 0, done.stderr
    until(lambda: _call(mesh, "api") == 403, 10, "api was not denied by the mesh default", 0.02)
    assert _call(mesh, "web") == 200  # its own intention still allows it
    assert _rbac(mesh).get("http.inbound_secure.rbac.policy.deny:mesh-default.denied", 0) >= 1
    admin_api.set_default("allow")
    until(lambda: _call(mesh, "api") == 200, 10, "api was not allowed again", 0.02)


def test_the_cli_lists_refuses_bad_input_storing_nothing_and_only_owners_write(
    mesh: dict[str, Any], admin_api: IntentionClient
) -> None:
    svip, web = mesh["svip"], mesh["web_svc"]
    before = admin_api.list()
    listed = _cli(mesh, "ls", token=mesh["web_token"])  # reading: any valid token
    assert listed.returncode == 0, listed.stderr
    assert any(line.split() == [web, svip, "allow"] for line in listed.stdout.splitlines()), listed.stdout
    assert "mesh default allow" in listed.stdout
    as_json = json.loads(_cli(mesh, "ls", "--json").stdout)
    assert {"source": web, "destination": svip, "action": "allow"} in as_json["intentions"]
    bad = [
        (("maybe", "--from", web, "--to", svip), "invalid choice: 'maybe'"),
        (("deny", "--from", "", "--to", svip), "intention.source: must not be empty"),
        (("deny", "--from", web, "--to", ""), "intention.destination: must not be empty"),
        (("deny", "--from", "x" * 254, "--to", svip), "intention.source: longer than 253 characters"),
        (("deny", "--from", web, "--to", "y" * 254), "intention.destination: longer than 253 characters"),
        (("deny", "--from", "Web!", "--to", svip), "intention.source: 'Web!' is not a lowercase DNS name"),
        (("deny", "--from", web, "--to", "*"), "intention.destination: must name one VIP"),
        (("default", "open"), "invalid choice: 'open'"),
    ]
    for args, words in bad:
        done = _cli(mesh, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert words in done.stderr, (args, done.stderr)
    with pytest.raises(Exception, match=r"intention\.action: 'maybe' is not allow or deny"):
        admin_api.set(web, svip, "maybe")  # the API itself refuses what the CLI's choices keep out
    # writing: a service token owning the destination may, another service's may not
    refused = _cli(mesh, "deny", "--from", web, "--to", svip, token=mesh["web_token"])
    assert refused.returncode == 1 and "does not own" in refused.stderr, refused.stderr
    with IntentionClient(admin_api.target, token=mesh["web_token"]) as web_api:
        with pytest.raises(PermissionDenied, match="admin token"):
            web_api.set_default("deny")
    after = admin_api.list()
    assert list(after.intentions) == list(before.intentions) and after.default_action == before.default_action
    owner = _cli(mesh, "allow", "--from", "*", "--to", svip, token=mesh["server_token"])
    assert owner.returncode == 0, owner.stderr
    done = _cli(mesh, "delete", "--from", "*", "--to", svip, token=mesh["server_token"])
    assert done.returncode == 0 and "deleted" in done.stdout, done.stderr
    missing = _cli(mesh, "delete", "--from", "*", "--to", svip)
    assert missing.returncode == 1 and "no intention from '*'" in missing.stderr, missing.stderr
    assert list(admin_api.list().intentions) == list(before.intentions)
