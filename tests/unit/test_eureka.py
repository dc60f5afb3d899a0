"""The Eureka adapter's pure parts: InstanceInfo parsing (JSON, XML) and rendering, the view, the operations."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from meshactors.auth.model import Identity, Role
from meshactors.errors import InvalidArgument, NotFound
from meshactors.eureka import codec
from meshactors.eureka.service import EurekaRegistry
from meshactors.eureka.view import ADDED, DELETED, MODIFIED, EurekaView
from meshactors.model import Instance, InstanceRef, Status
from meshactors.registry.shardmap import ShardMap

ADMIN = Identity("0123456789abcdef", Role.ADMIN)

JAVA_JSON: dict[str, Any] = {
    "instance": {
        "instanceId": "10.0.0.5:orders:8080",
        "hostName": "orders-1.internal",
        "app": "ORDERS",
        "ipAddr": "10.0.0.5",
        "status": "UP",
        "overriddenstatus": "UNKNOWN",
        "port": {"$": 8080, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": codec.DEFAULT_DC_CLASS, "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 5, "durationInSecs": 15},
        "metadata": {"@class": "java.util.HashMap", "management.port": "8081", "zone": "us-east-1a"},
        "homePageUrl": "http://orders-1.internal:8080/",
        "vipAddress": "orders",
        "secureVipAddress": "orders",
        "isCoordinatingDiscoveryServer": "false",
    }
}

JAVA_XML = """<instance>
  <instanceId>10.0.0.6:billing:9090</instanceId>
  <hostName>billing-1</hostName>
  <app>BILLING</app>
  <ipAddr>10.0.0.6</ipAddr>
  <status>STARTING</status>
  <overriddenstatus>UNKNOWN</overriddenstatus>
  <port enabled="true">9090</port>
  <securePort enabled="true">9443</securePort>
  <countryId>1</countryId>
  <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
  <leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs><durationInSecs>90</durationInSecs></leaseInfo>
  <metadata class="java.util.Collections$EmptyMap"/>
  <vipAddress>billing,billing-v2</vipAddress>
  <secureVipAddress>billing-secure</secureVipAddress>
</instance>"""


def _records(body: bytes | str, content_type: str, app: str = "") -> list[Instance]:
    raw = body.encode() if isinstance(body, str) else body
    return codec.records_from_info(codec.parse_instance_body(raw, content_type), app)


def test_java_json_becomes_one_record_with_its_lease_and_metadata() -> None:
    [rec] = _records(json.dumps(JAVA_JSON), "application/json", "orders")
    assert (rec.app, rec.instance_id, rec.host, rec.vip, rec.port) == ("ORDERS", "10.0.0.5:orders:8080", "10.0.0.5",
                                                                       "orders", 8080)  # fmt: skip
    assert rec.svip == "" and rec.secure_port == 0  # secure port disabled: the SVIP is not routed
    assert (rec.lease.renewal_interval_s, rec.lease.duration_s) == (5, 15)
    assert rec.zone == "us-east-1a" and rec.status is Status.UP
    assert codec.client_metadata(rec) == {"management.port": "8081", "zone": "us-east-1a"}
    assert rec.metadata[codec.HOST_NAME_KEY] == "orders-1.internal"


def test_java_xml_with_vip_list_becomes_one_record_per_vip() -> None:
    recs = _records(JAVA_XML, "application/xml")
    assert [(r.vip, r.port, r.svip, r.secure_port) for r in recs] == [
        ("billing", 9090, "billing-secure", 9443),
        ("billing-v2", 9090, "", 0),
    ]
    assert all(r.status is Status.STARTING and r.instance_id == "10.0.0.6:billing:9090" for r in recs)
    info = codec.instance_info(recs)
    assert info["vipAddress"] == "billing,billing-v2" and info["secureVipAddress"] == "billing-secure"
    assert info["port"] == {"$": 9090, "@enabled": "true"} and info["securePort"] == {"$": 9443, "@enabled": "true"}


def test_rendering_round_trips_through_xml_and_json() -> None:
    [rec] = _records(json.dumps(JAVA_JSON), "application/json")
    info = codec.instance_info([rec], "ADDED")
    assert info["hostName"] == "orders-1.internal" and info["ipAddr"] == "10.0.0.5"
    assert info["homePageUrl"] == "http://orders-1.internal:8080/" and info["actionType"] == "ADDED"
    xml = codec.render("instance", info, xml=True)
    root = ET.fromstring(xml)
    assert root.find("port").attrib["enabled"] == "true" and root.find("port").text == "8080"  # type: ignore[union-attr]
    assert root.find("metadata/management.port").text == "8081"  # type: ignore[union-attr]
    again = codec.records_from_info(codec.parse_instance_body(xml, "application/xml"))
    assert [(r.vip, r.port, r.host, r.app, r.instance_id) for r in again] == [("orders", 8080, "10.0.0.5", "ORDERS",
                                                                               "10.0.0.5:orders:8080")]  # fmt: skip
    assert json.loads(codec.render("instance", info, xml=False))["instance"]["vipAddress"] == "orders"


def test_vip_defaults_to_the_app_name() -> None:
    info = {"app": "Inventory", "hostName": "127.0.0.1", "port": 8080}
    [rec] = codec.records_from_info(info)
    assert (rec.vip, rec.port, rec.instance_id, rec.host) == ("inventory", 8080, "127.0.0.1", "127.0.0.1")


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        ("{not json", "application/json", "body"),
        ("<instance><app>X</app>", "application/xml", "body"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><instance/>", "application/xml", "body"),
        ("<application/>", "application/xml", "body"),
        ('{"instance": {"hostName": "h", "port": 80}}', "application/json", "app"),
        ('{"instance": {"app": "A", "port": 80}}', "application/json", "hostName"),
        ('{"instance": {"app": "A", "hostName": "h", "port": {"$": 70000, "@enabled": "true"}}}', "", "port"),
        ('{"instance": {"app": "A", "hostName": "h", "port": {"$": "http", "@enabled": "true"}}}', "", "port"),
        ('{"instance": {"app": "A", "hostName": "h", "ipAddr": "not-an-ip", "port": 80}}', "", "ipAddr"),
        ('{"instance": {"app": "A", "hostName": "h", "port": 80, "vipAddress": "Bad_Name!"}}', "", "vipAddress"),
        ('{"instance": {"app": "A", "hostName": "h", "port": 80, "status": "SLEEPY"}}', "", "status"),
        ('{"instance": {"app": "A", "hostName": "h", "port": {"$": 80, "@enabled": "false"}}}', "", "port"),
        ('{"instance": {"app": "A", "hostName": "h", "port": 80, "leaseInfo": {"durationInSecs": 10, '
         '"renewalIntervalInSecs": 30}}}', "", "leaseInfo.durationInSecs"),
        ('{"instance": {"app": "A", "hostName": "h", "port": 80, "metadata": {"eureka/x": "1"}}}', "",
         "metadata.eureka/x"),
        ('{"instance": {"app": "A", "hostName": "h", "port": 80, "homePageUrl": "' + "x" * 300 + '"}}', "",
         "homePageUrl"),
        ('{"instance": {"app": "A", "hostName": "h", "port": 80, "vipAddress": "a", '
         '"securePort": {"$": 443, "@enabled": "true"}, "secureVipAddress": "a"}}', "", "secureVipAddress"),
    ],
)  # fmt: skip
def test_bad_payloads_name_the_field(body: str, content_type: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        _records(body, content_type)
    assert err.value.field == field, err.value.message


def test_app_in_path_must_match() -> None:
    with pytest.raises(InvalidArgument) as err:
        _records(json.dumps(JAVA_JSON), "application/json", "payments")
    assert err.value.field == "app"


def test_reconcile_hash_is_eurekas() -> None:
    assert codec.reconcile_hash(["UP", "DOWN", "UP", "UP"]) == "DOWN_1_UP_3_"
    assert codec.reconcile_hash([]) == ""


def _inst(iid: str, vip: str = "orders", app: str = "ORDERS", status: Status = Status.UP) -> Instance:
    return Instance(app=app, instance_id=iid, host="10.0.0.1", vip=vip, port=80, status=status)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_view_groups_records_tracks_changes_and_ignores_stale_revisions() -> None:
    clock = Clock()
    view = EurekaView(retention_s=180, clock=clock)
    view.replace_all([(_inst("a"), 5)], revision=10)
    assert view.loaded and [k for k, _ in view.groups()] == [("ORDERS", "a")]
    view.put(_inst("a", vip="orders-v2"), 11)  # a second VIP of the same instance
    assert len(view) == 1 and len(view.find("orders", "a")) == 2
    view.put(_inst("b", status=Status.DOWN), 12)
    assert view.hashcode() == "DOWN_1_UP_1_"
    view.put(_inst("b", status=Status.UP), 12)  # same revision again (the watch's echo of our write): ignored
    assert view.find("ORDERS", "b")[0].status is Status.DOWN
    view.delete(InstanceRef("orders", "b"), 13)
    view.put(_inst("b"), 12)  # a late older event must not resurrect it
    assert view.find("ORDERS", "b") == []
    actions = [(c.key[1], c.action) for c in view.recent_changes()]
    assert actions == [("a", MODIFIED), ("b", DELETED)]
    clock.now += 181
    assert view.recent_changes() == []
    view.advance(20)
    view.put(_inst("b"), 21)
    assert view.find("orders", "b") and view.recent_changes()[0].action == ADDED


def test_view_relisting_keeps_records_written_after_the_listing() -> None:
    view = EurekaView()
    view.put(_inst("new"), 30)
    view.put(_inst("old"), 3)
    view.replace_all([], revision=20)  # listed at 20: "old" is gone, "new" (rev 30) is newer than the listing
    assert [k[1] for k, _ in view.groups()] == ["new"]


class FakeShards:
    """A ShardBackend in memory, for the operations' logic (the real one is tested end to end)."""

    def __init__(self) -> None:
        self.records: dict[InstanceRef, Instance] = {}
        self.rev = 0

    async def register(self, shard: str, instance: Instance) -> tuple[Instance, int]:
        self.rev += 1
        self.records[instance.ref] = instance
        return instance, self.rev

    async def heartbeat(self, shard: str, ref: InstanceRef) -> int:
        if ref not in self.records:
            raise NotFound(f"{ref}")
        return 30

    async def heartbeat_many(self, shard: str, refs: list[InstanceRef]) -> list[Any]:
        return [await self.heartbeat(shard, r) for r in refs]

    async def deregister(self, shard: str, ref: InstanceRef) -> int:
        if self.records.pop(ref, None) is None:
            raise NotFound(f"{ref}")
        self.rev += 1
        return self.rev

    async def set_status(self, shard: str, ref: InstanceRef, status: Status) -> tuple[Instance, int]:
        return await self.update(shard, ref, status, {}, [])

    async def update(
        self, shard: str, ref: InstanceRef, status: Status | None, set_metadata: dict[str, str], remove: list[str]
    ) -> tuple[Instance, int]:
        old = self.records[ref]
        md = {k: v for k, v in old.metadata.items() if k not in remove} | set_metadata
        new = Instance(**{**old.to_dict(), "status": status or old.status, "metadata": md, "lease": old.lease})
        self.records[ref] = new
        self.rev += 1
        return new, self.rev


async def test_status_override_is_sticky_and_removing_it_asks_for_a_new_registration() -> None:
    shards, view = FakeShards(), EurekaView()
    view.replace_all([], 0)
    reg = EurekaRegistry(shards, ShardMap.of_size(2), view)
    info = json.loads(json.dumps(JAVA_JSON))["instance"]
    await reg.register(ADMIN, "orders", info)
    await reg.override_status(ADMIN, "orders", "10.0.0.5:orders:8080", "OUT_OF_SERVICE")
    await reg.register(ADMIN, "ORDERS", info)  # the client re-registers as UP: the override stays
    [rec] = view.find("orders", "10.0.0.5:orders:8080")
    assert rec.status is Status.OUT_OF_SERVICE and codec.instance_info([rec])["overriddenstatus"] == "OUT_OF_SERVICE"
    await reg.renew(ADMIN, "orders", "10.0.0.5:orders:8080")
    await reg.delete_override(ADMIN, "orders", "10.0.0.5:orders:8080", "")
    with pytest.raises(NotFound):
        await reg.renew(ADMIN, "orders", "10.0.0.5:orders:8080")  # -> the client registers again with its own status
    await reg.register(ADMIN, "orders", info)
    [rec] = view.find("orders", "10.0.0.5:orders:8080")
    assert rec.status is Status.UP and codec.OVERRIDE_KEY not in rec.metadata
    await reg.update_metadata(ADMIN, "orders", "10.0.0.5:orders:8080", {"canary": "true"})
    assert codec.client_metadata(view.find("orders", "10.0.0.5:orders:8080")[0])["canary"] == "true"
    with pytest.raises(InvalidArgument):
        await reg.update_metadata(ADMIN, "orders", "10.0.0.5:orders:8080", {"eureka/hostName": "x"})
    await reg.cancel(ADMIN, "orders", "10.0.0.5:orders:8080")
    assert view.find("orders", "10.0.0.5:orders:8080") == [] and shards.records == {}
    with pytest.raises(NotFound):
        await reg.renew(ADMIN, "orders", "10.0.0.5:orders:8080")


async def test_re_registering_with_fewer_vips_removes_the_dropped_ones() -> None:
    shards, view = FakeShards(), EurekaView()
    view.replace_all([], 0)
    reg = EurekaRegistry(shards, ShardMap.of_size(2), view)
    info = {"app": "A", "instanceId": "i1", "hostName": "10.0.0.9", "port": 80, "vipAddress": "a,a-v2"}
    await reg.register(ADMIN, "a", info)
    assert sorted(r.vip for r in shards.records.values()) == ["a", "a-v2"]
    await reg.register(ADMIN, "a", {**info, "vipAddress": "a"})
    assert [r.vip for r in shards.records.values()] == ["a"] and len(view.find("a", "i1")) == 1


@pytest.mark.parametrize("xml", [False, True])
def test_applications_from_fragments_match_the_plain_rendering(xml: bool) -> None:
    recs = _records(JAVA_XML, "application/xml")
    [single] = _records(json.dumps(JAVA_JSON), "application/json")
    infos = {"BILLING": [codec.instance_info(recs, "ADDED")], "ORDERS": [codec.instance_info([single], "ADDED")]}
    plain = codec.render(
        "applications", codec.applications([codec.application(n, i) for n, i in infos.items()], 7, "UP_2_"), xml
    )
    fragments = [(n, [codec.fragment("instance", one, xml) for one in i]) for n, i in infos.items()]
    assembled = codec.applications_body(fragments, 7, "UP_2_", xml)
    if xml:
        assert ET.tostring(ET.fromstring(assembled)) == ET.tostring(ET.fromstring(plain))
    else:
        assert json.loads(assembled) == json.loads(plain)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metadata": {"zone": "us-east-1a\n"}}, "metadata.zone"),
        ({"dataCenterInfo": {"name": "Amazon", "metadata": {"availability-zone": "us-east-1a\n"}},
          "metadata": {}}, "metadata.zone"),
    ],
)  # fmt: skip
def test_a_trailing_newline_is_refused(change: dict[str, Any], field: str) -> None:
    info = {**JAVA_JSON["instance"], **change}
    with pytest.raises(InvalidArgument) as err:
        codec.records_from_info(info)
    assert err.value.field == field, err.value.message


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "application/json", "deeper than"),
        ('{"instance": ' + '{"a": ' * 30_000 + "1" + "}" * 30_001, "application/json", "deeper than"),
        ("<instance>" + "<a>" * 20_000 + "</a>" * 20_000 + "</instance>", "application/xml", "deeper than"),
        ("<instance>" + "<a>" * 50_000, "application/xml", "deeper than"),
        ('{"instance": {"app": ' + "1" * 5000 + "}}", "application/json", "malformed JSON"),
        ('<?xml version="1.0"?>\n<!DOCTYPE instance SYSTEM "http://example.com/x.dtd"><instance/>', "", "DOCTYPE"),
        ("<instance>&lol;</instance>", "application/xml", "malformed XML"),
    ],
)
def test_hostile_bodies_are_refused_naming_the_body(body: str, content_type: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        codec.parse_instance_body(body.encode(), content_type)
    assert err.value.field == "body" and words in err.value.reason, err.value.message


def test_a_body_over_the_size_bound_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="at most"):
        codec.parse_instance_body(b" " * (codec.MAX_BODY_BYTES + 1) + b"{}", "application/json")


def test_nesting_inside_strings_does_not_count() -> None:
    body = json.dumps({"instance": {**JAVA_JSON["instance"], "homePageUrl": "[" * 200}}).encode()
    assert codec.parse_instance_body(body, "application/json")["homePageUrl"] == "[" * 200
    assert codec.json_depth('{"a": "\\"[[[", "b": [[1]]}') == 3
