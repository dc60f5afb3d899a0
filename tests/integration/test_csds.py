"""CSDS on the xDS servers against the real stack: a CSDS client stub generated from xds-protos' csds service reads
the session Envoy and raw delta clients (NACKing, withholding ACKs); `proxy-status` agrees; the out-of-sync gauge."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2

from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.testing.backends import get
from meshactors.testing.stack import xds_samples
from meshactors.testing.xds_client import DeltaAdsClient
from meshactors.v1 import registry_pb2 as pb
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaResponse, Node
from tests.integration.test_proxy_status import SilentDeltaClient, _guard_knows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)
OUT_OF_SYNC = "meshactors_xds_sessions_out_of_sync"
DEFAULT_OUT_OF_SYNC_S = 30.0  # HostSettings.out_of_sync_after_s; the session stack runs with the default
STATUS_NAMES = {v: k for k, v in csds_pb2.ConfigStatus.items()}
CLIENT_NAMES = {v: k for k, v in config_dump_shared_pb2.ClientResourceStatus.items()}


def _register(registry: RegistryClient, port: int) -> str:
    vip = f"csds-{uuid.uuid4().hex[:8]}"
    registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, lease=LONG_LEASE))
    return vip


def _admin(stack: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack['token']}"),)


def _exact(node_id: str) -> csds_pb2.ClientStatusRequest:
    return csds_pb2.ClientStatusRequest(
        node_matchers=[node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(exact=node_id))]
    )


async def _fetch(
    stack: dict[str, Any], request: csds_pb2.ClientStatusRequest, metadata: Any = None
) -> list[csds_pb2.ClientConfig]:
    """Every xDS server's ClientConfigs for `request` (an admin call unless `metadata` says otherwise)."""
    configs = []
    for target in stack["xds"]:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
            resp = await stub.FetchClientStatus(request, metadata=_admin(stack) if metadata is None else metadata)
            configs += list(resp.config)
    return configs


def _by_resource(config: csds_pb2.ClientConfig) -> dict[tuple[str, str], csds_pb2.ClientConfig.GenericXdsConfig]:
    return {(g.type_url, g.name): g for g in config.generic_xds_configs}


async def _until_csds(
    stack: dict[str, Any], node: str, ok: Callable[[csds_pb2.ClientConfig], bool], timeout_s: float = 40
) -> csds_pb2.ClientConfig:
    deadline = time.monotonic() + timeout_s
    seen: Any = None
    while time.monotonic() < deadline:
        configs = await _fetch(stack, _exact(node))
        assert all(c.node.id == node for c in configs), [c.node.id for c in configs]  # the matcher holds
        seen = configs
        if len(configs) == 1 and ok(configs[0]):
            return configs[0]
        await asyncio.sleep(0.3)
    raise AssertionError(f"CSDS of {node} never matched; last seen {seen}")


def _cli(stack: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    ready = f"{stack['state_dir']}/ready.json"
    return subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "proxy-status", "--ready-file", ready, *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _proxy_status_json(stack: dict[str, Any]) -> list[dict[str, Any]]:
    out = _cli(stack, "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    return list(json.loads(out.stdout)["sessions"])


def _worst(statuses: list[str]) -> str:
    for status in ("ERROR", "STALE", "SYNCED"):
        if status in statuses:
            return status
    return "NOT_SENT"


def _csds_types(config: csds_pb2.ClientConfig) -> dict[str, str]:
    """type URL -> its status from the resources' (the rule proxy-status applies per type)."""
    by_type: dict[str, list[str]] = {}
    for g in config.generic_xds_configs:
        by_type.setdefault(g.type_url, []).append(STATUS_NAMES[g.config_status])
    return {url: _worst(statuses) for url, statuses in by_type.items()}


async def _agree(stack: dict[str, Any], node: str, type_urls: tuple[str, ...], timeout_s: float = 30) -> None:
    """CSDS and `proxy-status --json` say the same status per type URL for `node` (read until they do: a push may
    land between the two reads)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        (config,) = await _fetch(stack, _exact(node))
        rows = [r for r in await asyncio.to_thread(_proxy_status_json, stack) if r.get("node_id") == node]
        assert len(rows) == 1, rows
        csds_types = _csds_types(config)
        cli_types = {url: t["status"] for url, t in rows[0]["types"].items()}
        last = (csds_types, cli_types)
        if all(csds_types.get(u) == cli_types.get(u) for u in type_urls) and all(
            cli_types.get(u) in (s, None) for u, s in csds_types.items()
        ):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"CSDS and proxy-status disagree for {node}: {last}")


def _out_of_sync(stack: dict[str, Any], type_url: str) -> float:
    """The out-of-sync gauge for `type_url`, summed over the xDS servers."""
    return sum(s.value for s in xds_samples(stack, OUT_OF_SYNC) if s.labels.get("type_url") == type_url)


async def test_csds_reads_synced_for_envoy_after_a_request_and_agrees_with_proxy_status(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, backends
) -> None:
    b = backends("csds")
    vip = _register(registry, b.port)
    await _guard_knows(envoy, vip)
    reply = await asyncio.to_thread(get, envoy.listen, vip)
    assert (reply.status, reply.body) == (200, "csds")

    def synced(config: csds_pb2.ClientConfig) -> bool:
        got = _by_resource(config)
        return all(
            (url, vip) in got and got[url, vip].config_status == csds_pb2.SYNCED
            and got[url, vip].client_status == config_dump_shared_pb2.ACKED
            for url in (CLUSTER, ENDPOINT)
        )  # fmt: skip

    config = await _until_csds(stack, "e2e-envoy", synced)
    cluster = _by_resource(config)[CLUSTER, vip]
    body = cluster_pb2.Cluster()
    assert cluster.xds_config.Unpack(body) and body.name == vip  # the contents the server sent
    assert cluster.version_info and cluster.last_updated.seconds > 0
    assert not cluster.HasField("error_state")
    bare = await _fetch(stack, csds_pb2.ClientStatusRequest(node_matchers=_exact("e2e-envoy").node_matchers,
                                                            exclude_resource_contents=True))  # fmt: skip
    assert bare and not any(g.HasField("xds_config") for c in bare for g in c.generic_xds_configs)
    everyone = await _fetch(stack, csds_pb2.ClientStatusRequest())
    assert "e2e-envoy" in {c.node.id for c in everyone}
    await _agree(stack, "e2e-envoy", (CLUSTER, ENDPOINT))


async def test_proxy_status_node_shows_what_was_sent_next_to_envoys_config_dump(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, backends
) -> None:
    b = backends("csds-dump")
    vip = _register(registry, b.port)
    await _guard_knows(envoy, vip)
    assert (await asyncio.to_thread(get, envoy.listen, vip)).status == 200
    admin = f"{envoy.admin[0]}:{envoy.admin[1]}"

    deadline = time.monotonic() + 40
    while True:
        out = await asyncio.to_thread(_cli, stack, "e2e-envoy", "--envoy-admin", admin, "--json")
        assert out.returncode == 0, out.stderr[-2000:]
        (session,) = json.loads(out.stdout)["sessions"]
        found = {(r["type_url"], r["name"]): r for r in session["resources"]}
        row = found.get((CLUSTER, vip))
        if row is not None and row["status"] == "SYNCED" and row["proxy"].get("held"):
            break
        assert time.monotonic() < deadline, f"never SYNCED and held: {row}"
        await asyncio.sleep(0.5)
    assert row["sent"]["name"] == vip and row["sent"]["@type"] == CLUSTER
    assert row["proxy"]["source"] == "envoy config_dump" and row["proxy"]["state"] == "active"
    assert row["proxy"]["resource"] == row["sent"]  # Envoy holds exactly what the control plane sent
    assert row["proxy"]["version"] == row["version"] == row["acked_version"]
    endpoint = found[ENDPOINT, vip]
    assert endpoint["proxy"]["held"] and endpoint["proxy"]["resource"]["cluster_name"] == vip

    text = await asyncio.to_thread(_cli, stack, "e2e-envoy", "--envoy-admin", admin)
    assert text.returncode == 0, text.stderr[-2000:]
    assert f"- {vip}: SYNCED ACKED" in text.stdout and "envoy holds the same resource" in text.stdout
    acked = await asyncio.to_thread(_cli, stack, "e2e-envoy")  # no admin address: what the proxy ACKed
    assert acked.returncode == 0 and "proxy (what it ACKed" in acked.stdout

    missing = await asyncio.to_thread(_cli, stack, "nobody-connected-as-this")
    assert missing.returncode == 1 and missing.stdout == ""
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "'nobody-connected-as-this' is not connected to any xDS server" in lines[0]


async def test_csds_error_with_the_nack_text_stale_while_unacked_and_the_out_of_sync_gauge(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess
) -> None:
    vip = _register(registry, 9)
    await _guard_knows(envoy, vip)
    target = stack["xds"][0]
    nacker, silent = f"nacker-{uuid.uuid4().hex[:6]}", f"silent-{uuid.uuid4().hex[:6]}"
    before = await asyncio.to_thread(_out_of_sync, stack, CLUSTER)

    def refuse(resp: DeltaResponse) -> str | None:
        return "test refuses clusters: connect_timeout too short" if resp.type_url == CLUSTER else None

    async with (
        grpc.aio.insecure_channel(target) as ch1,
        grpc.aio.insecure_channel(target) as ch2,
        DeltaAdsClient(ch1, Node(nacker), nack_when=refuse, strict=False, token=stack["proxy_token"]) as bad,
        SilentDeltaClient(ch2, Node(silent), strict=False, token=stack["proxy_token"]) as quiet,
    ):
        await bad.subscribe(CLUSTER, [vip])
        await quiet.subscribe(CLUSTER, [vip])
        await bad.wait_for_response(lambda r: r.type_url == CLUSTER, timeout=10)
        await quiet.wait_for(CLUSTER, vip, timeout=10)
        opened = time.monotonic()

        def errored(config: csds_pb2.ClientConfig) -> bool:
            g = _by_resource(config).get((CLUSTER, vip))
            return g is not None and g.config_status == csds_pb2.ERROR

        g = _by_resource(await _until_csds(stack, nacker, errored))[CLUSTER, vip]
        assert CLIENT_NAMES[g.client_status] == "NACKED"
        assert "test refuses clusters: connect_timeout too short" in g.error_state.details
        assert g.error_state.version_info and g.error_state.last_update_attempt.seconds > 0
        refused = cluster_pb2.Cluster()
        assert g.error_state.failed_configuration.Unpack(refused) and refused.name == vip

        def stale(config: csds_pb2.ClientConfig) -> bool:
            g = _by_resource(config).get((CLUSTER, vip))
            return g is not None and g.config_status == csds_pb2.STALE

        g = _by_resource(await _until_csds(stack, silent, stale))[CLUSTER, vip]
        assert CLIENT_NAMES[g.client_status] == "REQUESTED" and g.version_info
        assert g.xds_config.Unpack(cluster_pb2.Cluster())  # what was sent and not ACKed
        await _agree(stack, nacker, (CLUSTER,))
        await _agree(stack, silent, (CLUSTER,))
        row = next(r for r in await asyncio.to_thread(_proxy_status_json, stack) if r["node_id"] == nacker)
        assert "connect_timeout too short" in row["types"][CLUSTER]["last_nack"]

        # The gauge: not yet (the threshold has not passed), then both, and the table says so too.
        if time.monotonic() - opened < DEFAULT_OUT_OF_SYNC_S - 5:
            assert await asyncio.to_thread(_out_of_sync, stack, CLUSTER) == before
        deadline = time.monotonic() + DEFAULT_OUT_OF_SYNC_S + 30
        while (now := await asyncio.to_thread(_out_of_sync, stack, CLUSTER)) < before + 2:
            assert time.monotonic() < deadline, f"out-of-sync gauge stayed at {now} (before: {before})"
            await asyncio.sleep(1)
        assert time.monotonic() - opened >= DEFAULT_OUT_OF_SYNC_S - 1
        table = (await asyncio.to_thread(_cli, stack)).stdout
        line = next(x for x in table.splitlines() if x.startswith(nacker))
        assert "Cluster=ERROR(" in line and "connect_timeout too short" in line
    deadline = time.monotonic() + 20
    while (now := await asyncio.to_thread(_out_of_sync, stack, CLUSTER)) > before:
        assert time.monotonic() < deadline, f"out-of-sync gauge stayed at {now} after the clients left"
        await asyncio.sleep(0.5)


async def test_csds_needs_an_admin_token_and_streams_answers(stack: dict[str, Any]) -> None:
    request = _exact("e2e-envoy")
    for metadata, code in (
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer not-a-token"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", f"Bearer {stack['proxy_token']}"),), grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _fetch(stack, request, metadata)
        assert err.value.code() == code, err.value
        assert stack["proxy_token"].rsplit(".", 1)[1] not in str(err.value.details())
    async with grpc.aio.insecure_channel(stack["xds"][0]) as channel:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
        # nothing is sent on this stream: the server refuses it before reading, and a request written meanwhile
        # would race the refusal (grpc-python then reports its failed write as INTERNAL: seen once in CI)
        refused = stub.StreamClientStatus()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in refused:
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        regex = node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(safe_regex={"regex": ".*"}))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.FetchClientStatus(csds_pb2.ClientStatusRequest(node_matchers=[regex]), metadata=_admin(stack))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "safe_regex" in str(err.value.details())
        answers = [
            r async for r in stub.StreamClientStatus(iter([request, csds_pb2.ClientStatusRequest()]),
                                                      metadata=_admin(stack))
        ]  # fmt: skip
        assert len(answers) == 2
        assert {c.node.id for c in answers[0].config} <= {"e2e-envoy"}
