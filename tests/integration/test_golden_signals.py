"""Golden signals through the real stack: the session Envoy's metrics sink -> the xDS servers -> `meshactors top` and
/metrics agree on what the test sent; a metrics stream without a token is refused."""

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
from prometheus_client.parser import text_string_to_metric_families

from meshactors.envoy.metrics_codec import stream_metrics_call
from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.telemetry.golden import CLUSTER_LABEL, REQUESTS_STAT, MetricsReport, ReportNode, Sample
from meshactors.testing.backends import get, wait_routable
from meshactors.testing.prometheus import PrometheusServer
from meshactors.testing.stack import scrape
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)
N_A, M_B, FAILED_B = 40, 20, 10
MORE_A = 20  # requests sent once Prometheus holds A's series, for a rate


def _register(registry: RegistryClient, prefix: str, port: int) -> str:
    vip = f"{prefix}-{uuid.uuid4().hex[:8]}"
    registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, lease=LONG_LEASE))
    return vip


def _top(stack: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    ready = f"{stack['state_dir']}/ready.json"
    args = [sys.executable, "-m", "meshactors.cli", "top", "--ready-file", ready, *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=90)


def _scrape(stack: dict[str, Any]) -> list[Any]:
    out = []
    for actor, url in stack["metrics"].items():
        if actor.startswith("xds-server"):
            out += [s for f in text_string_to_metric_families(scrape(url, stack["token"])) for s in f.samples]
    return out


def _total(samples: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


async def _until(fetch: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(fetch)
        if ok(seen):
            return seen
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s; last seen {seen}")


def _rows(ray_driver: Any, stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from meshactors.runtime.status import golden_signals

    return {r["vip"]: r for r in golden_signals(stack["namespace"])}


async def test_requests_errors_and_latency_per_vip_reach_top_and_metrics(
    stack: dict[str, Any],
    registry: RegistryClient,
    envoy: EnvoyProcess,
    backends: Any,
    ray_driver: Any,
    prometheus: PrometheusServer,
) -> None:
    backend = backends("golden")
    a, b = _register(registry, "gs-a", backend.port), _register(registry, "gs-b", backend.port)
    assert wait_routable(envoy.listen, [a, b], timeout_s=30)
    for _ in range(N_A):
        assert get(envoy.listen, a).status == 200
    for i in range(M_B):
        assert get(envoy.listen, b, "/status/500" if i < FAILED_B else "/").status == (500 if i < FAILED_B else 200)
    sent_a, sent_b = N_A + 1, M_B + 1  # and wait_routable's one answered request per VIP (it stops at a 200)

    rows = await _until(
        lambda: _rows(ray_driver, stack),
        lambda r: r.get(a, {}).get("requests", 0) >= sent_a and r.get(b, {}).get("requests", 0) >= sent_b,
        timeout_s=40,
        what="the xDS servers' aggregates show the requests",
    )
    ra, rb = rows[a], rows[b]
    assert sent_a <= ra["requests"] <= sent_a + 2 and ra["errors"] == 0 and ra["error_pct"] == 0.0
    assert sent_b <= rb["requests"] <= sent_b + 2 and rb["errors"] == FAILED_B
    assert rb["errors_by_class"]["5xx"] == FAILED_B
    assert rb["error_pct"] == pytest.approx(100 * FAILED_B / sent_b, abs=5)
    for row in (ra, rb):
        assert row["rps"] > 0
        assert row["p50_ms"] is not None and row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert [c["caller"] for c in row["callers"]] == ["unknown"]  # the session Envoy's node names no VIP
    order = list(rows)
    assert order.index(b) < order.index(a), "worst first: B has errors"

    out = _top(stack, "--once", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    top = {r["vip"]: r for r in json.loads(out.stdout)["vips"]}
    samples = await asyncio.to_thread(_scrape, stack)
    for vip in (a, b):
        assert top[vip]["requests"] == _total(samples, "meshactors_vip_requests_total", vip=vip)
        assert top[vip]["errors"] == _total(samples, "meshactors_vip_errors_total", vip=vip, **{"class": "5xx"})
        assert _total(samples, "meshactors_vip_request_duration_seconds_count", vip=vip) >= top[vip]["requests"] - 2
    # The real Prometheus, scraping every xDS server with the config `prometheus-config` wrote, agrees per VIP.
    for vip, sent, failed in ((a, sent_a, 0), (b, sent_b, FAILED_B)):
        got = await asyncio.to_thread(
            prometheus.wait_value,
            f'sum(meshactors_vip_requests_total{{vip="{vip}"}})',
            lambda v, sent=sent: sent <= v <= sent + 2,
            40,
            f"Prometheus' request count of {vip}",
        )
        assert got == top[vip]["requests"]
        errors = await asyncio.to_thread(
            prometheus.value, f'sum(meshactors_vip_errors_total{{vip="{vip}",class="5xx"}}) or vector(0)'
        )
        assert errors == failed, (vip, errors)
    # A rate needs traffic after the series exists: 20 more requests to A show as an increase and a rate.
    for _ in range(MORE_A):
        assert get(envoy.listen, a).status == 200
    await asyncio.to_thread(
        prometheus.wait_value,
        f'sum(meshactors_vip_requests_total{{vip="{a}"}})',
        lambda v: v >= sent_a + MORE_A,
        40,
        f"Prometheus sees the {MORE_A} more requests to {a}",
    )
    rate = await asyncio.to_thread(prometheus.value, f'sum(rate(meshactors_vip_requests_total{{vip="{a}"}}[1m]))')
    grown = await asyncio.to_thread(prometheus.value, f'sum(increase(meshactors_vip_requests_total{{vip="{a}"}}[1m]))')
    assert rate is not None and rate > 0, rate
    assert grown is not None and MORE_A - 2 <= grown <= 3 * MORE_A, grown  # increase() extrapolates to the window
    one = _top(stack, "--once", "--vip", b)
    assert one.returncode == 0, one.stderr[-2000:]
    lines = one.stdout.splitlines()
    assert lines[0].startswith("VIP") and len(lines) == 2 and lines[1].startswith(b)

    # what one Envoy's flush costs with the inclusion list (its first message also carries its node, once)
    before = await asyncio.to_thread(_scrape, stack)
    after = await _until(
        lambda: _scrape(stack),
        lambda s: (
            _total(s, "meshactors_telemetry_reports_total") >= _total(before, "meshactors_telemetry_reports_total") + 2
        ),
        timeout_s=30,
        what="two more flushes",
    )
    flushes = _total(after, "meshactors_telemetry_reports_total") - _total(before, "meshactors_telemetry_reports_total")
    size = _total(after, "meshactors_telemetry_report_bytes_total") - _total(
        before, "meshactors_telemetry_report_bytes_total"
    )
    print(f"metrics flush: {size / flushes:.0f} bytes per flush per Envoy over {flushes:.0f} flushes")
    assert 0 < size / flushes < 20_000


async def _send(target: str, reports: list[MetricsReport], token: str = "") -> grpc.aio.AioRpcError | None:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(target) as ch:
        try:
            await stream_metrics_call(ch)(iter(reports), metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc
    return None


async def test_a_metrics_stream_without_a_token_is_refused_and_one_with_a_token_counts_its_caller(
    stack: dict[str, Any], registry: RegistryClient, ray_driver: Any
) -> None:
    caller, dest = _register(registry, "gs-caller", 9), _register(registry, "gs-dest", 9)
    target = stack["xds"][0]

    def sent(n: int, node_cluster: str) -> list[MetricsReport]:
        node = ReportNode(f"raw-{uuid.uuid4().hex[:6]}", node_cluster)
        return [MetricsReport(node, (Sample(REQUESTS_STAT, ((CLUSTER_LABEL, dest),), float(n)),))]

    err = await _send(target, sent(7, caller))
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    err = await _send(target, sent(7, caller), token="not-a-token")
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED, err

    async def counted() -> dict[str, Any]:
        assert await _send(target, sent(3, caller), token=stack["proxy_token"]) is None
        return _rows(ray_driver, stack).get(dest, {})

    deadline = time.monotonic() + 30
    row: dict[str, Any] = {}
    while not row.get("requests") and time.monotonic() < deadline:  # until the server knows both new names
        row = await counted()
        await asyncio.sleep(0.3)
    assert row.get("requests", 0) % 3 == 0 and row["requests"] >= 3, row
    assert {c["caller"] for c in row["callers"]} == {caller}, "the refused streams counted nothing"
