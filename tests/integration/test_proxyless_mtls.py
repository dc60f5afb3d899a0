"""Proxyless gRPC over SVIP mTLS through xDS: real grpcio client and server, certificates from the stack's CA.

Each side runs `meshactors identity --dir D` (its key, its leaf for its service token, the bundle) and reads a
`meshactors bootstrap --grpc --identity-dir D`: the server (`grpc.server(..., xds=True)` with
`grpc.xds_server_credentials`) gets its mTLS Listener for its listening address, the client (`xds:///<svip>` with
`grpc.xds_channel_credentials`) the SVIP's gRPC Cluster with its UpstreamTlsContext. The call succeeds and the
server sees the caller's SPIFFE ID; the client refuses a server of another identity; plain text and a TLS client
without a certificate fail at the secure port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors.envoy import sds
from meshactors.registry.client import RegistryClient
from meshactors.registry.token_client import TokenClient
from meshactors.store.server import free_port
from meshactors.testing.waits import until
from meshactors.v1 import registry_pb2 as pb
from tests.integration.test_proxyless_grpc import XdsClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SERVER_CHILD = Path(__file__).resolve().parent / "grpcio_xds_server.py"
METHOD = "/meshtest.Echo/Say"
FOLLOW_S = 30.0
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _cli(stack: dict[str, Any], *args: str) -> list[str]:
    ready = Path(stack["state_dir"]) / "ready.json"
    return [sys.executable, "-m", "meshactors.cli", args[0], "--ready-file", str(ready), *args[1:]]


class Child:
    """A child process in its own session, stopped (and if need be killed) by its PID."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, text=True,
                start_new_session=True,
            )  # fmt: skip

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _identity(stack: dict[str, Any], token: str, directory: Path, log: Path) -> Child:
    child = Child(_cli(stack, "identity", "--token", token, "--dir", str(directory), "--bundle-check-interval", "1"),
                  log)  # fmt: skip
    until(
        lambda: (
            all((directory / f).exists() for f in (sds.CERT_PEM, sds.KEY_PEM, sds.BUNDLE_PEM))
            or child.proc.poll() is not None
        ),
        30,
        f"no identity files in {directory}",
    )
    assert child.proc.poll() is None, child.stderr()
    return child


def _bootstrap(stack: dict[str, Any], node_id: str, identity_dir: Path, out: Path) -> Path:
    text = subprocess.run(
        _cli(stack, "bootstrap", "--grpc", "--node-id", node_id, "--identity-dir", str(identity_dir)),
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    doc = json.loads(text)
    assert doc["certificate_providers"]["meshactors"]["config"]["certificate_file"] == str(identity_dir / "cert.pem")
    assert doc["server_listener_resource_name_template"] == "grpc/server?xds.resource.listening_address=%s"
    out.write_text(text)
    return out


@pytest.fixture
def mtls(stack: dict[str, Any], session_dir: Path) -> Iterator[dict[str, Any]]:
    """SVIP `orders-*-secure` served by a proxyless grpcio server of service orders-*, and a proxyless grpcio client
    of service web-*, each with its identity agent."""
    rnd = uuid.uuid4().hex[:6]
    server_svc, client_svc = f"orders-{rnd}", f"web-{rnd}"
    svip = f"{server_svc}-secure"
    work = session_dir / f"proxyless-mtls-{rnd}"
    work.mkdir()
    with TokenClient(stack["registry"], token=stack["token"]) as tokens:
        server_token, _ = tokens.create("service", service=server_svc, vips=[svip])
        client_token, _ = tokens.create("service", service=client_svc)
    children: list[Child] = []
    client: XdsClient | None = None
    ref = None
    with RegistryClient(stack["registry"], token=server_token) as registry:
        try:
            children.append(_identity(stack, server_token, work / "server-id", work / "server-id.log"))
            children.append(_identity(stack, client_token, work / "client-id", work / "client-id.log"))
            server_boot = _bootstrap(stack, f"{server_svc}-server", work / "server-id", work / "server.json")
            client_boot = _bootstrap(stack, f"{client_svc}-client", work / "client-id", work / "client.json")
            port = free_port()
            server = Child([sys.executable, str(SERVER_CHILD), f"127.0.0.1:{port}", server_svc], work / "server.log",
                           env={**os.environ, "GRPC_XDS_BOOTSTRAP": str(server_boot)})  # fmt: skip
            children.append(server)
            assert server.proc.stdout is not None
            assert server.proc.stdout.readline().strip() == "started", server.stderr()
            ref, _ = registry.register(
                pb.Instance(app=server_svc, svip=svip, host="127.0.0.1", secure_port=port, instance_id=f"{svip}-1")
            )
            client = XdsClient("grpcio", client_boot, work / "client.log")
            yield {
                "svip": svip, "server_svc": server_svc, "client_svc": client_svc, "port": port, "client": client,
                "client_id_dir": work / "client-id", "td": stack["trust_domain"], "server": server,
                "registry": stack["registry"], "admin_token": stack["token"],
            }  # fmt: skip
        finally:
            if client is not None:
                client.close()
            if ref is not None:
                registry.deregister(ref)
            codes = [child.stop() for child in reversed(children)]
    assert codes[-2:] == [0, 0], codes  # the identity agents stopped cleanly on SIGINT


def _first_ok(client: XdsClient, target: str) -> Any:
    def ok() -> Any:
        result = client.calls(target, 1, timeout_ms=5_000, xds_creds=True)[0]
        return result if result["ok"] else None

    return ok


def _h2_over_tls(port: int, cert: tuple[Path, Path] | None) -> bytes | str:
    """A TLS connection (ALPN h2, the server not verified: what is tested is what it accepts) presenting `cert` (or
    none), sending the HTTP/2 preface: the server's first bytes, or the error that ended the connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(H2_PREFACE)
                return tls.recv(65536) or "closed"
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
            return repr(exc)


def test_a_proxyless_grpc_client_calls_a_proxyless_grpc_server_over_mtls_through_xds(mtls: dict[str, Any]) -> None:
    client: XdsClient = mtls["client"]
    target = f"xds:///{mtls['svip']}"
    first = until(_first_ok(client, target), FOLLOW_S, f"no successful mTLS call to {target}", every_s=0.2)
    results = [first, *client.calls(target, 10, xds_creds=True)]
    assert all(r["ok"] for r in results), results
    caller = f"spiffe://{mtls['td']}/svc/{mtls['client_svc']}"
    for result in results:
        reply = json.loads(result["reply"])
        assert reply["name"] == mtls["server_svc"]
        peer = reply["peer"]
        assert peer["transport_security_type"] == ["tls"] and peer["ssl_tls_version"] == ["TLSv1.3"], peer
        assert peer["x509_subject_alternative_name"] == [caller], peer  # the caller's identity, authenticated
        assert peer["peer_spiffe_id"] == [caller], peer

    # the same target over plain text (insecure channel credentials ignore the xDS TLS) fails at the secure port
    plain = client.calls(target, 2, timeout_ms=5_000)
    assert [r["ok"] for r in plain] == [False, False], plain
    assert {r["code_name"] for r in plain} == {"UNAVAILABLE"}, plain

    # so does a direct plain-text channel to the secure port
    with grpc.insecure_channel(f"127.0.0.1:{mtls['port']}") as channel:
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary(METHOD)(b"hello", timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value

    # the client checks the server's identity: an SVIP whose registered server is someone else is refused, though
    # the same orders server answers on that address
    impostor = f"impostor-{uuid.uuid4().hex[:6]}"
    with RegistryClient(mtls["registry"], token=mtls["admin_token"]) as admin:
        ref, _ = admin.register(pb.Instance(app=impostor, svip=impostor, host="127.0.0.1", secure_port=mtls["port"],
                                            instance_id=f"{impostor}-1"))  # fmt: skip
        seen: list[dict[str, Any]] = []

        def handshake_refused() -> bool:  # past "no UP instances" (the endpoint not learned yet): the SAN check
            seen.extend(client.calls(f"xds:///{impostor}", 1, timeout_ms=5_000, xds_creds=True))
            return "no UP instances" not in seen[-1].get("details", "")

        try:
            until(handshake_refused, FOLLOW_S, f"{impostor}'s endpoint never reached the client", every_s=0.2)
        finally:
            admin.deregister(ref)
    assert not any(r["ok"] for r in seen), seen
    assert seen[-1]["code_name"] == "UNAVAILABLE", seen[-1]

    # TLS without a client certificate is refused; the control, the client's mesh certificate, is served
    ids = mtls["client_id_dir"]
    served = _h2_over_tls(mtls["port"], (ids / sds.CERT_PEM, ids / sds.KEY_PEM))
    assert isinstance(served, bytes) and served[3:4] == b"\x04", served  # the server's SETTINGS frame
    refused = _h2_over_tls(mtls["port"], None)
    assert isinstance(refused, str), refused
    assert "CERTIFICATE_REQUIRED" in refused.upper() or "closed" in refused or "Reset" in refused, refused
