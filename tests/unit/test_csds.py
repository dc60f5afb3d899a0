"""CSDS: per-resource sync status over the state machines, its ClientStatusResponse, node matchers, the out-of-sync
gauge's logic and what an Envoy config dump holds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.status.v3 import csds_pb2
from envoy.type.matcher.v3 import node_pb2, string_pb2
from prometheus_client.parser import text_string_to_metric_families

from meshactors.envoy import config_dump
from meshactors.envoy.csds import client_status_response, node_predicate, resource_json
from meshactors.errors import InvalidArgument
from meshactors.telemetry import metrics
from meshactors.xds.delta import DeltaStream
from meshactors.xds.host import ClientStatusAnswer, ClientSync
from meshactors.xds.sotw import SotwStream
from meshactors.xds.sync import ClientStatus, ResourceSync, SyncStatus, out_of_sync, resource_sync, worst
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaRequest, ErrorDetail, SotwRequest, VersionedResource
from meshactors.xds.view import DictView


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def cluster(name: str, timeout_s: int = 1) -> VersionedResource:
    body = cluster_pb2.Cluster(name=name, connect_timeout={"seconds": timeout_s}).SerializeToString()
    return VersionedResource.of(CLUSTER, name, body)


def resources(stream: DeltaStream | SotwStream, view: DictView, loaded: bool = True) -> dict[str, ResourceSync]:
    out = {}
    for t in dataclasses.asdict(stream.statistics())["types"]:
        for r in resource_sync(t, view.get, lambda _t, _n: loaded):
            out[f"{r.type_url.rsplit('.', 1)[-1]}/{r.name}"] = r
    return out


def test_delta_resources_through_requested_stale_synced_error() -> None:
    view = DictView([cluster("a"), cluster("b")])
    stream = DeltaStream(view, clock=Clock())
    (resp,) = stream.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a", "b", "gone"))).responses  # at 101
    got = resources(stream, view)
    assert got["Cluster/a"].status is SyncStatus.STALE and got["Cluster/a"].client_status is ClientStatus.REQUESTED
    assert got["Cluster/a"].since == 101.0 and got["Cluster/a"].version == view.get(CLUSTER, "a").version
    assert got["Cluster/a"].body == view.get(CLUSTER, "a").body  # the very version sent
    assert got["Cluster/gone"].status is SyncStatus.NOT_SENT
    assert got["Cluster/gone"].client_status is ClientStatus.DOES_NOT_EXIST
    assert resources(stream, view, loaded=False)["Cluster/gone"].client_status is ClientStatus.REQUESTED

    stream.on_request(DeltaRequest(type_url=CLUSTER, response_nonce=resp.nonce))  # ACK at 102
    got = resources(stream, view)
    assert got["Cluster/a"].status is SyncStatus.SYNCED and got["Cluster/a"].client_status is ClientStatus.ACKED
    assert got["Cluster/a"].since == 102.0 and got["Cluster/a"].acked_version == got["Cluster/a"].version

    good = view.get(CLUSTER, "a").version
    view.put(cluster("a", timeout_s=2))
    (bad,) = stream.on_update([(CLUSTER, "a")])  # at 103
    got = resources(stream, view)
    assert got["Cluster/a"].status is SyncStatus.STALE and got["Cluster/a"].client_status is ClientStatus.ACKED
    assert got["Cluster/a"].acked_version == good and got["Cluster/a"].version != good
    assert got["Cluster/b"].status is SyncStatus.SYNCED  # per resource: b was not pushed again

    stream.on_request(DeltaRequest(CLUSTER, response_nonce=bad.nonce, error_detail=ErrorDetail(3, "bad timeout")))
    got = resources(stream, view)
    a = got["Cluster/a"]
    assert (a.status, a.client_status) == (SyncStatus.ERROR, ClientStatus.NACKED)
    assert a.nack_message == "bad timeout" and a.nack_at == 104.0 and a.since == 104.0
    assert a.version == good and a.nack_version == view.get(CLUSTER, "a").version
    assert a.nack_body == view.get(CLUSTER, "a").body and a.body is None  # the good version is no longer held
    assert got["Cluster/b"].status is SyncStatus.SYNCED  # the NACK named only a
    assert worst(r.status for r in got.values()) is SyncStatus.ERROR


def test_sotw_resources_stale_then_synced_and_contents_left_out_on_request() -> None:
    view = DictView([cluster("a")])
    stream = SotwStream(view, clock=Clock())
    (resp,) = stream.on_request(SotwRequest(type_url=CLUSTER, resource_names=("a",))).responses  # at 101
    (a,) = resources(stream, view).values()
    assert a.status is SyncStatus.STALE and a.since == 101.0 and a.client_status is ClientStatus.REQUESTED
    stream.on_request(
        SotwRequest(CLUSTER, resource_names=("a",), version_info=resp.version_info, response_nonce=resp.nonce)
    )
    (a,) = resources(stream, view).values()
    assert a.status is SyncStatus.SYNCED and a.client_status is ClientStatus.ACKED and a.since == 102.0
    t = dataclasses.asdict(stream.statistics())["types"][0]
    (bare,) = resource_sync(t, view.get, lambda _t, _n: True, contents=False)
    assert bare.body is None and bare.version == a.version


def test_worst_status_of_a_type() -> None:
    assert worst([]) is SyncStatus.NOT_SENT
    assert worst([SyncStatus.NOT_SENT, SyncStatus.SYNCED]) is SyncStatus.SYNCED
    assert worst([SyncStatus.SYNCED, SyncStatus.STALE]) is SyncStatus.STALE
    assert worst([SyncStatus.STALE, SyncStatus.ERROR]) is SyncStatus.ERROR


# ---- the ClientStatusResponse -----------------------------------------------------------------------------------


def answer() -> ClientStatusAnswer:
    good, bad = cluster("a"), cluster("a", timeout_s=9)
    synced = ResourceSync(CLUSTER, "a", SyncStatus.SYNCED, ClientStatus.ACKED, good.version, good.version, 50.5,
                          body=good.body)  # fmt: skip
    nacked = ResourceSync(CLUSTER, "b", SyncStatus.ERROR, ClientStatus.NACKED, "", None, 60.0, nack_message="no",
                          nack_version=bad.version, nack_at=60.0, nack_body=bad.body)  # fmt: skip
    stale = ResourceSync(ENDPOINT, "a", SyncStatus.STALE, ClientStatus.REQUESTED, "v9", None, 70.0)
    client = ClientSync("xds-server-0", "s-1", "node-1", "delta", "envoy", "ipv4:1", 1.0, (), (synced, nacked, stale))
    return ClientStatusAnswer((client,))


def test_client_status_response_from_plain_statistics() -> None:
    resp = client_status_response(answer())
    # what goes on the wire parses back as the CSDS message
    resp = csds_pb2.ClientStatusResponse.FromString(resp.SerializeToString())
    (config,) = resp.config
    assert config.node.id == "node-1"
    a, b, e = config.generic_xds_configs
    assert (a.type_url, a.name, a.version_info) == (CLUSTER, "a", cluster("a").version)
    assert a.config_status == csds_pb2.SYNCED and a.client_status == config_dump_shared_pb2.ACKED
    unpacked = cluster_pb2.Cluster()
    assert a.xds_config.Unpack(unpacked) and unpacked.name == "a" and unpacked.connect_timeout.seconds == 1
    assert a.last_updated.ToNanoseconds() == 50_500_000_000 and not a.HasField("error_state")
    assert b.config_status == csds_pb2.ERROR and b.client_status == config_dump_shared_pb2.NACKED
    assert not b.HasField("xds_config") and b.version_info == ""
    assert b.error_state.details == "no" and b.error_state.version_info == cluster("a", 9).version
    assert b.error_state.last_update_attempt.seconds == 60
    assert b.error_state.failed_configuration.Unpack(unpacked) and unpacked.connect_timeout.seconds == 9
    assert e.config_status == csds_pb2.STALE and e.client_status == config_dump_shared_pb2.REQUESTED
    assert e.version_info == "v9" and not e.HasField("xds_config")


def test_every_status_has_its_csds_enum() -> None:
    assert {s.value for s in SyncStatus} <= set(csds_pb2.ConfigStatus.keys())
    assert {s.value for s in ClientStatus} <= set(config_dump_shared_pb2.ClientResourceStatus.keys())


def test_resource_json_of_a_cluster_and_of_bytes_that_are_not_one() -> None:
    shown = resource_json(CLUSTER, cluster("a").body)
    assert shown["@type"] == CLUSTER and shown["name"] == "a" and shown["connect_timeout"] == "1s"
    assert resource_json(CLUSTER, None) is None
    odd = resource_json(CLUSTER, b"\xff\xff\xff")
    assert odd["bytes"] == 3 and odd["not_shown"]


# ---- node matchers ----------------------------------------------------------------------------------------------


def matcher(**pattern: Any) -> node_pb2.NodeMatcher:
    return node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(**pattern))


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ({"exact": "e2e-envoy"}, ["e2e-envoy"], ["e2e-envoy-2", "E2E-envoy", ""]),
        ({"exact": "E2E-Envoy", "ignore_case": True}, ["e2e-envoy"], ["e2e"]),
        ({"prefix": "web-"}, ["web-1", "web-"], ["api-web-1"]),
        ({"suffix": "-7"}, ["web-7"], ["web-70"]),
        ({"contains": "eb"}, ["web-1"], ["api"]),
    ],
)
def test_node_matcher(pattern: dict[str, Any], yes: list[str], no: list[str]) -> None:
    pred = node_predicate([matcher(**pattern)])
    assert pred is not None
    assert all(pred(n) for n in yes) and not any(pred(n) for n in no)


def test_node_matchers_any_of_them_and_none_means_every_node() -> None:
    assert node_predicate([]) is None
    pred = node_predicate([matcher(exact="a"), matcher(exact="b")])
    assert pred is not None and pred("a") and pred("b") and not pred("c")
    only_any = node_predicate([node_pb2.NodeMatcher()])  # no node_id matcher: every node
    assert only_any is not None and only_any("whatever")


@pytest.mark.parametrize(
    ("m", "field"),
    [
        (matcher(safe_regex={"regex": ".*"}), "node_matchers[0].node_id.safe_regex"),
        (node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher()), "node_matchers[0].node_id"),
        (node_pb2.NodeMatcher(node_metadatas=[{}]), "node_matchers[0].node_metadatas"),
        (matcher(exact="x" * 2000), "node_matchers[0].node_id.exact"),
    ],
)
def test_unsupported_node_matchers_are_refused_naming_the_field(m: node_pb2.NodeMatcher, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        node_predicate([m])
    assert err.value.field == field


# ---- the out-of-sync gauge ----------------------------------------------------------------------------------------


def stream_dict(stream: DeltaStream | SotwStream) -> dict[str, Any]:
    return {"kind": "delta", "protocol": dataclasses.asdict(stream.statistics())}


def test_out_of_sync_counts_stale_and_error_past_the_threshold_only() -> None:
    view = DictView([cluster("a"), VersionedResource.of(ENDPOINT, "a", b"e")])
    clock = Clock()
    silent = DeltaStream(view, clock=clock)
    silent.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",)))  # sent at 101, never ACKed
    nacker = DeltaStream(view, clock=clock)
    (resp,) = nacker.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",))).responses  # at 102
    nacker.on_request(DeltaRequest(CLUSTER, response_nonce=resp.nonce, error_detail=ErrorDetail(3, "x")))  # 103
    good = DeltaStream(view, clock=clock)
    (resp,) = good.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",))).responses
    good.on_request(DeltaRequest(CLUSTER, response_nonce=resp.nonce))
    nothing = DeltaStream(view, clock=clock)
    nothing.on_request(DeltaRequest(type_url=ENDPOINT, subscribe=("missing",)))  # NOT_SENT: nothing to lag behind
    streams = [stream_dict(s) for s in (silent, nacker, good, nothing)]
    assert out_of_sync(streams, after_s=30, now=120.0) == {}
    assert out_of_sync(streams, after_s=30, now=132.5) == {CLUSTER: 1}  # the silent one: 31.5 s
    assert out_of_sync(streams, after_s=30, now=133.5) == {CLUSTER: 2}  # and the NACKer: 30.5 s
    assert out_of_sync(streams, after_s=30, now=10_000) == {CLUSTER: 2}  # the good one never counts


def test_out_of_sync_gauge_family_has_every_served_type_and_others() -> None:
    view = DictView([cluster("a")])
    silent = DeltaStream(view, clock=lambda: 0.0)
    silent.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",)))
    host = {"streams": [stream_dict(silent)]}
    text = metrics.render([metrics.xds_out_of_sync("xds-server-0", host, [CLUSTER, ENDPOINT], 30, now=31)]).decode()
    samples = {
        s.labels["type_url"]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "meshactors_xds_sessions_out_of_sync"
    }
    assert samples == {CLUSTER: 1, ENDPOINT: 0}
    text = metrics.render([metrics.xds_out_of_sync("xds-server-0", host, [ENDPOINT], 30, now=31)]).decode()
    assert 'type_url="other"} 1.0' in text


# ---- an Envoy's config dump ---------------------------------------------------------------------------------------


def test_held_resources_of_a_config_dump() -> None:
    dump = {
        "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {}},
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "static_clusters": [{"cluster": {"name": "xds"}}],
                "dynamic_active_clusters": [{"version_info": "v1", "cluster": {"@type": CLUSTER, "name": "web"}}],
                "dynamic_warming_clusters": [
                    {"version_info": "v2", "cluster": {"name": "web"}},
                    {"version_info": "v3", "cluster": {"name": "api"}},
                ],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                "dynamic_endpoint_configs": [{"version_info": "e1", "endpoint_config": {"cluster_name": "web"}}],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": [
                    {"name": "l", "active_state": {"version_info": "l1", "listener": {"name": "l"}}},
                    {"name": "bad", "error_state": {"failed_configuration": {"name": "bad"}, "details": "x"}},
                ],
            },
        ]
    }
    held = config_dump.held_resources(dump)
    assert set(held[CLUSTER]) == {"web", "api"}  # static clusters are not the control plane's
    assert (held[CLUSTER]["web"].version, held[CLUSTER]["web"].state) == ("v1", "active")  # active wins
    assert held[CLUSTER]["api"].state == "warming"
    assert held[ENDPOINT]["web"].version == "e1"
    listener = "type.googleapis.com/envoy.config.listener.v3.Listener"
    assert held[listener]["l"].state == "active" and held[listener]["bad"].state == "error"


def test_envoy_admin_address_is_checked() -> None:
    with pytest.raises(InvalidArgument) as err:
        config_dump.fetch("no-port")
    assert err.value.field == "--envoy-admin"
