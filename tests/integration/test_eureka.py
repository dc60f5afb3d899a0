"""The Eureka-compatible REST API end to end: a real Eureka client, Java-shaped requests, routing through Envoy."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from meshactors.envoy.process import EnvoyProcess
from meshactors.model import Instance
from meshactors.registry.client import RegistryClient
from meshactors.testing.backends import get

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHILD = Path(__file__).with_name("eureka_client_child.py")


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def url_with_token(url: str, token: str, user: str = "app") -> str:
    """A Eureka server URL carrying the token as its basic-auth password: http://user:TOKEN@host:port/eureka."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{token}@{rest}"


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)


class Eureka:
    """Plain HTTP requests to the Eureka API, shaped as the Java client sends them: with `token` as the basic-auth
    password (the user name is free), as a client given `http://app:TOKEN@host:port/eureka/` sends it; no
    credentials at all without a token."""

    def __init__(self, url: str, token: str = "", user: str = "app") -> None:
        parts = urlsplit(url)
        self.url, self.token, self.user = url, token, user
        self.host, self.port, self.base = parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/")

    def with_token(self, token: str, user: str = "app") -> Eureka:
        return Eureka(self.url, token, user)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        import http.client

        sent = dict(headers or {})
        if self.token and "Authorization" not in sent:
            sent["Authorization"] = basic_auth(self.user, self.token)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, self.base + path, body=body or None, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, resp.read(), resp.getheader("Content-Type", ""), dict(resp.getheaders()))
        finally:
            conn.close()

    def get_json(self, path: str) -> Reply:
        return self.request("GET", path, headers={"Accept": "application/json"})


@pytest.fixture(scope="module")
def eureka(stack: dict[str, Any]) -> Eureka:
    """The Eureka API with the stack's admin token."""
    assert stack["eureka"].startswith("http://127.0.0.1:") and stack["eureka"].endswith("/eureka")
    return Eureka(stack["eureka"], stack["token"])


def _tag() -> str:
    return uuid.uuid4().hex[:6]


def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def java_json(app: str, iid: str, port: int, vip: str, **extra: Any) -> bytes:
    instance = {
        "instanceId": iid,
        "hostName": "127.0.0.1",
        "app": app.upper(),
        "ipAddr": "127.0.0.1",
        "status": "UP",
        "overriddenstatus": "UNKNOWN",
        "port": {"$": port, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
        "metadata": {"@class": "java.util.Collections$EmptyMap"},
        "homePageUrl": f"http://127.0.0.1:{port}/",
        "vipAddress": vip,
        "secureVipAddress": vip,
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": "1700000000000",
        "lastDirtyTimestamp": "1700000000000",
        **extra,
    }
    return json.dumps({"instance": instance}).encode()


def java_xml(app: str, iid: str, port: int, vip: str) -> bytes:
    return f"""<instance>
  <instanceId>{iid}</instanceId><hostName>127.0.0.1</hostName><app>{app.upper()}</app><ipAddr>127.0.0.1</ipAddr>
  <status>UP</status><overriddenstatus>UNKNOWN</overriddenstatus>
  <port enabled="true">{port}</port><securePort enabled="false">443</securePort><countryId>1</countryId>
  <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
  <leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs><durationInSecs>90</durationInSecs></leaseInfo>
  <metadata><management.port>{port}</management.port></metadata>
  <vipAddress>{vip}</vipAddress><secureVipAddress>{vip}</secureVipAddress>
  <isCoordinatingDiscoveryServer>false</isCoordinatingDiscoveryServer>
  <lastUpdatedTimestamp>1700000000000</lastUpdatedTimestamp><lastDirtyTimestamp>1700000000000</lastDirtyTimestamp>
</instance>""".encode()


JSON = {"Content-Type": "application/json", "Accept": "application/json"}
XML = {"Content-Type": "application/xml"}


def test_java_json_requests_register_renew_override_and_cancel(
    eureka: Eureka, registry: RegistryClient, stack: dict[str, Any]
) -> None:
    app, vip = f"ORDERS-{_tag()}".upper(), f"orders-{_tag()}"
    iid = f"127.0.0.1:{app.lower()}:8080"
    r = eureka.request("POST", f"/v2/apps/{app}", java_json(app, iid, 8080, vip), JSON)
    assert r.status == 204, r.body

    # The same record the gRPC API and `meshactors ls` see, with the client's lease durations.
    [inst] = registry.list(vip=vip)[0]
    assert (inst.app, inst.instance_id, inst.host, inst.port) == (app, iid, "127.0.0.1", 8080)
    assert (inst.lease.renewal_interval_seconds, inst.lease.duration_seconds) == (30, 90)
    ls = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "ls", "--registry", registry.target, "--token", stack["token"],
         "--vip", vip],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert iid in ls.stdout and "1 instance(s)" in ls.stdout, ls.stdout

    got = eureka.get_json(f"/v2/apps/{app}/{iid}")
    assert got.status == 200 and got.content_type.startswith("application/json")
    info = got.json()["instance"]
    assert info["port"] == {"$": 8080, "@enabled": "true"} and info["vipAddress"] == vip
    assert info["dataCenterInfo"]["name"] == "MyOwn" and info["leaseInfo"]["durationInSecs"] == 90
    assert info["homePageUrl"] == "http://127.0.0.1:8080/" and info["status"] == "UP"

    assert eureka.request("PUT", f"/v2/apps/{app}/{iid}?status=UP&lastDirtyTimestamp=1700000000000").status == 200
    assert eureka.request("PUT", f"/v2/apps/{app}/{iid}/status?value=OUT_OF_SERVICE").status == 200
    info = eureka.get_json(f"/v2/apps/{app}/{iid}").json()["instance"]
    assert info["status"] == "OUT_OF_SERVICE" and info["overriddenstatus"] == "OUT_OF_SERVICE"
    assert registry.list(vip=vip)[0][0].status == 4  # STATUS_OUT_OF_SERVICE, in etcd
    # A re-registration (the client's info changed) keeps the override, as Eureka does.
    assert eureka.request("POST", f"/v2/apps/{app}", java_json(app, iid, 8080, vip), JSON).status == 204
    assert eureka.get_json(f"/v2/apps/{app}/{iid}").json()["instance"]["status"] == "OUT_OF_SERVICE"
    assert eureka.request("DELETE", f"/v2/apps/{app}/{iid}/status?value=UP").status == 200
    assert eureka.get_json(f"/v2/apps/{app}/{iid}").json()["instance"]["status"] == "UP"

    assert eureka.request("PUT", f"/v2/apps/{app}/{iid}/metadata?canary=true&owner=team-a").status == 200
    assert eureka.get_json(f"/v2/apps/{app}/{iid}").json()["instance"]["metadata"] == {
        "canary": "true",
        "owner": "team-a",
    }
    assert eureka.get_json(f"/v2/instances/{iid}").json()["instance"]["app"] == app

    assert eureka.request("DELETE", f"/v2/apps/{app}/{iid}").status == 200
    assert registry.list(vip=vip)[0] == []
    assert eureka.get_json(f"/v2/apps/{app}/{iid}").status == 404
    # A heartbeat for an unknown instance is 404: that is what makes Eureka clients register again.
    assert eureka.request("PUT", f"/v2/apps/{app}/{iid}?status=UP").status == 404
    assert eureka.request("DELETE", f"/v2/apps/{app}/{iid}").status == 404


def test_java_xml_requests_and_xml_queries(eureka: Eureka, registry: RegistryClient) -> None:
    app, vip = f"BILLING-{_tag()}".upper(), f"billing-{_tag()}"
    iid = f"127.0.0.1:{app.lower()}:9090"
    before = eureka.request("GET", "/apps/delta").xml()
    assert eureka.request("POST", f"/apps/{app}", java_xml(app, iid, 9090, vip), XML).status == 204

    apps = eureka.request("GET", "/apps/")  # no Accept header: XML, as a Eureka server answers
    assert apps.status == 200 and "xml" in apps.content_type
    root = apps.xml()
    assert root.tag == "applications" and root.findtext("apps__hashcode")
    [node] = [a for a in root.findall("application") if a.findtext("name") == app]
    inst = node.find("instance")
    assert inst is not None and inst.findtext("instanceId") == iid and inst.findtext("vipAddress") == vip
    assert inst.find("port").attrib == {"enabled": "true"} and inst.findtext("port") == "9090"  # type: ignore[union-attr]
    assert inst.findtext("metadata/management.port") == "9090"

    delta = eureka.request("GET", "/apps/delta").xml()
    assert int(delta.findtext("versions__delta") or 0) > int(before.findtext("versions__delta") or 0)
    changed = {(i.findtext("instanceId"), i.findtext("actionType")) for i in delta.iter("instance")}
    assert (iid, "ADDED") in changed
    assert delta.findtext("apps__hashcode") == eureka.request("GET", "/apps").xml().findtext("apps__hashcode")

    by_vip = eureka.request("GET", f"/vips/{vip}").xml()
    assert [i.findtext("instanceId") for i in by_vip.iter("instance")] == [iid]
    assert list(eureka.request("GET", f"/svips/{vip}").xml().iter("instance")) == []  # secure port disabled
    assert eureka.request("GET", f"/apps/{app.lower()}").xml().findtext("instance/app") == app

    assert eureka.request("PUT", f"/apps/{app}/{iid}/status?value=DOWN").status == 200
    assert eureka.request("GET", f"/apps/{app}/{iid}").xml().findtext("status") == "DOWN"
    assert eureka.request("DELETE", f"/apps/{app}/{iid}").status == 200
    delta = eureka.request("GET", "/apps/delta").xml()
    assert (iid, "DELETED") in {(i.findtext("instanceId"), i.findtext("actionType")) for i in delta.iter("instance")}
    assert registry.list(vip=vip)[0] == []


@pytest.mark.parametrize(
    ("body", "headers", "words"),
    [
        (b'{"instance": {"app": "BAD", ', JSON, "malformed JSON"),
        (b"<instance><app>BAD</app>", XML, "malformed XML"),
        (b'{"instance": {"app": "BAD", "port": {"$": 80, "@enabled": "true"}}}', JSON, "hostName"),
        (b'{"instance": {"hostName": "127.0.0.1", "port": 80}}', JSON, "app"),
        (b'{"instance": {"app": "BAD", "hostName": "127.0.0.1", "port": {"$": 99999, "@enabled": "true"}}}', JSON,
         "port"),
    ],
)  # fmt: skip
def test_bad_payloads_get_400_and_write_nothing(
    eureka: Eureka, registry: RegistryClient, body: bytes, headers: dict[str, str], words: str
) -> None:
    before = len(registry.list()[0])
    r = eureka.request("POST", "/v2/apps/BAD", body, headers)
    assert r.status == 400 and words in r.body.decode(), r.body
    assert len(registry.list()[0]) == before and registry.list(app="BAD")[0] == []


def test_a_trailing_newline_is_refused_over_eureka(eureka: Eureka, registry: RegistryClient) -> None:
    app, vip = f"NL{_tag()}", f"nl-{_tag()}"
    body = java_json(app, f"{app.lower()}-1", 8080, vip, metadata={"zone": "z1\n"})
    r = eureka.request("POST", f"/v2/apps/{app}", body, JSON)
    assert r.status == 400 and "metadata.zone" in r.body.decode(), r.body
    assert registry.list(app=app)[0] == []


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"[" * 100_000 + b"]" * 100_000, JSON),
        (b"<instance>" + b"<a>" * 20_000 + b"</a>" * 20_000 + b"</instance>", XML),
    ],
)
def test_deeply_nested_bodies_get_400_naming_the_body(eureka: Eureka, body: bytes, headers: dict[str, str]) -> None:
    r = eureka.request("POST", f"/v2/apps/DEEP{_tag()}", body, headers)
    assert r.status == 400 and r.body.decode().startswith("body: ") and "deeper than" in r.body.decode(), r.body


def test_eureka_client_registers_heartbeats_discovers_and_stops(
    stack: dict[str, Any], eureka: Eureka, registry: RegistryClient, backends: Any
) -> None:
    """py-eureka-client (the real one, from PyPI) against the embedded default."""
    peer_vip = f"peer-{_tag()}"
    b = backends("peer")
    peer_ref, _ = registry.register(Instance(app="", instance_id="", host="127.0.0.1", vip=peer_vip, port=b.port))
    app = f"pyclient-{_tag()}"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "--server", url_with_token(stack["eureka"], stack["token"], app) + "/",
         "--app", app, "--port", str(b.port),
         "--renewal", "1", "--duration", "3"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert json.loads(_line(child, 30)) == {"started": True, "failures": []}, child.stderr
        [inst] = registry.list(vip=app)[0]  # the client's default VIP is its app name in lower case
        assert inst.app == app.upper() and inst.port == b.port and dict(inst.metadata)["team"] == "payments"
        assert (inst.lease.renewal_interval_seconds, inst.lease.duration_seconds) == (1, 3)  # its leaseInfo, honoured

        # Its discovery sees the other apps (here one registered over gRPC).
        seen = _ask(child, "apps")["apps"]
        assert peer_vip.upper() in seen and app.upper() in seen

        # Heartbeats keep it: after twice its lease duration it is the same registration (no re-register).
        time.sleep(6)
        [again] = registry.list(vip=app)[0]
        assert again.registered_at_ms == inst.registered_at_ms

        # Its delta fetches pick up an app registered after it started.
        late_vip = f"late-{_tag()}"
        late_ref, _ = registry.register(Instance(app="", instance_id="", host="127.0.0.1", vip=late_vip, port=b.port))
        _until(lambda: late_vip.upper() in _ask(child, "apps")["apps"], 10, "the client's delta shows the new app")
        registry.deregister(late_ref)

        assert _ask(child, "stop") == {"stopped": True}
        child.wait(timeout=10)
        assert registry.list(vip=app)[0] == []
        time.sleep(2)  # nothing brings it back
        assert registry.list(vip=app)[0] == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        registry.deregister(peer_ref)


def _line(child: subprocess.Popen[str], timeout_s: float) -> str:
    import selectors

    sel = selectors.DefaultSelector()
    assert child.stdout is not None
    sel.register(child.stdout, selectors.EVENT_READ)
    if not sel.select(timeout_s):
        child.kill()
        err = child.stderr.read() if child.stderr else ""
        raise AssertionError(f"eureka client child said nothing in {timeout_s} s: {err}")
    line = child.stdout.readline()
    assert line, f"eureka client child exited: {child.stderr.read() if child.stderr else ''}"
    return line


def _ask(child: subprocess.Popen[str], command: str) -> dict[str, Any]:
    assert child.stdin is not None
    child.stdin.write(command + "\n")
    child.stdin.flush()
    return dict(json.loads(_line(child, 15)))


def test_app_registered_only_through_eureka_is_routed_by_envoy(
    eureka: Eureka, envoy: EnvoyProcess, backends: Any, registry: RegistryClient
) -> None:
    app, vip, alias = f"INVENTORY-{_tag()}".upper(), f"inventory-{_tag()}", f"stock-{_tag()}"
    b = backends("from-eureka")
    iid = f"127.0.0.1:{app.lower()}:{b.port}"
    body = java_json(app, iid, b.port, f"{vip},{alias}")  # a comma-separated vipAddress: both names route
    assert eureka.request("POST", f"/v2/apps/{app}", body, JSON).status == 204
    for name in (vip, alias):  # routable once the names reached the known-VIPs guard
        reply = _until(lambda name=name: (r := get(envoy.listen, name)).status == 200 and r, 1.0, f"{name} routable")
        assert (reply.status, reply.body) == (200, "from-eureka"), name
    assert eureka.get_json(f"/v2/apps/{app}/{iid}").json()["instance"]["vipAddress"] == f"{vip},{alias}"
    assert eureka.request("POST", f"/v2/apps/{app}", java_json(app, iid, b.port, vip), JSON).status == 204
    assert registry.list(vip=alias)[0] == []  # re-registered without the alias: its record is gone
    # Taking it out of service through Eureka takes it out of Envoy's endpoints.
    assert eureka.request("PUT", f"/v2/apps/{app}/{iid}/status?value=OUT_OF_SERVICE").status == 200
    _until(lambda: get(envoy.listen, vip).status == 503, 5, "Envoy stops routing to the OUT_OF_SERVICE instance")
    assert eureka.request("DELETE", f"/v2/apps/{app}/{iid}/status?value=UP").status == 200
    _until(lambda: get(envoy.listen, vip).status == 200, 5, "Envoy routes to it again")
    assert eureka.request("DELETE", f"/v2/apps/{app}/{iid}").status == 200
    assert registry.list(vip=vip)[0] == []


def test_killing_the_eureka_api_loses_nothing(
    eureka: Eureka, registry: RegistryClient, ray_driver: Any, stack: dict[str, Any]
) -> None:
    """The Eureka API actor holds no state of its own: restarted, it reloads its view from etcd and carries on."""
    from meshactors.runtime.controller import observe
    from meshactors.runtime.ops import kill

    app, vip = f"SURVIVOR-{_tag()}".upper(), f"survivor-{_tag()}"
    iid = f"127.0.0.1:{app.lower()}:8080"
    assert eureka.request("POST", f"/apps/{app}", java_json(app, iid, 8080, vip), JSON).status == 204
    before, handle = observe("eureka-api", stack["namespace"])
    kill(handle, restart=True)  # its process (in the co-hosted shape: the mesh host, every role with it)

    def answers() -> bool:
        try:
            return eureka.get_json(f"/v2/apps/{app}/{iid}").status == 200
        except OSError:  # the port is closed while the actor restarts
            return False

    _until(lambda: observe("eureka-api", stack["namespace"])[0].restarts > before.restarts, 30, "Ray restarts it")
    _until(answers, 30, "the restarted Eureka API serves the instance again")
    assert observe("eureka-api", stack["namespace"])[0].pid != before.pid
    assert eureka.request("PUT", f"/v2/apps/{app}/{iid}?status=UP").status == 200
    assert eureka.request("DELETE", f"/v2/apps/{app}/{iid}").status == 200
    assert registry.list(vip=vip)[0] == []
