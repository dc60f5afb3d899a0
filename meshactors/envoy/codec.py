"""ADS wire codec: DiscoveryRequest/Response bytes from gRPC <-> the plain types of meshactors.xds.types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import Any, TypeVar

import grpc

# Resource message modules are imported so their types are in the default descriptor pool: a SotW
# response carries no resource names outside the resources themselves (see `_resource_name`).
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.core.v3 import base_pb2, extension_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_components_pb2, route_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # noqa: F401
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, descriptor_pool, message, message_factory
from google.rpc import status_pb2

from meshactors.auth.model import MAX_TOKEN_CHARS
from meshactors.envoy.bootstrap import NODE_TOKEN_KEY
from meshactors.errors import CodecError, InvalidArgument
from meshactors.xds.types import (
    TYPE_PREFIX,
    DeltaRequest,
    DeltaResponse,
    ErrorDetail,
    Node,
    SotwRequest,
    SotwResponse,
    VersionedResource,
    content_version,
    node_zone,
)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
DELTA_ADS_METHOD = f"/{ADS_SERVICE}/DeltaAggregatedResources"
SOTW_ADS_METHOD = f"/{ADS_SERVICE}/StreamAggregatedResources"

# A NACK's error text as kept by a stream (a client may send megabytes of it).
MAX_ERROR_MESSAGE_CHARS = 1024

# Encoded resources are cached per VersionedResource: one resource goes to thousands of sessions.
ENCODE_CACHE_SIZE = 8192

DeltaHandler = Callable[[AsyncIterator[DeltaRequest], "grpc.aio.ServicerContext"], AsyncIterator[DeltaResponse]]
SotwHandler = Callable[[AsyncIterator[SotwRequest], "grpc.aio.ServicerContext"], AsyncIterator[SotwResponse]]

_M = TypeVar("_M", bound=message.Message)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _length_delimited_tag(msg_class: type[message.Message], field: str) -> bytes:
    return _varint((msg_class.DESCRIPTOR.fields_by_name[field].number << 3) | 2)


# Both responses keep `resources` as field 2; taken from the descriptors rather than hard-coded.
_DELTA_RESOURCES_TAG = _length_delimited_tag(discovery_pb2.DeltaDiscoveryResponse, "resources")
_SOTW_RESOURCES_TAG = _length_delimited_tag(discovery_pb2.DiscoveryResponse, "resources")
_DELTA_NONCE_TAG = _length_delimited_tag(discovery_pb2.DeltaDiscoveryResponse, "nonce")


def _parse(msg_class: type[_M], data: bytes) -> _M:
    try:
        return msg_class.FromString(data)
    except message.DecodeError as exc:
        raise CodecError(f"not a valid {msg_class.DESCRIPTOR.full_name}: {exc}") from exc


def _node_to_proto(node: Node) -> base_pb2.Node:
    out = base_pb2.Node(id=node.id, cluster=node.cluster, user_agent_name=node.user_agent_name)
    if node.zone:
        out.locality.zone = node.zone
    if node.token:
        out.metadata.fields[NODE_TOKEN_KEY].string_value = node.token
    return out


def _node_token(node: base_pb2.Node) -> str:
    """The node metadata's `meshactors_token` when it is a string (cut: no token is that long), else ""."""
    if not node.HasField("metadata"):
        return ""
    value = node.metadata.fields.get(NODE_TOKEN_KEY)
    if value is None or value.WhichOneof("kind") != "string_value":
        return ""
    return value.string_value[: 4 * MAX_TOKEN_CHARS]


def _node_from_proto(msg: Any) -> Node | None:
    """The request's node; of its metadata only the token is kept (and never shown), the rest is dropped. Of its
    locality only the zone is kept, when `node_zone` allows it."""
    if not msg.HasField("node"):
        return None
    node = msg.node
    return Node(
        id=node.id, cluster=node.cluster, user_agent_name=node.user_agent_name, token=_node_token(node),
        zone=node_zone(node.locality.zone),
    )  # fmt: skip


def _error_from_proto(msg: Any) -> ErrorDetail | None:
    """A NACK's error; its text, kept per stream and shown in statistics, is cut to MAX_ERROR_MESSAGE_CHARS."""
    if not msg.HasField("error_detail"):
        return None
    text = msg.error_detail.message
    if len(text) > MAX_ERROR_MESSAGE_CHARS:
        text = f"{text[:MAX_ERROR_MESSAGE_CHARS]}...(+{len(text) - MAX_ERROR_MESSAGE_CHARS} chars)"
    return ErrorDetail(code=msg.error_detail.code, message=text)


def _error_to_proto(err: ErrorDetail) -> status_pb2.Status:
    return status_pb2.Status(code=err.code, message=err.message)


# ---------------------------------------------------------------------------------------------- delta


def decode_delta_request(data: bytes) -> DeltaRequest:
    """DeltaDiscoveryRequest bytes -> DeltaRequest (resource locators, xdstp, are not supported)."""
    msg = _parse(discovery_pb2.DeltaDiscoveryRequest, data)
    return DeltaRequest(
        type_url=msg.type_url,
        node=_node_from_proto(msg),
        response_nonce=msg.response_nonce,
        error_detail=_error_from_proto(msg),
        subscribe=tuple(msg.resource_names_subscribe),
        unsubscribe=tuple(msg.resource_names_unsubscribe),
        initial_resource_versions=dict(msg.initial_resource_versions),
    )


def encode_delta_request(req: DeltaRequest) -> bytes:
    msg = discovery_pb2.DeltaDiscoveryRequest(
        type_url=req.type_url,
        response_nonce=req.response_nonce,
        resource_names_subscribe=req.subscribe,
        resource_names_unsubscribe=req.unsubscribe,
        initial_resource_versions=req.initial_resource_versions,
    )
    if req.node is not None:
        msg.node.CopyFrom(_node_to_proto(req.node))
    if req.error_detail is not None:
        msg.error_detail.CopyFrom(_error_to_proto(req.error_detail))
    return msg.SerializeToString()


@lru_cache(maxsize=ENCODE_CACHE_SIZE)
def _framed_delta_resource(res: VersionedResource) -> bytes:
    """One `resources` entry of a DeltaDiscoveryResponse, tag and length included."""
    msg = discovery_pb2.Resource(name=res.name, version=res.version, aliases=res.aliases)
    if res.body is not None:
        msg.resource.type_url = res.type_url
        msg.resource.value = res.body
    data = msg.SerializeToString()
    return _DELTA_RESOURCES_TAG + _varint(len(data)) + data


@lru_cache(maxsize=ENCODE_CACHE_SIZE)
def _delta_body(
    type_url: str, resources: tuple[VersionedResource, ...], removed: tuple[str, ...], system_version_info: str
) -> bytes:
    """Every field of a DeltaDiscoveryResponse but its nonce: the same bytes for every stream sent this content."""
    head = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info=system_version_info, type_url=type_url, removed_resources=removed
    ).SerializeToString()
    if not resources:
        return head
    return b"".join([head, *map(_framed_delta_resource, resources)])


def encode_delta_response(resp: DeltaResponse) -> bytes:
    """DeltaResponse -> DeltaDiscoveryResponse bytes.

    The fields but the nonce are encoded once per content (scalars by protobuf, each resource's pre-encoded entry
    appended) and shared by every stream; the stream's nonce is appended (protobuf parsers accept fields in any
    order, and repeated message entries simply concatenate).
    """
    nonce = resp.nonce.encode()
    size = len(nonce)
    frame = _DELTA_NONCE_TAG + (bytes((size,)) if size < 0x80 else _varint(size)) + nonce if nonce else b""
    return _delta_body(resp.type_url, resp.resources, resp.removed, resp.system_version_info) + frame


def decode_delta_response(data: bytes) -> DeltaResponse:
    """DeltaDiscoveryResponse bytes -> DeltaResponse; versions are kept as sent on the wire."""
    msg = _parse(discovery_pb2.DeltaDiscoveryResponse, data)
    resources = []
    for r in msg.resources:
        has_body = r.HasField("resource")
        resources.append(
            VersionedResource(
                type_url=r.resource.type_url if has_body else msg.type_url,
                name=r.name,
                version=r.version,
                body=r.resource.value if has_body else None,
                aliases=tuple(r.aliases),
            )
        )
    return DeltaResponse(
        type_url=msg.type_url,
        nonce=msg.nonce,
        resources=tuple(resources),
        removed=tuple(msg.removed_resources),
        system_version_info=msg.system_version_info,
    )


# ----------------------------------------------------------------------------------------------- SotW


def decode_sotw_request(data: bytes) -> SotwRequest:
    """DiscoveryRequest bytes -> SotwRequest."""
    msg = _parse(discovery_pb2.DiscoveryRequest, data)
    return SotwRequest(
        type_url=msg.type_url,
        node=_node_from_proto(msg),
        version_info=msg.version_info,
        resource_names=tuple(msg.resource_names),
        response_nonce=msg.response_nonce,
        error_detail=_error_from_proto(msg),
    )


def encode_sotw_request(req: SotwRequest) -> bytes:
    msg = discovery_pb2.DiscoveryRequest(
        type_url=req.type_url,
        version_info=req.version_info,
        resource_names=req.resource_names,
        response_nonce=req.response_nonce,
    )
    if req.node is not None:
        msg.node.CopyFrom(_node_to_proto(req.node))
    if req.error_detail is not None:
        msg.error_detail.CopyFrom(_error_to_proto(req.error_detail))
    return msg.SerializeToString()


@lru_cache(maxsize=ENCODE_CACHE_SIZE)
def _framed_any(type_url: str, body: bytes) -> bytes:
    """One `resources` entry (an Any) of a DiscoveryResponse, tag and length included."""
    encoded = any_pb2.Any(type_url=type_url, value=body).SerializeToString()
    return _SOTW_RESOURCES_TAG + _varint(len(encoded)) + encoded


def encode_sotw_response(resp: SotwResponse) -> bytes:
    """SotwResponse -> DiscoveryResponse bytes. A resource without a body cannot be said in SotW."""
    parts = [
        discovery_pb2.DiscoveryResponse(
            version_info=resp.version_info, type_url=resp.type_url, nonce=resp.nonce
        ).SerializeToString()
    ]
    for i, res in enumerate(resp.resources):
        if res.body is None:
            raise InvalidArgument(
                f"resources[{i}]", f"{res.name!r} has no body; SotW cannot carry a body-less resource"
            )
        parts.append(_framed_any(res.type_url, res.body))
    return b"".join(parts)


@lru_cache(maxsize=64)
def _name_field(type_url: str) -> tuple[type[message.Message], str]:
    if not type_url.startswith(TYPE_PREFIX):
        raise CodecError(f"type URL {type_url!r} does not start with {TYPE_PREFIX!r}")
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_url[len(TYPE_PREFIX) :])
    except KeyError as exc:
        raise CodecError(f"no message type known for type URL {type_url!r}") from exc
    fields = descriptor.fields_by_name
    field = "name" if "name" in fields else "cluster_name" if "cluster_name" in fields else ""
    if not field:
        raise CodecError(f"{descriptor.full_name} has no name field")
    return message_factory.GetMessageClass(descriptor), field


def _resource_name(type_url: str, body: bytes) -> str:
    """A SotW resource is named inside its own message (`name`, or `cluster_name` for EDS)."""
    msg_class, field = _name_field(type_url)
    return str(getattr(_parse(msg_class, body), field))


def decode_sotw_response(data: bytes) -> SotwResponse:
    """DiscoveryResponse bytes -> SotwResponse; each resource's version is its content version."""
    msg = _parse(discovery_pb2.DiscoveryResponse, data)
    resources = tuple(
        VersionedResource(
            type_url=a.type_url,
            name=_resource_name(a.type_url, a.value),
            version=content_version(a.value),
            body=a.value,
        )
        for a in msg.resources
    )
    return SotwResponse(type_url=msg.type_url, version_info=msg.version_info, nonce=msg.nonce, resources=resources)


# ----------------------------------------------------------------------------------------------- gRPC


def ads_generic_handler(delta_handler: DeltaHandler | None, sotw_handler: SotwHandler | None) -> grpc.GenericRpcHandler:
    """The ADS service for a grpc.aio server: handlers receive and yield the plain request/response types.

    A handler passed as None leaves its method unimplemented (clients get UNIMPLEMENTED).
    """
    methods: dict[str, grpc.RpcMethodHandler] = {}
    if delta_handler is not None:
        methods["DeltaAggregatedResources"] = grpc.stream_stream_rpc_method_handler(
            delta_handler,
            request_deserializer=decode_delta_request,
            response_serializer=encode_delta_response,
        )
    if sotw_handler is not None:
        methods["StreamAggregatedResources"] = grpc.stream_stream_rpc_method_handler(
            sotw_handler,
            request_deserializer=decode_sotw_request,
            response_serializer=encode_sotw_response,
        )
    return grpc.method_handlers_generic_handler(ADS_SERVICE, methods)


def delta_ads_stream(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable:
    """Client side: a callable opening a delta ADS stream that sends DeltaRequest and yields DeltaResponse."""
    return channel.stream_stream(
        DELTA_ADS_METHOD,
        request_serializer=encode_delta_request,
        response_deserializer=decode_delta_response,
    )


def sotw_ads_stream(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable:
    """Client side: a callable opening a SotW ADS stream that sends SotwRequest and yields SotwResponse."""
    return channel.stream_stream(
        SOTW_ADS_METHOD,
        request_serializer=encode_sotw_request,
        response_deserializer=decode_sotw_response,
    )
