"""`meshactors proxy-status` and the actors' /metrics against the real stack: Envoy, raw delta clients, HTTP GETs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.runtime.topology import kind_of
from meshactors.testing.backends import get
from meshactors.testing.xds_client import DeltaAdsClient
from meshactors.v1 import registry_pb2 as pb
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaResponse, Node

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)


def _register(registry: RegistryClient, port: int) -> str:
    vip = f"ps-{uuid.uuid4().hex[:8]}"
    registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, lease=LONG_LEASE))
    return vip


def _ready_file(stack: dict[str, Any]) -> str:
    return f"{stack['state_dir']}/ready.json"


def _proxy_status(stack: dict[str, Any], json_out: bool = True) -> Any:
    args = [sys.executable, "-m", "meshactors.cli", "proxy-status", "--ready-file", _ready_file(stack)]
    out = subprocess.run([*args, "--json"] if json_out else args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)["sessions"] if json_out else out.stdout


async def _until_status(stack: dict[str, Any], node: str, ok: Callable[[dict[str, Any]], bool], timeout_s: float = 40):
    """The session of `node` in `proxy-status --json` once `ok(its types)` holds; fails with the last seen."""
    deadline = time.monotonic() + timeout_s
    seen: Any = None
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(_proxy_status, stack)
        seen = [r for r in rows if r.get("node_id") == node]
        if seen and ok(seen[0]["types"]):
            return seen[0]
        await asyncio.sleep(0.5)
    raise AssertionError(f"proxy-status of {node} never matched; last seen {seen}")


async def _guard_knows(envoy: EnvoyProcess, vip: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while f'"{vip}"' not in envoy.admin_get("/config_dump?resource=ecds_filters"):
        assert time.monotonic() < deadline, f"{vip} never reached the known-VIPs guard"
        await asyncio.sleep(0.05)


class SilentDeltaClient(DeltaAdsClient):
    """Keeps what it is sent and never ACKs: its types stay STALE."""

    def _handle(self, resp: DeltaResponse) -> None:
        held = self._held.setdefault(resp.type_url, {})
        for res in resp.resources:
            held[res.name] = res


def _status(types: dict[str, Any], type_url: str) -> str | None:
    return (types.get(type_url) or {}).get("status")


async def test_envoy_is_synced_after_a_request_to_a_registered_vip(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, backends
) -> None:
    b = backends("ps")
    vip = _register(registry, b.port)
    await _guard_knows(envoy, vip)
    reply = await asyncio.to_thread(get, envoy.listen, vip)
    assert (reply.status, reply.body) == (200, "ps")

    def synced(types: dict[str, Any]) -> bool:
        sent = {url: t for url, t in types.items() if t["responses"]}
        return (
            _status(types, CLUSTER) == "SYNCED" and _status(types, ENDPOINT) == "SYNCED"
            and all(t["status"] == "SYNCED" for t in sent.values())
        )  # fmt: skip

    row = await _until_status(stack, "e2e-envoy", synced)
    assert row["stream"] == "delta" and row["xds_server"].startswith("xds-server-")
    assert row["types"][CLUSTER]["last_ack_at"] is not None
    assert time.time() - row["types"][CLUSTER]["last_ack_at"] < 120
    table = await asyncio.to_thread(_proxy_status, stack, False)
    assert "e2e-envoy" in table and "Cluster=SYNCED" in table
    print(table)


async def test_a_nacking_client_shows_error_and_a_silent_one_stale(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess
) -> None:
    vip = _register(registry, 9)
    await _guard_knows(envoy, vip)
    target = stack["xds"][0]
    nacker, silent = f"nacker-{uuid.uuid4().hex[:6]}", f"silent-{uuid.uuid4().hex[:6]}"

    def refuse(resp: DeltaResponse) -> str | None:
        return "test refuses clusters" if resp.type_url == CLUSTER else None

    async with (
        grpc.aio.insecure_channel(target) as ch1,
        grpc.aio.insecure_channel(target) as ch2,
        DeltaAdsClient(ch1, Node(nacker), nack_when=refuse, strict=False, token=stack["proxy_token"]) as bad,
        SilentDeltaClient(ch2, Node(silent, token=stack["proxy_token"]), strict=False) as quiet,  # node metadata
    ):
        await bad.subscribe(CLUSTER, [vip])
        await quiet.subscribe(CLUSTER, [vip])
        await bad.wait_for_response(lambda r: r.type_url == CLUSTER, timeout=10)
        await quiet.wait_for(CLUSTER, vip, timeout=10)
        row = await _until_status(stack, nacker, lambda t: _status(t, CLUSTER) == "ERROR")
        assert "test refuses clusters" in row["types"][CLUSTER]["last_nack"]
        assert row["types"][CLUSTER]["last_nack_at"] is not None
        row = await _until_status(stack, silent, lambda t: _status(t, CLUSTER) == "STALE")
        assert row["types"][CLUSTER]["last_ack_at"] is None
        secret = stack["proxy_token"].rsplit(".", 1)[1]
        shown = json.dumps(await asyncio.to_thread(_proxy_status, stack))
        assert secret not in shown and secret not in await asyncio.to_thread(_proxy_status, stack, False)

        metrics = await asyncio.to_thread(_scrape_all, stack)
        nacks = sum(v for (name, labels), v in metrics.items()
                    if name == "meshactors_xds_nacks_total" and dict(labels).get("type_url") == CLUSTER)  # fmt: skip
        assert nacks >= 1
        states: dict[str, float] = {}
        for (name, labels), v in metrics.items():  # summed over the xDS servers
            if name == "meshactors_xds_session_types" and dict(labels)["type_url"] == CLUSTER:
                states[dict(labels)["status"]] = states.get(dict(labels)["status"], 0) + v
        assert states["ERROR"] >= 1 and states["STALE"] >= 1


def _scrape(url: str, token: str) -> str:
    """One scrape, checked for its status and content type (meshactors.testing.stack.scrape reads only the text)."""
    with urllib.request.urlopen(
        urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=10
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def _scrape_all(stack: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    urls = stack["metrics"]
    for actor, url in urls.items():
        for fam in text_string_to_metric_families(_scrape(url, stack["token"])):
            for s in fam.samples:  # the controller labels the actors it supervises (each one of ours)
                assert s.labels.get("actor") == actor or (actor == "controller" and s.labels.get("actor") in urls)
                out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_of_every_actor_over_http(stack: dict[str, Any], registry: RegistryClient) -> None:
    urls = stack["metrics"]
    kinds = {kind_of(name) for name in urls}
    assert kinds == {"controller", "registry-api", "eureka-api", "registry-shard", "snapshot-builder",
                     "xds-server", "dashboard"}, urls  # fmt: skip
    _register(registry, 9)
    got = _scrape_all(stack)

    def total(name: str, **labels: str) -> float:
        return sum(v for (n, lab), v in got.items() if n == name and labels.items() <= dict(lab).items())

    names = {n for n, _ in got}
    for name in (
        "meshactors_xds_sessions", "meshactors_xds_responses_total", "meshactors_xds_ready",
        "meshactors_xds_streams_opened_total", "meshactors_builder_builds_total", "meshactors_builder_pushes_total",
        "meshactors_registry_registrations_total", "meshactors_registry_heartbeats_total",
        "meshactors_registry_expiries_total", "meshactors_registry_self_preservation", "meshactors_watch_lag_revisions",
    ):  # fmt: skip
        assert name in names, name
    assert total("meshactors_xds_ready") == len([u for u in urls if u.startswith("xds-server-")])
    assert total("meshactors_registry_registrations_total") >= 1
    assert total("meshactors_builder_builds_total") >= 1
    assert total("meshactors_registry_self_preservation") == 0
    lags = [v for (n, _), v in got.items() if n == "meshactors_watch_lag_revisions"]
    assert lags and all(0 <= v < 10_000 for v in lags)
    labels = {k for _, lab in got for k, _ in lab}
    # per VIP only the golden signals, whose VIPs and callers are bounded by --telemetry-max-vips (never per proxy)
    golden = {"vip", "caller", "class", "le"}
    assert labels <= {"actor", "type_url", "status", "stream", "client_kind", "reason"} | golden, labels
    for actor, url in urls.items():  # every /metrics wants an API token: none, or a bad one, gets 401
        for headers in ({}, {"Authorization": "Bearer ma1.0123456789abcdef." + "A" * 43}):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
            assert err.value.code == 401, (actor, headers)
