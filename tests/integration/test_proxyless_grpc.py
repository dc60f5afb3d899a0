"""Proxyless gRPC clients (grpcio and Node's grpc-js) resolve `xds:///<vip>` over SotW ADS and follow the registry.

Each client kind runs as a long-lived child speaking one JSON line protocol (tests/integration/grpcio_xds_client.py,
tests/node/xds_client.js), so later calls go through the same channel and see what it learned from xDS pushes.
The Node client's packages are installed by tools/setup.sh (`npm ci` in tests/node); a missing install fails.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors.envoy.bootstrap import NODE_TOKEN_KEY
from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.testing.backends import get, guard_knows
from meshactors.testing.waits import until
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TESTS = Path(__file__).resolve().parent.parent
NODE_DIR = TESTS / "node"
GRPCIO_CLIENT = Path(__file__).resolve().parent / "grpcio_xds_client.py"

# Bounds (fail loudly past them): a registry change reaches a live channel within FOLLOW_S; an unknown VIP's
# call fails within UNKNOWN_VIP_S (the control plane answers it at once, so no xDS does-not-exist timer runs).
FOLLOW_S = 30.0
UNKNOWN_VIP_S = 5.0
BATCH = 10


def _echo_server(name: str) -> tuple[grpc.Server, int]:
    def say(request: bytes, context: Any) -> bytes:
        return f"{name}:{request.decode()}".encode()

    handler = grpc.method_handlers_generic_handler("meshtest.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _client_argv(kind: str) -> list[str]:
    if kind == "grpcio":
        return [sys.executable, str(GRPCIO_CLIENT)]
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the grpc-js proxyless test needs Node.js >= 18 (see tools/setup.sh)")
    for package in ("@grpc/grpc-js", "@grpc/grpc-js-xds"):
        if not (NODE_DIR / "node_modules" / package / "package.json").exists():
            pytest.fail(f"{package} is not installed in {NODE_DIR}: run tools/setup.sh (npm ci there)")
    return [node, str(NODE_DIR / "xds_client.js")]


class XdsClient:
    """A proxyless client child: `calls(target, n)` sends one command and returns its n per-call results."""

    def __init__(self, kind: str, bootstrap: Path, log: Path) -> None:
        self.kind = kind
        self.log = log
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                _client_argv(kind), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                text=True, bufsize=1, cwd=NODE_DIR if kind == "grpc-js" else None, start_new_session=True,
            )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"{kind}-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def calls(self, target: str, n: int, timeout_ms: int = 20_000, *, xds_creds: bool = False) -> list[dict[str, Any]]:
        """`n` calls to `target`; `xds_creds` (grpcio only): over xDS credentials (the TLS of the xDS resources)."""
        assert self.proc.stdin is not None
        command = {"target": target, "calls": n, "timeout_ms": timeout_ms, **({"xds_creds": True} if xds_creds else {})}
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + n * timeout_ms / 1000 + 30
        results: list[dict[str, Any]] = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.kind} client gave no answer in time for {target}; stderr:\n{self.stderr()}")
            if line is None:
                pytest.fail(f"{self.kind} client exited ({self.proc.poll()}); stderr:\n{self.stderr()}")
            result = json.loads(line)
            if result.get("done"):
                assert "error" not in result, result["error"]
                assert len(results) == n, results
                return results
            results.append(result)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(5)


@pytest.fixture
def grpc_bootstrap(stack: dict[str, Any], session_dir: Path) -> Iterator[Path]:
    ready = Path(stack["state_dir"]) / "ready.json"
    out = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "bootstrap", "--grpc", "--ready-file", str(ready),
         "--node-id", "proxyless-client"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    path = session_dir / "grpc-bootstrap.json"
    path.write_text(out.stdout)
    doc = json.loads(out.stdout)
    assert doc["xds_servers"][0]["server_features"] == ["xds_v3"]
    assert doc["node"]["locality"] == {}  # grpc-js rejects a bootstrap without it
    # the proxy token is the stream's credential: grpcio and grpc-js send the bootstrap's node metadata as is
    assert doc["node"]["metadata"] == {NODE_TOKEN_KEY: stack["proxy_token"]}
    yield path


@pytest.fixture(params=["grpcio", "grpc-js"])
def xds_client(request: pytest.FixtureRequest, grpc_bootstrap: Path, session_dir: Path) -> Iterator[XdsClient]:
    kind = request.param
    client = XdsClient(kind, grpc_bootstrap, session_dir / f"{kind}-{uuid.uuid4().hex[:6]}.stderr")
    yield client
    client.close()


def _replies(results: list[dict[str, Any]]) -> list[str]:
    failed = [r for r in results if not r["ok"]]
    assert not failed, f"calls failed: {failed[:3]}"
    return [r["reply"] for r in results]


def _until(client: XdsClient, target: str, done: Callable[[list[str]], bool], what: str) -> list[str]:
    """Batches of calls until one satisfies `done`; every call of every batch must succeed."""
    deadline = time.monotonic() + FOLLOW_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        replies = _replies(client.calls(target, BATCH))
        seen += replies
        if done(replies):
            return replies
    pytest.fail(f"{client.kind}: {what} not within {FOLLOW_S} s; last replies {seen[-BATCH:]}")


def test_proxyless_client_follows_registrations(registry: RegistryClient, xds_client: XdsClient) -> None:
    """All calls succeed; a second instance gets traffic once registered; the first's deregistration moves
    all traffic to the second (with zero failed calls, since the first keeps serving while clients catch up)."""
    vip = f"greeter-{uuid.uuid4().hex[:6]}"
    target = f"xds:///{vip}"
    servers = [_echo_server("one"), _echo_server("two")]
    try:
        first, _ = registry.register(
            pb.Instance(vip=vip, host="127.0.0.1", port=servers[0][1], zone="zone-0", instance_id=f"{vip}-1")
        )
        assert set(_replies(xds_client.calls(target, 20))) == {"one:hello"}

        registry.register(
            pb.Instance(vip=vip, host="127.0.0.1", port=servers[1][1], zone="zone-1", instance_id=f"{vip}-2")
        )
        _until(xds_client, target, lambda r: "two:hello" in r, "the second instance getting traffic")
        # Both zones' localities are weighted equally: both instances serve.
        assert set(_replies(xds_client.calls(target, 40))) == {"one:hello", "two:hello"}

        registry.deregister(first)
        _until(xds_client, target, lambda r: set(r) == {"two:hello"}, "all traffic moving to the second instance")
        assert set(_replies(xds_client.calls(target, 20))) == {"two:hello"}
    finally:
        for server, _ in servers:
            server.stop(0)


def test_unknown_vip_fails_unavailable_quickly_then_works_once_registered(
    registry: RegistryClient, xds_client: XdsClient
) -> None:
    """A VIP nobody registered: every call fails with UNAVAILABLE naming it, at once (no does-not-exist timer);
    the same channel reaches the VIP as soon as an instance registers."""
    vip = f"nobody-{uuid.uuid4().hex[:6]}"
    target = f"xds:///{vip}"
    started = time.monotonic()
    results = xds_client.calls(target, 3, timeout_ms=20_000)
    elapsed = time.monotonic() - started
    assert [r["code_name"] for r in results] == ["UNAVAILABLE"] * 3, results
    assert all(f"no UP instances of {vip}" in r["details"] for r in results), results
    assert elapsed < UNKNOWN_VIP_S, f"{xds_client.kind}: unknown VIP took {elapsed:.1f} s to fail: {results}"

    server, port = _echo_server("late")
    try:
        registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, zone="zone-0", instance_id=f"{vip}-1"))
        deadline = time.monotonic() + FOLLOW_S
        while time.monotonic() < deadline:
            last = xds_client.calls(target, 1, timeout_ms=5_000)[0]
            if last["ok"]:
                break
            assert last["code_name"] == "UNAVAILABLE", last
        else:
            pytest.fail(f"{xds_client.kind}: {vip} still failing {FOLLOW_S} s after registering: {last}")
        assert set(_replies(xds_client.calls(target, BATCH))) == {"late:hello"}
    finally:
        server.stop(0)


def _status_sessions(stack: dict[str, Any]) -> list[dict[str, Any]]:
    """Every xDS session `meshactors status --json` reports, over every xDS server."""
    ready = Path(stack["state_dir"]) / "ready.json"
    out = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "status", "--ready-file", str(ready), "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    actors = json.loads(out.stdout)["actors"]
    return [s for a in actors if a["kind"] == "xds-server" for s in (a.get("stats") or {}).get("host", {})["streams"]]


def _held_policy(stack: dict[str, Any], node_id: str, vip: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The sessions of `node_id` (none: an empty list) and the policy of `vip` one of them holds (None: none)."""
    sessions = [s for s in _status_sessions(stack) if s["node_id"] == node_id]
    held = [p for s in sessions for p in s["policies"] if p["vip"] == vip]
    return sessions, held[0] if held else None


def _share(replies: list[str], name: str) -> float:
    return sum(1 for r in replies if r.startswith(f"{name}:")) / max(1, len(replies))


def test_proxyless_client_honours_a_policy_split_and_fault(
    registry: RegistryClient, xds_client: XdsClient, stack: dict[str, Any], envoy: EnvoyProcess
) -> None:
    """A split 90/10 over the instances' version labels and a fault abort, compiled for gRPC (with Envoy-only
    fields left out, so nothing is NACKed), reach a live channel; deleting the policy restores plain routing.
    `status --json` shows per session the policy it holds: the gRPC variant with the fields it left out for the
    client, nothing for an Envoy that never used the VIP, then the Envoy variant once it did."""
    from meshactors.registry.policy_client import PolicyClient

    vip = f"split-{uuid.uuid4().hex[:6]}"
    target = f"xds:///{vip}"
    servers = {version: _echo_server(version) for version in ("v1", "v2")}
    with PolicyClient(stack["registry"], token=stack["token"]) as policies:
        try:
            for version, (_server, port) in servers.items():
                registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, zone="zone-0",
                                              instance_id=f"{vip}-{version}", version_label=version))  # fmt: skip
            _until(xds_client, target, lambda r: {"v1:hello", "v2:hello"} <= set(r), "both versions serving")
            policies.apply(
                f"vip: {vip}\n"
                "destination: {loadBalancer: LEAST_REQUEST, circuitBreaker: {maxConnections: 100}}\n"
                "routing:\n"
                "  split: [{version: v1, weight: 90}, {version: v2, weight: 10}]\n"
                f"  mirror: {{vip: {vip}-shadow, percent: 10}}\n"
                "  retries: {attempts: 2, retryOn: [unavailable]}\n"
            )
            # before the policy the two versions share the calls about evenly: wait until v1 carries most
            _until(xds_client, target, lambda r: _share(r, "v1") >= 0.8, "the split taking effect")
            replies = _replies(xds_client.calls(target, 300))
            assert 0.80 <= _share(replies, "v1") <= 0.97 and _share(replies, "v2") > 0, replies.count("v2:hello")

            # the gRPC session holds the policy's gRPC variant and says what it left out; Envoy never used the VIP
            held = until(lambda: _held_policy(stack, "proxyless-client", vip)[1], 30, "the gRPC session's policy", 0.5)
            assert held["variant"] == "grpc" and held["policy"] and vip in held["revisions"], held
            assert "routing.mirror: gRPC does not mirror requests" in held["left_out"], held
            assert any(e.startswith("destination.loadBalancer: ") for e in held["left_out"]), held
            sessions, none = _held_policy(stack, "e2e-envoy", vip)
            assert sessions and none is None, sessions
            until(lambda: guard_knows(envoy, vip), 10, f"{vip} did not reach the guard")
            get(envoy.listen, vip, timeout_s=10)  # its answer does not matter: Envoy now holds the VIP
            on_envoy = until(lambda: _held_policy(stack, "e2e-envoy", vip)[1], 30, "the Envoy session's policy", 0.5)
            assert on_envoy["variant"] == "envoy" and on_envoy["policy"] == held["policy"], on_envoy
            assert not any(e.startswith("routing.mirror") for e in on_envoy["left_out"]), on_envoy

            policies.apply(f"vip: {vip}\nrouting:\n  faults: {{abort: {{httpStatus: 503, percent: 100}}}}\n")
            deadline = time.monotonic() + FOLLOW_S
            while time.monotonic() < deadline:
                results = xds_client.calls(target, BATCH)
                if all(not r["ok"] for r in results):
                    break
            else:
                pytest.fail(f"{xds_client.kind}: the fault abort never took effect: {results}")
            assert {r["code_name"] for r in results} == {"UNAVAILABLE"}, results

            policies.delete(vip)  # back to plain routing: calls succeed again, on both versions
            deadline = time.monotonic() + FOLLOW_S
            while time.monotonic() < deadline:
                results = xds_client.calls(target, BATCH * 2)
                if all(r["ok"] for r in results) and {"v1:hello", "v2:hello"} <= {r["reply"] for r in results}:
                    break
            else:
                pytest.fail(f"{xds_client.kind}: deleting the policy never restored plain routing: {results[:3]}")
            until(lambda: _held_policy(stack, "proxyless-client", vip)[1] is None, 30, "the policy leaving status", 0.5)
        finally:
            for server, _ in servers.values():
                server.stop(0)


@pytest.fixture(params=["grpcio", "grpc-js"])
def zoned_client(request: pytest.FixtureRequest, stack: dict[str, Any], session_dir: Path) -> Iterator[XdsClient]:
    """A proxyless client whose bootstrap (`meshactors bootstrap --grpc --zone z1`) puts it in zone z1."""
    kind = request.param
    ready = Path(stack["state_dir"]) / "ready.json"
    out = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "bootstrap", "--grpc", "--ready-file", str(ready),
         "--node-id", f"proxyless-z1-{kind}", "--zone", "z1"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    path = session_dir / f"grpc-bootstrap-z1-{kind}.json"
    path.write_text(out.stdout)
    client = XdsClient(kind, path, session_dir / f"{kind}-z1-{uuid.uuid4().hex[:6]}.stderr")
    yield client
    client.close()


def test_proxyless_client_prefers_its_zone_with_locality_failover(
    registry: RegistryClient, zoned_client: XdsClient, stack: dict[str, Any]
) -> None:
    """With `localityFailover` a client in z1 calls only z1's instance, and z2's once z1's is OUT_OF_SERVICE, with
    no failed call (gRPC reads the same per-zone priorities as Envoy)."""
    from meshactors.model import Status
    from meshactors.registry.policy_client import PolicyClient

    vip = f"failover-{uuid.uuid4().hex[:6]}"
    target = f"xds:///{vip}"
    servers = {zone: _echo_server(zone) for zone in ("z1", "z2")}
    refs = []
    with PolicyClient(stack["registry"], token=stack["token"]) as policies:
        try:
            policies.apply(f"vip: {vip}\ndestination: {{localityFailover: true}}\n")
            for zone, (_server, port) in servers.items():
                refs.append(registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, zone=zone,
                                                          instance_id=f"{vip}-{zone}"))[0])  # fmt: skip
            assert set(_replies(zoned_client.calls(target, 40))) == {"z1:hello"}
            registry.set_status(refs[0], Status.OUT_OF_SERVICE)
            _until(zoned_client, target, lambda r: set(r) == {"z2:hello"}, "z2 taking over")
            assert set(_replies(zoned_client.calls(target, 20))) == {"z2:hello"}
        finally:
            policies.delete(vip)
            for ref in refs:
                registry.deregister(ref)
            for server, _ in servers.values():
                server.stop(0)
