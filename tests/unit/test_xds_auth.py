"""The ADS stream credential: metadata first, node metadata second, and the node binding of proxy tokens."""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshactors.auth.model import Role
from meshactors.envoy.bootstrap import NODE_TOKEN_KEY
from meshactors.envoy.codec import decode_delta_request, decode_sotw_request, encode_delta_request
from meshactors.errors import NotReady, PermissionDenied, Unauthenticated
from meshactors.testing.xds_client import StaticTokens
from meshactors.xds.auth import authorization, authorize, stream_token
from meshactors.xds.types import CLUSTER, DeltaRequest, Node


def test_authorization_metadata_comes_first_and_bytes_are_decoded() -> None:
    assert authorization([("x-other", "a"), ("authorization", "Bearer t1"), ("authorization", "Bearer t2")]) == (
        "Bearer t1"
    )
    assert authorization([("authorization", b"Bearer tb")]) == "Bearer tb"
    assert authorization([("x-other", "a")]) is None
    assert authorization(None) is None


def test_stream_token_prefers_the_header_then_the_node_field() -> None:
    assert stream_token("Bearer from-header", "from-node") == "from-header"
    assert stream_token(None, "from-node") == "from-node"
    assert stream_token("  ", "from-node") == "from-node"  # an empty header is no header


def test_a_bad_header_is_refused_not_passed_over_for_the_node_token() -> None:
    with pytest.raises(Unauthenticated, match="Bearer"):
        stream_token("Basic dXNlcjpwYXNz", "from-node")


def test_no_credential_names_both_ways_to_send_one() -> None:
    with pytest.raises(Unauthenticated) as info:
        stream_token(None, "")
    assert "authorization: Bearer" in info.value.message
    assert NODE_TOKEN_KEY in info.value.message


@pytest.fixture
def tokens() -> StaticTokens:
    return StaticTokens()


def test_any_role_may_discover(tokens: StaticTokens) -> None:
    for role, extra in ((Role.ADMIN, {}), (Role.SERVICE, {"service": "shop"}), (Role.PROXY, {})):
        token, record = tokens.mint(role, **extra)
        assert authorize(tokens, [("authorization", f"Bearer {token}")], Node("any-node")).token_id == record.id
        assert authorize(tokens, None, Node("any-node", token=token)).role is role


def test_a_node_bound_proxy_token_discovers_only_for_its_node(tokens: StaticTokens) -> None:
    token, record = tokens.mint(Role.PROXY, node="edge-1")
    assert authorize(tokens, None, Node("edge-1", token=token)).token_id == record.id
    with pytest.raises(PermissionDenied, match="edge-1"):
        authorize(tokens, None, Node("edge-2", token=token))
    with pytest.raises(PermissionDenied, match="names no node"):
        authorize(tokens, [("authorization", f"Bearer {token}")], None)
    with pytest.raises(PermissionDenied, match="names no node"):
        authorize(tokens, [("authorization", f"Bearer {token}")], Node(""))


def test_malformed_unknown_and_revoked_tokens_are_unauthenticated(tokens: StaticTokens) -> None:
    token, record = tokens.mint()
    with pytest.raises(Unauthenticated, match="not a meshactors token"):
        authorize(tokens, None, Node("n", token="not-a-token"))
    with pytest.raises(Unauthenticated, match="characters long"):
        authorize(tokens, None, Node("n", token="x" * 5000))
    other, _ = StaticTokens().mint()
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        authorize(tokens, None, Node("n", token=other))
    tokens.revoke(record.id)
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        authorize(tokens, [("authorization", f"Bearer {token}")], Node("n"))


def test_a_table_still_loading_is_not_ready() -> None:
    def loading(token: str) -> None:
        raise NotReady("the token table is still loading; retry")

    with pytest.raises(NotReady):
        authorize(loading, None, Node("n", token="t"))  # type: ignore[arg-type]


def test_the_codec_keeps_only_the_token_of_the_node_metadata_and_never_shows_it() -> None:
    msg = discovery_pb2.DiscoveryRequest(type_url=CLUSTER)
    msg.node.id = "g1"
    msg.node.metadata.fields[NODE_TOKEN_KEY].string_value = "ma1.secret"
    msg.node.metadata.fields["other"].string_value = "dropped"
    req = decode_sotw_request(msg.SerializeToString())
    assert req.node is not None and req.node.token == "ma1.secret"
    assert "ma1.secret" not in repr(req) and "dropped" not in repr(req)
    # a token that is no string is no token
    msg.node.metadata.fields[NODE_TOKEN_KEY].number_value = 7
    node = decode_sotw_request(msg.SerializeToString()).node
    assert node is not None and node.token == ""
    # what the test clients send round-trips
    sent = DeltaRequest(CLUSTER, node=Node("n", token="tok"))
    got = decode_delta_request(encode_delta_request(sent)).node
    assert got is not None and got.token == "tok"
    plain = decode_delta_request(encode_delta_request(DeltaRequest(CLUSTER, node=Node("n")))).node
    assert plain is not None and plain.token == ""
