"""Each traffic policy feature observed in traffic through one real Envoy from the generic bootstrap (the
session's), against real HTTP backends registered in the real stack: every policy is applied before the proxy
first asks for its VIP, and the very first request already honours it (the VIP's virtual host reaches Envoy
ahead of its Cluster over VHDS). Config is only looked at to show what a proxy does *not* hold."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meshactors.envoy.process import EnvoyProcess, start_generic_envoy, xds_endpoints
from meshactors.model import Status
from meshactors.registry.client import RegistryClient
from meshactors.registry.policy_client import PolicyClient
from meshactors.store.server import free_port
from meshactors.testing.backends import Reply, get, guard_knows
from meshactors.testing.waits import until
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=30, duration_seconds=300)


class _Handler(BaseHTTPRequestHandler):
    """Answers with the server's name. Paths: `/slow/MS` sleeps MS ms; `/first-then/A/B` sleeps A ms on the
    first attempt of a request (by x-request-id, which Envoy keeps across retries and hedges) and B ms on later
    ones; `/flaky` answers 503 to the first attempt of each request and 200 to the next; `/status/NNN` answers
    NNN. A server with a `fixed_status` answers everything with it."""

    server: Any
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        srv = self.server
        headers = {k.lower(): v for k, v in self.headers.items()}
        request_id = headers.get("x-request-id", "")
        with srv.lock:
            srv.seen.append((self.path, headers))
            first = request_id not in srv.request_ids
            srv.request_ids.add(request_id)
        status, path = 200, self.path
        if path.startswith("/slow/"):
            time.sleep(int(path.rsplit("/", 1)[1]) / 1000)
        elif path.startswith("/first-then/"):  # /first-then/A/B: the first attempt takes A ms, later ones B ms
            time.sleep(int(path.split("/")[2 if first else 3]) / 1000)
        elif path == "/flaky" and first:
            status = 503
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
        status = srv.fixed_status or status
        body = srv.backend_name.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # Envoy gave up on this attempt (a timeout, a hedge that lost): nobody reads the answer

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


@dataclass
class Backend:
    name: str
    server: _Server
    ref: Any = None  # its registration

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def seen_paths(self) -> list[str]:
        with self.server.lock:
            return [p for p, _ in self.server.seen]


def _get(proxy: tuple[str, int], host: str, path: str = "/", headers: dict[str, str] | None = None) -> Reply:
    return get(proxy, host, path, timeout_s=15, headers=headers)


@pytest.fixture
def mesh(stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess) -> Iterator[Any]:
    """`mesh.backend(vip, version)` starts a backend and registers it, and returns once the session Envoy's guard
    knows the VIP; `mesh.apply(doc)` applies a policy. All of it is deregistered, deleted and stopped after the
    test."""
    servers: list[_Server] = []
    refs: list[Any] = []
    applied: set[str] = set()
    policies = PolicyClient(stack["registry"], token=stack["token"])

    class Mesh:
        @staticmethod
        def vip(prefix: str) -> str:
            return f"{prefix}-{uuid.uuid4().hex[:6]}"

        @staticmethod
        def backend(vip: str, version: str = "", name: str = "", status: int = 0, zone: str = "") -> Backend:
            server = _Server(("127.0.0.1", 0), _Handler)
            server.fixed_status = status  # type: ignore[attr-defined]
            server.backend_name = name or version or vip  # type: ignore[attr-defined]
            server.seen = []  # type: ignore[attr-defined]
            server.request_ids = set()  # type: ignore[attr-defined]
            server.lock = threading.Lock()  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
            inst = pb.Instance(
                vip=vip, host="127.0.0.1", port=int(server.server_address[1]), version_label=version, lease=LONG_LEASE,
                **({"zone": zone} if zone else {}),
            )  # fmt: skip
            refs.append(registry.register(inst)[0])
            Mesh.wait_known(envoy, vip)
            return Backend(server.backend_name, server, refs[-1])  # type: ignore[attr-defined]

        @staticmethod
        def wait_known(proxy: EnvoyProcess, *vips: str) -> None:
            for vip in vips:
                until(lambda: guard_knows(proxy, vip), 10, f"{vip} did not reach the known-VIPs guard")  # noqa: B023

        @staticmethod
        def apply(doc: str) -> None:
            for line in doc.splitlines():
                if line.startswith("vip:"):
                    applied.add(line.split(":", 1)[1].strip().strip('"'))
            policies.apply(doc)

        @staticmethod
        def delete(vip: str) -> None:
            policies.delete(vip)
            applied.discard(vip)

    try:
        yield Mesh()
    finally:
        for vip in applied:
            policies.delete(vip)
        policies.close()
        for ref in refs:
            registry.deregister(ref)
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_split_holds_from_the_first_request_and_a_header_route_pins_v2(envoy: EnvoyProcess, mesh: Any) -> None:
    vip = mesh.vip("split")
    mesh.backend(vip, "v1")
    mesh.backend(vip, "v2")
    mesh.apply(
        f"vip: {vip}\nrouting:\n  split: [{{version: v1, weight: 100}}, {{version: v2, weight: 0}}]\n"
        "  routes: [{match: {headers: {x-canary: 'true'}}, version: v2}]\n"
    )
    # a canary at 0 %: not one request, the very first included (never asked for by this Envoy before)
    bodies = [_get(envoy.listen, vip).body for _ in range(100)]
    assert bodies == ["v1"] * 100, Counter(bodies)
    assert [_get(envoy.listen, vip, headers={"x-canary": "true"}).body for _ in range(20)] == ["v2"] * 20

    # 90/10 while traffic flows: not one failed request during the change
    failures: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            reply = _get(envoy.listen, vip)
            if reply.status != 200:
                failures.append(reply.status)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        mesh.apply(f"vip: {vip}\nrouting:\n  split: [{{version: v1, weight: 90}}, {{version: v2, weight: 10}}]\n")
        until(lambda: _get(envoy.listen, vip).body == "v2", 10, "the 90/10 split did not reach Envoy")
    finally:
        stop.set()
        worker.join(30)
    assert failures == []
    counts = Counter(_get(envoy.listen, vip).body for _ in range(600))
    assert set(counts) == {"v1", "v2"}, counts
    share = counts["v2"] / 600
    assert 0.06 <= share <= 0.14, counts  # 10 % +- 4 points: three standard deviations over 600 requests


def test_retries_turn_first_attempt_503s_into_200s_and_a_timeout_gives_504_in_time(
    envoy: EnvoyProcess, mesh: Any
) -> None:
    retried, plain, timed = mesh.vip("retry"), mesh.vip("noretry"), mesh.vip("timeout")
    for vip in (retried, plain, timed):
        mesh.backend(vip)
    mesh.apply(f"vip: {retried}\nrouting:\n  retries: {{attempts: 2, retryOn: [5xx]}}\n")
    mesh.apply(f"vip: {timed}\nrouting:\n  timeout: 300ms\n")
    assert [_get(envoy.listen, retried, "/flaky").status for _ in range(10)] == [200] * 10
    assert [_get(envoy.listen, plain, "/flaky").status for _ in range(10)] == [503] * 10  # no policy, no retry
    first = _get(envoy.listen, timed, "/slow/1500")
    assert first.status == 504 and first.seconds < 1.2, first
    assert _get(envoy.listen, timed, "/").status == 200


def test_hedging_wins_against_a_slow_first_attempt(envoy: EnvoyProcess, mesh: Any) -> None:
    hedged, unhedged = mesh.vip("hedge"), mesh.vip("nohedge")
    mesh.backend(hedged)
    mesh.backend(unhedged)
    mesh.apply(f"vip: {hedged}\nrouting:\n  retries: {{perTryTimeout: 100ms}}\n  hedging: {{onPerTryTimeout: true}}\n")
    mesh.apply(f"vip: {unhedged}\nrouting:\n  retries: {{perTryTimeout: 100ms}}\n")
    # the first attempt answers after 200 ms, every later one after 1 s: with hedging the first attempt keeps
    # racing the one sent at its per-try timeout and wins; without, every attempt is cut at its per-try timeout
    replies = [_get(envoy.listen, hedged, "/first-then/200/1000") for _ in range(6)]
    assert [r.status for r in replies] == [200] * 6
    assert max(r.seconds for r in replies) < 0.6, [round(r.seconds, 3) for r in replies]
    unhedged_reply = _get(envoy.listen, unhedged, "/first-then/200/1000")
    assert unhedged_reply.status == 504, unhedged_reply


def test_faults_abort_and_delay_at_their_percentages_only_with_the_header(envoy: EnvoyProcess, mesh: Any) -> None:
    aborted, delayed = mesh.vip("abort"), mesh.vip("delay")
    mesh.backend(aborted)
    mesh.backend(delayed)
    mesh.apply(
        f"vip: {aborted}\nrouting:\n  faults: {{abort: {{httpStatus: 418, percent: 50}}, headers: {{x-fault: 'on'}}}}\n"
    )
    mesh.apply(f"vip: {delayed}\nrouting:\n  faults: {{delay: {{fixed: 300ms, percent: 100}}}}\n")
    first = _get(envoy.listen, aborted, headers={"x-fault": "on"})
    statuses = Counter(
        [first.status] + [_get(envoy.listen, aborted, headers={"x-fault": "on"}).status for _ in range(199)]
    )
    assert set(statuses) == {200, 418} and 70 <= statuses[418] <= 130, statuses  # 50 % of 200, +- 30
    assert {_get(envoy.listen, aborted).status for _ in range(50)} == {200}  # without the header: no fault
    delays = [_get(envoy.listen, delayed).seconds for _ in range(3)]
    assert min(delays) >= 0.29, delays  # the first request too


def test_adaptive_concurrency_sheds_load_past_the_limit(envoy: EnvoyProcess, mesh: Any) -> None:
    vip = mesh.vip("adaptive")
    mesh.backend(vip)
    # while the gradient controller measures its minimum RTT it lets `minConcurrency` requests through
    mesh.apply(f"vip: {vip}\ndestination:\n  adaptiveConcurrency: {{minConcurrency: 1, minRttInterval: 60s}}\n")
    assert _get(envoy.listen, vip).status == 200
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: _get(envoy.listen, vip, "/slow/400"), range(8)))
    shed = [r for r in replies if r.status == 503 and "reached concurrency limit" in r.body]
    assert shed and any(r.status == 200 for r in replies), [(r.status, r.body[:40]) for r in replies]


def test_ring_hash_keeps_a_user_on_one_instance_and_outlier_detection_ejects_a_failing_one(
    envoy: EnvoyProcess, mesh: Any
) -> None:
    hashed, guarded = mesh.vip("hash"), mesh.vip("outlier")
    for i in range(3):
        mesh.backend(hashed, name=f"h{i}")
    mesh.backend(guarded, name="good")
    mesh.backend(guarded, name="bad", status=500)
    mesh.apply(f"vip: {hashed}\ndestination:\n  loadBalancer: RING_HASH\n  consistentHash: {{header: x-user}}\n")
    mesh.apply(
        f"vip: {guarded}\ndestination:\n  outlierDetection: {{consecutive5xxErrors: 3, interval: 1s, "
        "baseEjectionTime: 60s, maxEjectionPercent: 50}\n"
    )
    picks = {
        user: {_get(envoy.listen, hashed, headers={"x-user": user}).body for _ in range(10)} for user in "abcdefgh"
    }
    assert all(len(served) == 1 for served in picks.values()), picks  # the same user, the same instance
    assert len(set().union(*picks.values())) > 1, picks  # and users spread over instances

    # `bad` answers 500 to everything: three in a row and it is ejected, then `good` answers everything
    early = Counter(_get(envoy.listen, guarded).status for _ in range(12))
    assert early[500] == 3, early
    served = Counter(_get(envoy.listen, guarded).body for _ in range(40))
    assert served == Counter({"good": 40}), served


def test_mesh_wide_defaults_are_overridden_per_vip(envoy: EnvoyProcess, mesh: Any) -> None:
    inherits, overrides = mesh.vip("inherit"), mesh.vip("override")
    mesh.backend(inherits)
    mesh.backend(overrides)
    try:
        mesh.apply(
            'vip: "*"\nrouting:\n  faults: {abort: {httpStatus: 418, percent: 100}, headers: {x-mesh-fault: "on"}}\n'
        )
        mesh.apply(
            f"vip: {overrides}\nrouting:\n  faults: {{abort: {{httpStatus: 429, percent: 100}}, "
            "headers: {x-mesh-fault: 'on'}}\n"
        )
        header = {"x-mesh-fault": "on"}
        assert _get(envoy.listen, inherits, headers=header).status == 418
        assert _get(envoy.listen, overrides, headers=header).status == 429
        assert _get(envoy.listen, inherits).status == 200 and _get(envoy.listen, overrides).status == 200
    finally:
        mesh.delete("*")


def test_a_proxy_holds_only_the_policy_of_vips_it_used(stack: dict[str, Any], envoy: EnvoyProcess, mesh: Any) -> None:
    used, unused = mesh.vip("used"), mesh.vip("unused")
    mesh.backend(used)
    mesh.backend(unused)
    for vip in (used, unused):
        mesh.apply(f"vip: {vip}\nrouting:\n  timeout: 3s\n")
    assert _get(envoy.listen, used).status == 200
    # the known-VIPs guard (ECDS) lists every registered name by design; the rest holds nothing of `unused`
    configs = envoy.config_dump()["configs"]
    dump = json.dumps([c for c in configs if not c["@type"].endswith(".EcdsConfigDump")])
    assert f"meshactors_outbound/{used}" in dump
    assert unused not in dump  # neither its virtual host nor its cluster
    # what the proxy's session holds of the policy, as an operator sees it
    out = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "proxy-status", "e2e-envoy", "--json",
         "--ready-file", f"{stack['state_dir']}/ready.json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    held = [
        r for s in json.loads(out.stdout)["sessions"] for r in s["resources"]
        if r["name"] == f"meshactors_outbound/{used}"
    ]  # fmt: skip
    assert held and held[0]["status"] == "SYNCED", held
    assert '"timeout": "3s"' in json.dumps(held[0]["sent"]), held[0]["sent"]
    mesh.delete(used)  # the policy goes: its virtual host leaves the proxy, the VIP keeps working
    until(lambda: f"meshactors_outbound/{used}" not in json.dumps(envoy.config_dump()), 10, "the virtual host stayed")
    assert _get(envoy.listen, used).status == 200


def _clusters(envoy: EnvoyProcess) -> set[str]:
    """The names of the dynamic clusters the Envoy holds (active or warming)."""
    dump = json.loads(envoy.admin_get("/config_dump?resource=dynamic_active_clusters"))
    return {c["cluster"]["name"] for c in dump.get("configs", [])}


def test_a_mirror_vip_receives_copies_while_the_caller_sees_only_the_primarys_answers(
    envoy: EnvoyProcess, mesh: Any
) -> None:
    vip, shadow_vip = mesh.vip("mirrored"), mesh.vip("shadow")
    mesh.backend(vip, name="primary")
    shadow = mesh.backend(shadow_vip, name="shadow")
    mesh.apply(f"vip: {vip}\nrouting:\n  mirror: {{vip: {shadow_vip}, percent: 100}}\n")
    # Envoy never asks for a mirror cluster: it is pushed on the bootstrap's wildcard CDS ahead of the virtual host
    bodies = [_get(envoy.listen, vip).body for _ in range(50)]
    assert bodies == ["primary"] * 50, Counter(bodies)
    # copies are fire and forget: wait for them; the first request may go before the mirror cluster is warm
    until(lambda: len(shadow.seen_paths()) >= 49, 10, "the shadow did not receive the copies")
    with shadow.server.lock:
        hosts = Counter(h.get("host") for _, h in shadow.server.seen)
    assert list(hosts) == [f"{vip}-shadow"] and hosts.total() <= 50, hosts  # Envoy marks a copy's Host
    assert shadow_vip in _clusters(envoy)
    # the mirror goes: the virtual host first, the cluster it named last; no more copies, no failed request
    mesh.delete(vip)
    until(lambda: shadow_vip not in _clusters(envoy), 10, "the mirror cluster stayed")
    before = len(shadow.seen_paths())
    assert [_get(envoy.listen, vip).status for _ in range(20)] == [200] * 20
    assert len(shadow.seen_paths()) == before


def test_applying_a_mirror_while_traffic_flows_fails_no_request(envoy: EnvoyProcess, mesh: Any) -> None:
    vip, shadow_vip = mesh.vip("mirrorlive"), mesh.vip("shadowlive")
    mesh.backend(vip, name="primary")
    shadow = mesh.backend(shadow_vip, name="shadow")
    assert _get(envoy.listen, vip).body == "primary"  # held by this Envoy, with no policy yet
    failures: list[tuple[int, str]] = []
    answered = Counter[str]()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            reply = _get(envoy.listen, vip)
            answered[reply.body] += 1
            if reply.status != 200:
                failures.append((reply.status, reply.body))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        until(lambda: answered.total() >= 20, 10, "no traffic before the change")
        mesh.apply(f"vip: {vip}\nrouting:\n  mirror: {{vip: {shadow_vip}, percent: 100}}\n")
        until(lambda: len(shadow.seen_paths()) >= 20, 10, "the mirror did not reach Envoy under load")
        mesh.delete(vip)
        until(lambda: shadow_vip not in _clusters(envoy), 10, "the mirror cluster stayed")
        total = answered.total()
        until(lambda: answered.total() >= total + 20, 10, "no traffic after the change")
    finally:
        stop.set()
        worker.join(30)
    assert failures == []
    assert set(answered) == {"primary"}, answered


@pytest.fixture
def zoned_envoy(stack: dict[str, Any], tmp_path: Path) -> Iterator[EnvoyProcess]:
    """A second real Envoy from the generic bootstrap, in zone z1 (its node.locality.zone)."""
    listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    proc = start_generic_envoy(
        xds_endpoints(stack["xds"]), f"zoned-{uuid.uuid4().hex[:6]}", tmp_path, listen, admin,
        token=stack["proxy_token"], stats_flush_s=None, zone="z1",
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.stop()


def test_locality_failover_prefers_the_callers_zone_and_fails_over_when_it_has_no_up_instance(
    envoy: EnvoyProcess, zoned_envoy: EnvoyProcess, mesh: Any, registry: RegistryClient
) -> None:
    failover, spread = mesh.vip("failover"), mesh.vip("spread")
    near = mesh.backend(failover, name="near", zone="z1")
    mesh.backend(failover, name="far", zone="z2")
    mesh.backend(spread, name="s-z1", zone="z1")
    mesh.backend(spread, name="s-z2", zone="z2")
    mesh.apply(f"vip: {failover}\ndestination:\n  localityFailover: true\n")
    mesh.wait_known(zoned_envoy, failover, spread)
    # the caller in z1 gets z1's instance only, from its first request on
    first = Counter(_get(zoned_envoy.listen, failover).body for _ in range(60))
    assert first == Counter({"near": 60}), first
    # a VIP without the policy spreads over both zones; so does the policy for a proxy without a zone
    assert set(Counter(_get(zoned_envoy.listen, spread).body for _ in range(60))) == {"s-z1", "s-z2"}
    assert set(Counter(_get(envoy.listen, failover).body for _ in range(60))) == {"near", "far"}

    # z1's instance goes OUT_OF_SERVICE while traffic flows: z2's takes over, not one request fails
    failures: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            reply = _get(zoned_envoy.listen, failover)
            if reply.status != 200:
                failures.append(reply.status)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        registry.set_status(near.ref, Status.OUT_OF_SERVICE)
        until(lambda: _get(zoned_envoy.listen, failover).body == "far", 10, "z2 did not take over")
        after = [_get(zoned_envoy.listen, failover) for _ in range(40)]
        assert [(r.status, r.body) for r in after] == [(200, "far")] * 40
        # back UP: the caller's zone is preferred again
        registry.set_status(near.ref, Status.UP)
        until(lambda: _get(zoned_envoy.listen, failover).body == "near", 10, "z1 was not preferred again")
        back = Counter(_get(zoned_envoy.listen, failover).body for _ in range(40))
        assert back == Counter({"near": 40}), back
    finally:
        stop.set()
        worker.join(30)
    assert failures == []
