"""A VIP's traffic policy through a real Envoy from the generic bootstrap: applied before the first request, it
holds from that request on (cluster-level knobs, delivered with the VIP's Cluster on demand); changed while traffic
flows, it takes effect without a restart; a VIP without a policy keeps today's behaviour."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.registry.policy_client import PolicyClient
from meshactors.testing.backends import get, guard_knows
from meshactors.testing.waits import until
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SLOW_S = 0.6  # each request to the slow backend takes this long, so concurrent requests overlap
CONCURRENT = 8
LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=30, duration_seconds=300)


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(SLOW_S)
        body = b"slow"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # socketserver's default backlog of 5 would refuse part of a burst by itself
    daemon_threads = True


@pytest.fixture
def slow_backend() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _get(proxy: tuple[str, int], host: str) -> tuple[int, dict[str, str]]:
    reply = get(proxy, host, timeout_s=10)
    return reply.status, reply.headers


def _burst(proxy: tuple[str, int], host: str) -> list[tuple[int, dict[str, str]]]:
    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(lambda _: _get(proxy, host), range(CONCURRENT)))


def _overloaded(results: list[tuple[int, dict[str, str]]]) -> int:
    return sum(1 for status, headers in results if status == 503 and headers.get("x-envoy-overloaded") == "true")


def test_a_circuit_breaker_holds_from_the_first_request_and_changes_live(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, slow_backend: int
) -> None:
    vip, plain = f"cb-{uuid.uuid4().hex[:6]}", f"nocb-{uuid.uuid4().hex[:6]}"
    with PolicyClient(stack["registry"], token=stack["token"]) as policies:
        policies.apply(
            f"vip: {vip}\ndestination:\n"
            "  circuitBreaker: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}\n"
        )
        refs = [
            registry.register(pb.Instance(vip=name, host="127.0.0.1", port=slow_backend, lease=LONG_LEASE))[0]
            for name in (vip, plain)
        ]
        try:
            for name in (vip, plain):  # routable once the names reached the known-VIPs guard
                until(lambda name=name: guard_knows(envoy, name), 10, f"{name} did not reach the guard")
            # the very first requests to the VIP already meet the breaker: never seen by this Envoy before
            first = _burst(envoy.listen, vip)
            assert _overloaded(first) >= 1, first
            assert any(status == 200 for status, _ in first), first
            # a VIP without a policy: Envoy's defaults, every concurrent request served
            assert _get(envoy.listen, plain)[0] == 200
            assert [status for status, _ in _burst(envoy.listen, plain)] == [200] * CONCURRENT

            # raised while traffic flows: the same Envoy, no restart, the overload goes away
            policies.apply(f"vip: {vip}\ndestination:\n  circuitBreaker: {{maxConnections: 100, maxRequests: 100}}\n")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                results = _burst(envoy.listen, vip)
                if _overloaded(results) == 0:
                    break
            else:
                warming = {k: v for k, v in envoy.stats().items() if k.endswith("warming_state") and vip in k}
                pytest.fail(f"the raised circuit breaker never reached Envoy: {[s for s, _ in results]} {warming}")
            assert [status for status, _ in results] == [200] * CONCURRENT

            # deleting the policy goes back to the plain cluster (Envoy's defaults)
            policies.delete(vip)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if all(status == 200 for status, _ in _burst(envoy.listen, vip)):
                    break
            else:
                pytest.fail("after deleting the policy the VIP still overloads")
        finally:
            for ref in refs:
                registry.deregister(ref)
