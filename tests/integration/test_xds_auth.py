"""Every ADS stream of the stack's xDS servers is authenticated: delta and SotW, raw clients and real Envoys.

No credentials, a malformed or a revoked token: UNAUTHENTICATED and nothing sent; a proxy token bound to another
node: PERMISSION_DENIED; a valid token as `authorization` metadata or as the node's `meshactors_token`: served;
revoking a token ends the streams it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors.envoy.codec import delta_ads_stream, sotw_ads_stream
from meshactors.envoy.process import EnvoyProcess, start_generic_envoy, xds_endpoints
from meshactors.registry.client import RegistryClient
from meshactors.registry.token_client import TokenClient
from meshactors.store.server import free_port
from meshactors.testing.backends import get
from meshactors.testing.stack import xds_samples
from meshactors.testing.waits import until
from meshactors.testing.xds_client import DeltaAdsClient, SotwAdsClient
from meshactors.v1 import registry_pb2 as pb
from meshactors.xds.types import CLUSTER, DeltaRequest, Node, SotwRequest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)
KINDS = ["delta", "sotw"]


@pytest.fixture(scope="module")
def tokens(stack: dict[str, Any]) -> Iterator[TokenClient]:
    with TokenClient(stack["registry"], token=stack["token"]) as client:
        yield client


@pytest.fixture(scope="module")
def vip(registry: RegistryClient) -> str:
    """A registered VIP: what every stream here asks for (its Cluster is served at once to an admitted stream)."""
    name = f"auth-{uuid.uuid4().hex[:8]}"
    registry.register(pb.Instance(vip=name, host="127.0.0.1", port=9, lease=LONG_LEASE))
    return name


def _node(prefix: str, token: str = "") -> Node:
    return Node(f"{prefix}-{uuid.uuid4().hex[:6]}", user_agent_name="envoy", token=token)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _queued(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while (item := await queue.get()) is not None:
        yield item


async def _refused(
    target: str, kind: str, vip: str, node: Node, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[grpc.aio.AioRpcError, list[Any]]:
    """Open a raw stream that asks for `vip`'s Cluster and stays open: how the server ends it, and what it sent."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    if kind == "delta":
        queue.put_nowait(DeltaRequest(type_url=CLUSTER, node=node, subscribe=(vip,)))
    else:
        queue.put_nowait(SotwRequest(type_url=CLUSTER, node=node, resource_names=(vip,)))
    got: list[Any] = []
    async with grpc.aio.insecure_channel(target) as ch:
        opener = delta_ads_stream(ch) if kind == "delta" else sotw_ads_stream(ch)
        call = opener(_queued(queue), metadata=metadata or None)

        async def read() -> grpc.aio.AioRpcError:
            try:
                async for resp in call:
                    got.append(resp)
            except grpc.aio.AioRpcError as exc:
                return exc
            raise AssertionError(f"the stream ended with OK after {len(got)} responses")

        try:
            err = await asyncio.wait_for(read(), 10)
        finally:
            queue.put_nowait(None)
            call.cancel()
    return err, got


def _client(kind: str, ch: grpc.aio.Channel, node: Node, token: str = "") -> DeltaAdsClient | SotwAdsClient:
    cls = DeltaAdsClient if kind == "delta" else SotwAdsClient
    return cls(ch, node, token=token, timeout=10)


def _refused_total(stack: dict[str, Any], reason: str) -> float:
    return sum(s.value for s in xds_samples(stack, "meshactors_xds_refused_total") if s.labels.get("reason") == reason)


async def _until(predicate: Callable[[], Any], timeout_s: float, what: str) -> None:
    """`until` off the event loop (the predicates block: HTTP, gRPC, Envoy's admin)."""
    await asyncio.to_thread(until, predicate, timeout_s, what, 0.1)


# ---- refused: no, a malformed or a revoked credential; a node the token is not for ---------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_without_credentials_is_unauthenticated_and_gets_nothing(
    stack: dict[str, Any], vip: str, kind: str
) -> None:
    before = await asyncio.to_thread(_refused_total, stack, "unauthenticated")
    err, got = await _refused(stack["xds"][0], kind, vip, _node("anon"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())
    assert "authorization: Bearer" in (err.details() or "") and "meshactors_token" in (err.details() or "")
    assert got == []
    assert await asyncio.to_thread(_refused_total, stack, "unauthenticated") >= before + 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["metadata", "node"])
async def test_a_malformed_token_is_unauthenticated(stack: dict[str, Any], vip: str, kind: str, where: str) -> None:
    bad = "ma1.not-a.real-token"
    if where == "metadata":
        err, got = await _refused(stack["xds"][0], kind, vip, _node("bad"), _bearer(bad))
    else:
        err, got = await _refused(stack["xds"][0], kind, vip, _node("bad", token=bad))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())
    assert "not a meshactors token" in (err.details() or "")
    assert bad not in (err.details() or "")
    assert got == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_header_of_another_scheme_is_unauthenticated(stack: dict[str, Any], vip: str, kind: str) -> None:
    err, got = await _refused(
        stack["xds"][0], kind, vip, _node("basic", token=stack["proxy_token"]), (("authorization", "Basic eDp5"),)
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())
    assert got == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_revoked_token_is_unauthenticated(
    stack: dict[str, Any], tokens: TokenClient, vip: str, kind: str
) -> None:
    token, info = tokens.create("proxy", description="revoked before use")
    async with contextlib.AsyncExitStack() as streams:
        # a stream on every xDS server proves that server has the token; its end proves the revocation reached it
        # (revoking right after creating would race the two watch events: a server may have seen only the first)
        clients = []
        for addr in stack["xds"]:
            ch = await streams.enter_async_context(grpc.aio.insecure_channel(addr))
            client = await streams.enter_async_context(_client(kind, ch, _node("soon-revoked"), token))
            await client.subscribe(CLUSTER, [vip])
            await client.wait_for(CLUSTER, vip)
            clients.append(client)
        tokens.revoke(info.id)
        for client in clients:
            assert await client.wait_ended(timeout=10) == grpc.StatusCode.UNAUTHENTICATED
    for addr in stack["xds"]:
        err, got = await _refused(addr, kind, vip, _node("revoked", token=token))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (addr, err.code(), err.details())
        assert "unknown or revoked" in (err.details() or "") and got == []
        err, got = await _refused(addr, kind, vip, _node("revoked"), _bearer(token))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and got == [], (addr, err.code(), err.details())


@pytest.mark.parametrize("kind", KINDS)
async def test_a_proxy_token_bound_to_another_node_is_permission_denied(
    stack: dict[str, Any], tokens: TokenClient, vip: str, kind: str
) -> None:
    token, info = tokens.create("proxy", node="edge-a", description="for edge-a only")
    try:
        err, got = await _refused(stack["xds"][0], kind, vip, Node("edge-b", token=token))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (err.code(), err.details())
        assert "edge-a" in (err.details() or "") and "edge-b" in (err.details() or "")
        assert got == []
        err, got = await _refused(stack["xds"][0], kind, vip, Node("edge-b"), _bearer(token))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and got == []
        # its own node is served
        async with grpc.aio.insecure_channel(stack["xds"][0]) as ch, _client(kind, ch, Node("edge-a"), token) as c:
            await c.subscribe(CLUSTER, [vip])
            await c.wait_for(CLUSTER, vip)
    finally:
        tokens.revoke(info.id)


# ---- served: a valid token as metadata or as node metadata -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["metadata", "node"])
async def test_a_valid_proxy_token_is_served(stack: dict[str, Any], vip: str, kind: str, where: str) -> None:
    token = stack["proxy_token"]
    node = _node("ok", token=token if where == "node" else "")
    async with (
        grpc.aio.insecure_channel(stack["xds"][0]) as ch,
        _client(kind, ch, node, token if where == "metadata" else "") as client,
    ):
        await client.subscribe(CLUSTER, [vip])
        await client.wait_for(CLUSTER, vip)
        assert client.violations == []


# ---- revocation ends the streams a token opened -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_an_open_stream_ends_when_its_token_is_revoked(
    stack: dict[str, Any], tokens: TokenClient, vip: str, kind: str
) -> None:
    doomed, info = tokens.create("proxy", description="revoked while streaming")
    async with (
        grpc.aio.insecure_channel(stack["xds"][0]) as ch,
        _client(kind, ch, _node("doomed", token=doomed if kind == "sotw" else ""), doomed if kind == "delta" else "")
        as client,
        _client(kind, ch, _node("bystander"), stack["proxy_token"]) as bystander,
    ):  # fmt: skip
        await client.subscribe(CLUSTER, [vip])
        await bystander.subscribe(CLUSTER, [vip])
        await client.wait_for(CLUSTER, vip)
        await bystander.wait_for(CLUSTER, vip)
        t0 = time.monotonic()
        tokens.revoke(info.id)
        assert await client.wait_ended(timeout=5) == grpc.StatusCode.UNAUTHENTICATED
        print(f"\nstream ended {1e3 * (time.monotonic() - t0):.0f} ms after the revocation")
        assert client._error is not None and "revoked" in client._error.details()  # type: ignore[attr-defined]
        await bystander.expect_silence(0.3)  # another token's stream goes on
        assert bystander.ended_with is None


# ---- a real Envoy: without a token it gets no cluster; the session Envoy (with one) does -----------------------


async def test_an_envoy_without_a_token_gets_no_cluster_while_one_with_a_token_does(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, session_dir: Path, backends: Any
) -> None:
    name = f"auth-envoy-{uuid.uuid4().hex[:8]}"
    backend = backends("owner")
    registry.register(pb.Instance(vip=name, host="127.0.0.1", port=backend.port, lease=LONG_LEASE))

    def routed(proxy: EnvoyProcess) -> bool:
        try:
            reply = get(proxy.listen, name, timeout_s=3)
        except OSError:
            return False
        return (reply.status, reply.body) == (200, "owner")

    await _until(lambda: routed(envoy), 15, "the session Envoy (with its token) routes the VIP")

    before = await asyncio.to_thread(_refused_total, stack, "unauthenticated")
    work = session_dir / f"no-token-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    bare = await asyncio.to_thread(
        start_generic_envoy, xds_endpoints(stack["xds"]), "no-token-envoy", work, listen, admin, "envoy", ""
    )
    try:
        # it has asked (and been refused) more than once: it had every chance to get its configuration
        await _until(
            lambda: _refused_total(stack, "unauthenticated") >= before + 2, 30, "the tokenless Envoy is refused"
        )
        for _ in range(5):
            assert not await asyncio.to_thread(routed, bare), "a tokenless Envoy reached the backend"
        dump = await asyncio.to_thread(bare.admin_get, "/config_dump")
        assert name not in dump, "a tokenless Envoy holds the VIP's cluster"
        assert await asyncio.to_thread(routed, envoy)
    finally:
        await asyncio.to_thread(bare.stop)
