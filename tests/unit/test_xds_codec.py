"""Round trips of the ADS wire codec (meshactors.envoy.codec) with real Envoy messages as resource bodies."""

from __future__ import annotations

import collections
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.service.discovery.v3 import discovery_pb2

from meshactors.envoy import codec
from meshactors.errors import CodecError, InvalidArgument
from meshactors.xds.types import (
    CLUSTER,
    ENDPOINT,
    VIRTUAL_HOST,
    DeltaRequest,
    DeltaResponse,
    ErrorDetail,
    Node,
    SotwRequest,
    SotwResponse,
    VersionedResource,
    content_version,
)


def cluster(name: str, connect_timeout_s: int = 1) -> VersionedResource:
    msg = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    msg.connect_timeout.seconds = connect_timeout_s
    return VersionedResource.of(CLUSTER, name, msg.SerializeToString())


def cla(name: str) -> VersionedResource:
    msg = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    msg.endpoints.add().lb_endpoints.add().endpoint.address.socket_address.address = "10.0.0.1"
    return VersionedResource.of(ENDPOINT, name, msg.SerializeToString())


def test_delta_request_round_trip_keeps_every_field() -> None:
    req = DeltaRequest(
        type_url=CLUSTER,
        node=Node(id="sidecar-1", cluster="edge", user_agent_name="envoy"),
        response_nonce="n-1",
        error_detail=ErrorDetail(code=3, message="bad cluster"),
        subscribe=("a", "b"),
        unsubscribe=("c",),
        initial_resource_versions={"a": "v1", "b": "v2"},
    )
    assert codec.decode_delta_request(codec.encode_delta_request(req)) == req


def test_delta_request_without_node_or_error_decodes_to_none() -> None:
    data = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER, resource_names_subscribe=["x"]).SerializeToString()
    req = codec.decode_delta_request(data)
    assert req.node is None
    assert req.error_detail is None
    assert req.subscribe == ("x",)


def test_delta_response_round_trip_keeps_versions_bodies_and_aliases() -> None:
    not_found = VersionedResource.of(VIRTUAL_HOST, "routes/ghost", None, aliases=("routes/ghost:80",))
    vh = route_components_pb2.VirtualHost(name="routes/vh", domains=["vh"]).SerializeToString()
    with_alias = VersionedResource.of(VIRTUAL_HOST, "routes/vh", vh, aliases=("routes/vh:80",))
    resp = DeltaResponse(
        type_url=VIRTUAL_HOST,
        nonce="n-7",
        resources=(with_alias, not_found),
        removed=("routes/old",),
        system_version_info="sys",
    )
    assert codec.decode_delta_response(codec.encode_delta_response(resp)) == resp


def test_delta_response_wire_form_matches_protobuf_built_message() -> None:
    a, b = cluster("a"), cluster("b", connect_timeout_s=2)
    absent = VersionedResource.of(CLUSTER, "gone", None)
    resp = DeltaResponse(type_url=CLUSTER, nonce="n-1", resources=(a, b, absent), removed=("old",))
    expected = discovery_pb2.DeltaDiscoveryResponse(type_url=CLUSTER, nonce="n-1", removed_resources=["old"])
    for res in (a, b):
        entry = expected.resources.add(name=res.name, version=res.version)
        entry.resource.type_url = CLUSTER
        entry.resource.value = res.body
    expected.resources.add(name="gone", version=absent.version)
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(codec.encode_delta_response(resp))
    assert parsed == expected
    assert not parsed.resources[2].HasField("resource")
    assert [r.name for r in parsed.resources] == ["a", "b", "gone"]


def test_delta_resource_cache_is_keyed_by_the_whole_resource() -> None:
    a = cluster("a")
    same_name_other_body = VersionedResource(CLUSTER, "a", a.version, cluster("a", connect_timeout_s=9).body)
    first = codec.encode_delta_response(DeltaResponse(type_url=CLUSTER, nonce="n", resources=(a,)))
    again = codec.encode_delta_response(DeltaResponse(type_url=CLUSTER, nonce="n", resources=(a,)))
    other = codec.encode_delta_response(DeltaResponse(type_url=CLUSTER, nonce="n", resources=(same_name_other_body,)))
    assert first == again
    assert other != first
    decoded = codec.decode_delta_response(other).resources[0]
    assert decoded.body == same_name_other_body.body


def test_sotw_request_round_trip() -> None:
    req = SotwRequest(
        type_url=ENDPOINT,
        node=Node(id="grpc-client"),
        version_info="v9",
        resource_names=("a", "b"),
        response_nonce="n-2",
        error_detail=ErrorDetail(code=3, message="xDS response validation errors"),
    )
    assert codec.decode_sotw_request(codec.encode_sotw_request(req)) == req
    bare = SotwRequest(type_url=ENDPOINT)
    assert codec.decode_sotw_request(codec.encode_sotw_request(bare)) == bare


def test_sotw_response_round_trip_recovers_names_and_content_versions() -> None:
    resp = SotwResponse(type_url=CLUSTER, version_info="abc", nonce="n-1", resources=(cluster("a"), cluster("b")))
    assert codec.decode_sotw_response(codec.encode_sotw_response(resp)) == resp
    eds = SotwResponse(type_url=ENDPOINT, version_info="def", nonce="n-2", resources=(cla("svc"),))
    decoded = codec.decode_sotw_response(codec.encode_sotw_response(eds))
    assert decoded.resources[0].name == "svc"  # from cluster_name
    assert decoded.resources[0].version == content_version(cla("svc").body)


def test_sotw_wire_form_is_a_list_of_any() -> None:
    a = cluster("a")
    data = codec.encode_sotw_response(SotwResponse(type_url=CLUSTER, version_info="v", nonce="n", resources=(a,)))
    parsed = discovery_pb2.DiscoveryResponse.FromString(data)
    assert (parsed.version_info, parsed.nonce, parsed.type_url) == ("v", "n", CLUSTER)
    assert parsed.resources[0].type_url == CLUSTER
    assert parsed.resources[0].value == a.body


def test_sotw_cannot_carry_a_bodyless_resource() -> None:
    resp = SotwResponse(
        type_url=CLUSTER, version_info="v", nonce="n", resources=(VersionedResource.of(CLUSTER, "x", None),)
    )
    with pytest.raises(InvalidArgument, match=r"resources\[0\]"):
        codec.encode_sotw_response(resp)


def test_garbage_bytes_raise_codec_error() -> None:
    for decode in (
        codec.decode_delta_request,
        codec.decode_delta_response,
        codec.decode_sotw_request,
        codec.decode_sotw_response,
    ):
        with pytest.raises(CodecError):
            decode(b"\xff\xff\xff")


def test_sotw_response_of_unknown_type_url_raises_codec_error() -> None:
    msg = discovery_pb2.DiscoveryResponse(type_url="type.googleapis.com/nope.Nothing")
    msg.resources.add(type_url="type.googleapis.com/nope.Nothing", value=b"")
    with pytest.raises(CodecError, match=r"nope\.Nothing"):
        codec.decode_sotw_response(msg.SerializeToString())


def test_generic_handler_wires_the_codec_for_both_methods() -> None:
    async def delta(requests: Any, context: Any) -> Any:
        yield DeltaResponse(type_url=CLUSTER, nonce="n")

    async def sotw(requests: Any, context: Any) -> Any:
        yield SotwResponse(type_url=CLUSTER, version_info="", nonce="n")

    details = collections.namedtuple("details", "method invocation_metadata")
    handler = codec.ads_generic_handler(delta, sotw)
    delta_method = handler.service(details(codec.DELTA_ADS_METHOD, ()))
    sotw_method = handler.service(details(codec.SOTW_ADS_METHOD, ()))
    assert delta_method.stream_stream is delta
    assert delta_method.request_deserializer is codec.decode_delta_request
    assert delta_method.response_serializer is codec.encode_delta_response
    assert sotw_method.stream_stream is sotw
    assert sotw_method.request_deserializer is codec.decode_sotw_request
    only_delta = codec.ads_generic_handler(delta, None)
    assert only_delta.service(details(codec.SOTW_ADS_METHOD, ())) is None


def test_client_stream_helpers_use_the_codec() -> None:
    calls: list[tuple[str, Any, Any]] = []

    class FakeChannel:
        def stream_stream(self, method: str, request_serializer: Any, response_deserializer: Any) -> str:
            calls.append((method, request_serializer, response_deserializer))
            return "callable"

    channel: Any = FakeChannel()
    assert codec.delta_ads_stream(channel) == "callable"
    assert codec.sotw_ads_stream(channel) == "callable"
    assert calls == [
        (codec.DELTA_ADS_METHOD, codec.encode_delta_request, codec.decode_delta_response),
        (codec.SOTW_ADS_METHOD, codec.encode_sotw_request, codec.decode_sotw_response),
    ]
    assert codec.DELTA_ADS_METHOD.endswith("AggregatedDiscoveryService/DeltaAggregatedResources")
    assert codec.SOTW_ADS_METHOD.endswith("AggregatedDiscoveryService/StreamAggregatedResources")
    assert isinstance(codec.ads_generic_handler(None, None), grpc.GenericRpcHandler)


def test_a_huge_nack_text_is_kept_cut_with_a_marker() -> None:
    from meshactors.xds.types import ErrorDetail

    wire = codec.encode_sotw_request(SotwRequest(type_url="t", error_detail=ErrorDetail(13, "e" * 1_000_000)))
    got = codec.decode_sotw_request(wire).error_detail
    assert got is not None and got.code == 13 and len(got.message) < 1100 and got.message.endswith("chars)")
    wire = codec.encode_delta_request(DeltaRequest(type_url="t", error_detail=ErrorDetail(13, "short")))
    assert codec.decode_delta_request(wire).error_detail == ErrorDetail(13, "short")
