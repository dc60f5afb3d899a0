"""The real Prometheus scrapes every actor of the stack (config from `meshactors prometheus-config`) and its query
API shows what the test did: registrations, convergence through a real Envoy, sessions by kind."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.registry.policy_client import PolicyClient
from meshactors.testing.backends import wait_routable
from meshactors.testing.prometheus import PrometheusServer
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)
SCRAPE_WAIT_S = 30  # a 1 s scrape interval: any change shows within a few seconds


def _total(prom: PrometheusServer, metric: str) -> float:
    return prom.wait_value(f"sum({metric})", lambda v: v >= 0, SCRAPE_WAIT_S, f"{metric} scraped")


def test_every_actor_of_the_ready_file_is_a_target_that_is_up(
    stack: dict[str, Any], prometheus: PrometheusServer
) -> None:
    want = set(stack["metrics"])
    assert {"controller", "registry-api", "eureka-api"} <= want

    def all_up(vector: list[dict[str, Any]]) -> bool:
        return {s["metric"].get("component") for s in vector if s["value"][1] == "1"} == want

    got = prometheus.wait_for('up{job="meshactors"}', all_up, SCRAPE_WAIT_S, "every target up")
    assert len(got) == len(want)
    assert prometheus.value("sum(meshactors_controller_converged)") == 1
    restarts = prometheus.query("meshactors_actor_restarts_total")
    assert {s["metric"]["actor"] for s in restarts} == want - {"controller"}  # one series per supervised actor


def test_registrations_and_deregistrations_counted_as_done(
    stack: dict[str, Any], registry: RegistryClient, prometheus: PrometheusServer
) -> None:
    registered = _total(prometheus, "meshactors_registry_registrations_total")
    deregistered = _total(prometheus, "meshactors_registry_deregistrations_total")
    vip = f"prom-{uuid.uuid4().hex[:8]}"
    refs = [
        registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=9000 + i, lease=LONG_LEASE))[0] for i in range(3)
    ]
    registry.deregister(refs[0])
    got = prometheus.wait_value("sum(meshactors_registry_registrations_total)", lambda v: v >= registered + 3,
                                SCRAPE_WAIT_S, "three registrations")  # fmt: skip
    assert got == registered + 3  # what the test did, no more
    got = prometheus.wait_value("sum(meshactors_registry_deregistrations_total)", lambda v: v >= deregistered + 1,
                                SCRAPE_WAIT_S, "one deregistration")  # fmt: skip
    assert got == deregistered + 1
    for ref in refs[1:]:
        registry.deregister(ref)


def test_convergence_time_of_registry_and_policy_changes_through_a_real_envoy(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, backends: Any, prometheus: PrometheusServer
) -> None:
    b = backends("prom")
    vip = f"conv-{uuid.uuid4().hex[:8]}"
    ref, _ = registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=b.port, lease=LONG_LEASE))
    assert wait_routable(envoy.listen, [vip], 30), f"{vip} never routable through Envoy"  # Envoy holds the VIP now
    before = _total(prometheus, "meshactors_xds_convergence_time_seconds_count")
    extra, _ = registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=b.port + 1, lease=LONG_LEASE))
    prometheus.wait_value("sum(meshactors_xds_convergence_time_seconds_count)", lambda v: v >= before + 1,
                          SCRAPE_WAIT_S, "a sample for the registration")  # fmt: skip
    with PolicyClient(stack["registry"], token=stack["token"]) as policies:
        policies.apply(f"vip: {vip}\ndestination:\n  circuitBreaker: {{maxConnections: 7}}\n")
        try:
            count = prometheus.wait_value(
                "sum(meshactors_xds_convergence_time_seconds_count)",
                lambda v: v >= before + 2,
                SCRAPE_WAIT_S,
                "a sample for the policy",
            )
        finally:
            policies.delete(vip)
    registry.deregister(extra)
    registry.deregister(ref)
    assert count > 0
    mean = prometheus.value(
        "sum(meshactors_xds_convergence_time_seconds_sum) / sum(meshactors_xds_convergence_time_seconds_count)"
    )
    # from the builder seeing the change to Envoy's ACK: milliseconds here, never seconds
    assert mean is not None and 0 < mean < 5.0, mean
    # the buckets are cumulative up to +Inf, which holds every sample
    inf = prometheus.value('sum(meshactors_xds_convergence_time_seconds_bucket{le="+Inf"})')
    assert inf == prometheus.value("sum(meshactors_xds_convergence_time_seconds_count)")
    assert (prometheus.value("sum(meshactors_xds_fetch_time_seconds_count)") or 0) >= 1  # Envoy's first request
    assert (prometheus.value("sum(meshactors_builder_resources_pushed_total)") or 0) > 0


def _sessions_by_kind(stack: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Connected sessions per client kind and per stream kind, as `meshactors proxy-status --json` lists them."""
    out = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "proxy-status", "--json", "--ready-file",
         f"{stack['state_dir']}/ready.json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    clients: dict[str, int] = {}
    streams: dict[str, int] = {}
    for row in json.loads(out.stdout)["sessions"]:
        clients[row["client_kind"] or "default"] = clients.get(row["client_kind"] or "default", 0) + 1
        streams[row["stream"]] = streams.get(row["stream"], 0) + 1
    return clients, streams


def test_sessions_by_kind_match_the_connected_envoys(
    stack: dict[str, Any], envoy: EnvoyProcess, prometheus: PrometheusServer
) -> None:
    clients, streams = _sessions_by_kind(stack)
    assert clients.get("envoy", 0) >= 1 and streams.get("delta", 0) >= 1  # the session's Envoy, on delta ADS

    def by(label: str, want: dict[str, int]) -> Any:
        def ok(vector: list[dict[str, Any]]) -> bool:
            got = {s["metric"][label]: int(float(s["value"][1])) for s in vector}
            return {k: v for k, v in got.items() if v} == want

        return ok

    prometheus.wait_for("sum by (client_kind) (meshactors_xds_sessions_by_client)", by("client_kind", clients),
                        SCRAPE_WAIT_S, f"sessions by client kind {clients}")  # fmt: skip
    prometheus.wait_for("sum by (stream) (meshactors_xds_sessions)", by("stream", streams),
                        SCRAPE_WAIT_S, f"sessions by stream kind {streams}")  # fmt: skip
