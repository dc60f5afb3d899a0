"""Prometheus families from actor statistics (meshactors.telemetry) and the /metrics server, over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshactors.runtime.status import format_proxy_status
from meshactors.telemetry import http as metrics_http
from meshactors.telemetry import metrics
from meshactors.xds.delta import DeltaStream
from meshactors.xds.types import CLUSTER, DeltaRequest, VersionedResource
from meshactors.xds.view import DictView


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text.decode())
        for s in fam.samples
    }


def host_stats() -> dict:
    stream = DeltaStream(DictView([VersionedResource.of(CLUSTER, "a", b"1")]))
    stream.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",)))  # sent, not ACKed: STALE
    session = {"kind": "delta", "protocol": dataclasses.asdict(stream.statistics())}
    return {
        "ready": True, "streams_opened": 3, "refused_not_ready": 1, "refused_rate": 0, "names_refused": 2,
        "fetch_failures": 0, "stream_errors": 0, "snapshots_held": 4, "streams": [session],
        "responses_by_type": {CLUSTER: 7}, "nacks_by_type": {"other": 1},
    }  # fmt: skip


def test_xds_server_families_are_labelled_by_actor_and_type_only() -> None:
    got = samples(metrics.render(metrics.xds_server("xds-server-0", host_stats(), [CLUSTER])))
    a = (("actor", "xds-server-0"),)
    assert got["meshactors_xds_sessions", (*a, ("stream", "delta"))] == 1
    assert got["meshactors_xds_sessions", (*a, ("stream", "sotw"))] == 0
    assert got["meshactors_xds_responses_total", (*a, ("type_url", CLUSTER))] == 7
    assert got["meshactors_xds_nacks_total", (*a, ("type_url", "other"))] == 1
    assert got["meshactors_xds_session_types", (*a, ("status", "STALE"), ("type_url", CLUSTER))] == 1
    assert got["meshactors_xds_session_types", (*a, ("status", "SYNCED"), ("type_url", CLUSTER))] == 0
    assert got["meshactors_xds_refused_total", (*a, ("reason", "not_ready"))] == 1
    assert got["meshactors_xds_ready", a] == 1
    assert {k for _, labels in got for k, _ in labels} <= {
        "actor",
        "type_url",
        "status",
        "stream",
        "client_kind",
        "reason",
        "le",
    }


def test_builder_and_shard_families_with_watch_lag() -> None:
    builder = {"ready": True, "builds": 5, "pushes": 2, "events": 9, "resyncs": 0, "instances": 3, "revision": 40}
    got = samples(metrics.render(metrics.snapshot_builder("snapshot-builder-0", builder, 42)))
    a = (("actor", "snapshot-builder-0"),)
    assert got["meshactors_builder_builds_total", a] == 5
    assert got["meshactors_watch_lag_revisions", a] == 2
    shard = {"ready": True, "instances": 3, "self_preservation": True, "registered": 4, "heartbeats": 10,
             "expired": 1, "deregistered": 0, "watch": {"revision": 42}}  # fmt: skip
    got = samples(metrics.render(metrics.registry_shard("registry-shard-0", shard, 42)))
    a = (("actor", "registry-shard-0"),)
    assert got["meshactors_registry_self_preservation", a] == 1
    assert got["meshactors_registry_heartbeats_total", a] == 10
    assert got["meshactors_registry_expiries_total", a] == 1
    assert got["meshactors_watch_lag_revisions", a] == 0
    assert ("meshactors_watch_lag_revisions", a) not in samples(
        metrics.render(metrics.registry_shard("registry-shard-0", shard, None))
    )


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.mark.asyncio
async def test_metrics_server_answers_get_metrics_and_404_elsewhere() -> None:
    async def render() -> bytes:
        return metrics.render(metrics.xds_server("x", host_stats(), [CLUSTER]))

    server, port = await metrics_http.serve("127.0.0.1", 0, render)
    try:
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"meshactors_xds_sessions" in body
        status, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/other")
        assert status == 404
    finally:
        server.close()
        await server.wait_closed()


def test_format_proxy_status() -> None:
    rows = [
        {
            "node_id": "sidecar-1", "xds_server": "xds-server-0", "stream": "delta", "client_kind": "envoy",
            "types": {CLUSTER: {"status": "SYNCED", "last_ack_at": 95.0}},
        },
        {"xds_server": "xds-server-1", "error": "timed out"},
    ]  # fmt: skip
    text = format_proxy_status(rows, now=100.0)
    assert "sidecar-1" in text and "Cluster=SYNCED(5s)" in text and "error: timed out" in text


@pytest.mark.asyncio
async def test_metrics_server_with_a_check_answers_401_without_an_accepted_token() -> None:
    async def render() -> bytes:
        return b"meshactors_up 1\n"

    seen: list[str | None] = []

    def authorize(header: str | None) -> bool:
        seen.append(header)
        return header == "Bearer good"

    server, port = await metrics_http.serve("127.0.0.1", 0, render, authorize)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        assert (await asyncio.to_thread(_get, url))[0] == 401
        assert (await asyncio.to_thread(_get, url, {"Authorization": "Bearer bad"}))[0] == 401
        status, body = await asyncio.to_thread(_get, url, {"authorization": "Bearer good"})
        assert status == 200 and body == b"meshactors_up 1\n"
        assert seen == [None, "Bearer bad", "Bearer good"]
    finally:
        server.close()
        await server.wait_closed()
