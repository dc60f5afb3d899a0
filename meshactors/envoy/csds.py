"""Envoy's Client Status Discovery Service (CSDS) on an xDS server: node matchers, the ClientStatusResponse from the
host's plain client statistics, and the servicer (admin only), plus a resource's JSON for people."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2
from google.protobuf import any_pb2, json_format, message, timestamp_pb2

# The resource types' modules and the extensions they embed (typed_config), so their contents render as JSON.
from meshactors.envoy import codec, policy, resources  # noqa: F401
from meshactors.errors import InvalidArgument, MeshError
from meshactors.log import get
from meshactors.xds.host import ClientStatusAnswer, ClientSync
from meshactors.xds.sync import ResourceSync

_log = get("envoy.csds")

CSDS_SERVICE = "envoy.service.status.v3.ClientStatusDiscoveryService"
MAX_NODE_MATCHERS = 100
MAX_PATTERN_CHARS = 1024

NodePredicate = Callable[[str], bool]
Metadata = Iterable[tuple[str, str | bytes]]
# The host's answer for a node predicate (None: every node) and whether to include resource contents.
StatusSource = Callable[[NodePredicate | None, bool], ClientStatusAnswer]
# Raises a MeshError (Unauthenticated, PermissionDenied, NotReady) unless the caller may read client status.
Authorize = Callable[[Metadata | None], None]


# ---- node matchers ----------------------------------------------------------------------------------------------


def _string_predicate(m: string_pb2.StringMatcher, field: str) -> NodePredicate:
    pattern = m.WhichOneof("match_pattern")
    if pattern is None:
        raise InvalidArgument(field, "a StringMatcher needs one of exact, prefix, suffix or contains")
    if pattern == "safe_regex":
        raise InvalidArgument(f"{field}.safe_regex", "not supported; use exact, prefix, suffix or contains")
    value = str(getattr(m, pattern))
    if len(value) > MAX_PATTERN_CHARS:
        raise InvalidArgument(f"{field}.{pattern}", f"{len(value)} characters, at most {MAX_PATTERN_CHARS}")
    fold = (lambda s: s.lower()) if m.ignore_case else (lambda s: s)
    want = fold(value)
    tests: dict[str, Callable[[str], bool]] = {
        "exact": lambda s: s == want,
        "prefix": lambda s: s.startswith(want),
        "suffix": lambda s: s.endswith(want),
        "contains": lambda s: want in s,
    }
    test = tests[pattern]
    return lambda node_id: test(fold(node_id))


def node_predicate(matchers: Iterable[node_pb2.NodeMatcher]) -> NodePredicate | None:
    """A predicate on node ids from a request's `node_matchers` (a node matching any of them); None when there are
    none (every node). Node metadata is not kept by the server, so a matcher on it is refused (InvalidArgument)."""
    preds: list[NodePredicate] = []
    for i, m in enumerate(matchers):
        field = f"node_matchers[{i}]"
        if i >= MAX_NODE_MATCHERS:
            raise InvalidArgument("node_matchers", f"more than {MAX_NODE_MATCHERS} matchers")
        if len(m.node_metadatas):
            raise InvalidArgument(f"{field}.node_metadatas", "not supported: the server keeps no node metadata")
        preds.append(_string_predicate(m.node_id, f"{field}.node_id") if m.HasField("node_id") else lambda _: True)
    if not preds:
        return None
    return lambda node_id: any(p(node_id) for p in preds)


# ---- plain statistics -> ClientStatusResponse -------------------------------------------------------------------


def _timestamp(at: float | None) -> timestamp_pb2.Timestamp | None:
    if at is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(at * 1e9))
    return ts


def _generic(res: ResourceSync) -> csds_pb2.ClientConfig.GenericXdsConfig:
    out = csds_pb2.ClientConfig.GenericXdsConfig(
        type_url=res.type_url,
        name=res.name,
        version_info=res.version,
        config_status=csds_pb2.ConfigStatus.Value(res.status.value),
        client_status=config_dump_shared_pb2.ClientResourceStatus.Value(res.client_status.value),
    )
    if res.body is not None:
        out.xds_config.CopyFrom(any_pb2.Any(type_url=res.type_url, value=res.body))
    if (updated := _timestamp(res.since)) is not None:
        out.last_updated.CopyFrom(updated)
    if res.nack_message or res.nack_at is not None:
        state = out.error_state
        state.details = res.nack_message
        state.version_info = res.nack_version
        if (at := _timestamp(res.nack_at)) is not None:
            state.last_update_attempt.CopyFrom(at)
        if res.nack_body is not None:
            state.failed_configuration.CopyFrom(any_pb2.Any(type_url=res.type_url, value=res.nack_body))
    return out


def client_config(client: ClientSync) -> csds_pb2.ClientConfig:
    return csds_pb2.ClientConfig(
        node=base_pb2.Node(id=client.node_id),
        generic_xds_configs=[_generic(r) for r in client.resources],
    )


def client_status_response(answer: ClientStatusAnswer) -> csds_pb2.ClientStatusResponse:
    """One ClientConfig per session (a node with two streams appears twice), in the answer's order."""
    return csds_pb2.ClientStatusResponse(config=[client_config(c) for c in answer.clients])


# ---- the servicer -----------------------------------------------------------------------------------------------


class CsdsService(csds_pb2_grpc.ClientStatusDiscoveryServiceServicer):
    """Fetch and Stream client status for the sessions of one xDS server; every call must pass `authorize`."""

    def __init__(self, server: str, status: StatusSource, authorize: Authorize) -> None:
        self.server = server
        self._status = status
        self._authorize = authorize

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        try:
            self._authorize(context.invocation_metadata())
        except MeshError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code_name), f"CSDS: {exc.message}")

    async def _answer(
        self, request: csds_pb2.ClientStatusRequest, context: grpc.aio.ServicerContext
    ) -> csds_pb2.ClientStatusResponse:
        try:
            match = node_predicate(request.node_matchers)
        except InvalidArgument as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"CSDS: {exc.message}")
        answer = self._status(match, not request.exclude_resource_contents)
        if answer.omitted_clients or answer.omitted_resources or answer.omitted_contents:
            _log.info("client status answer bounded", server=self.server, omitted_clients=answer.omitted_clients,
                      omitted_resources=answer.omitted_resources, omitted_contents=answer.omitted_contents)  # fmt: skip
        return client_status_response(answer)

    async def FetchClientStatus(
        self, request: csds_pb2.ClientStatusRequest, context: grpc.aio.ServicerContext
    ) -> csds_pb2.ClientStatusResponse:
        await self._check(context)
        return await self._answer(request, context)

    async def StreamClientStatus(
        self, request_iterator: AsyncIterator[csds_pb2.ClientStatusRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[csds_pb2.ClientStatusResponse]:
        await self._check(context)
        async for request in request_iterator:
            yield await self._answer(request, context)


def add_to_server(server: grpc.aio.Server, service: CsdsService) -> None:
    csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(service, server)


# ---- for people -------------------------------------------------------------------------------------------------


def resource_json(type_url: str, body: bytes | None) -> Any:
    """A serialized resource as Envoy's JSON (proto field names), or a note saying why it cannot be shown."""
    if body is None:
        return None
    try:
        return json_format.MessageToDict(any_pb2.Any(type_url=type_url, value=body), preserving_proto_field_name=True)
    except (json_format.Error, message.DecodeError, TypeError, KeyError) as exc:
        return {"@type": type_url, "bytes": len(body), "not_shown": str(exc)[:200]}
