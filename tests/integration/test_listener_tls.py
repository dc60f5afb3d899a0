"""TLS on the public listeners end to end: a `meshactors up --tls-cert/--tls-key` of its own, clients that trust
its CA (registry gRPC, the CLI through the ready file, Eureka over https, a real Envoy over TLS ADS) and clients
that do not; and `up` on a network address without TLS refusing before it starts anything."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from meshactors.envoy.process import EnvoyProcess
from meshactors.errors import Unavailable
from meshactors.registry.client import RegistryClient
from meshactors.store.server import free_port
from meshactors.testing.backends import get, wait_routable
from meshactors.testing.certs import CertFiles, make_ca, make_server_cert
from meshactors.testing.stack import UpProcess
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PORTS = ["--registry-port", "0", "--eureka-port", "0", "--dashboard-port", "0", "--xds-port", "0"]
LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshactors.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def pki(session_dir: Path) -> dict[str, CertFiles]:
    d = session_dir / f"pki-{uuid.uuid4().hex[:6]}"
    ca = make_ca(d)
    other = make_ca(d, name="some other CA")
    return {"ca": ca, "server": make_server_cert(ca, d), "other": other}


@pytest.fixture(scope="module")
def tls_up(session_dir: Path, pki: dict[str, CertFiles]) -> Iterator[dict[str, Any]]:
    server, ca = pki["server"], pki["ca"]
    up = UpProcess(
        session_dir / f"tls-{uuid.uuid4().hex[:6]}",
        args=[*PORTS, "--namespace", f"tls-{uuid.uuid4().hex[:6]}", "--tls-cert", str(server.cert),
              "--tls-key", str(server.key), "--tls-ca", str(ca.cert)],
    )  # fmt: skip
    info = up.start(timeout_s=150)
    info["_up"] = up
    try:
        yield info
    finally:
        up.stop()


def test_the_ready_file_says_tls_and_names_the_ca(tls_up: dict[str, Any], pki: dict[str, CertFiles]) -> None:
    assert tls_up["tls"] is True and tls_up["tls_ca"] == str(pki["ca"].cert)
    assert tls_up["eureka"].startswith("https://127.0.0.1:")
    assert "TLS on" in tls_up["_up"].log_file.read_text()  # the line `up` prints once it is up


def test_a_client_with_the_ca_registers_and_lists(tls_up: dict[str, Any], pki: dict[str, CertFiles]) -> None:
    vip = f"tls-{uuid.uuid4().hex[:6]}"
    with RegistryClient(tls_up["registry"], token=tls_up["token"], tls_ca=str(pki["ca"].cert)) as client:
        ref, _ = client.register(pb.Instance(vip=vip, host="127.0.0.1", port=8080, lease=LONG_LEASE))
        instances, _ = client.list(vip=vip)
        assert [(i.vip, i.port) for i in instances] == [(vip, 8080)]
        client.deregister(ref)
        assert client.list(vip=vip)[0] == []


def test_the_cli_takes_the_ca_from_the_ready_file(tls_up: dict[str, Any]) -> None:
    vip = f"tls-cli-{uuid.uuid4().hex[:6]}"
    ready = str(Path(tls_up["state_dir"]) / "ready.json")
    out = ok(cli("register", "--ready-file", ready, "--vip", vip, "--host", "127.0.0.1", "--port", "8081", "--once"))
    assert f"registered {vip}/127.0.0.1:8081" in out
    listed = json.loads(ok(cli("ls", "--ready-file", ready, "--vip", vip, "--json")))
    assert [(i["vip"], i["port"]) for i in listed["instances"]] == [(vip, 8081)]
    ok(cli("deregister", "--ready-file", ready, "--vip", vip, "--instance-id", "127.0.0.1:8081"))


def test_a_plaintext_client_or_one_trusting_another_ca_is_refused(
    tls_up: dict[str, Any], pki: dict[str, CertFiles]
) -> None:
    for tls_ca in (None, str(pki["other"].cert)):
        with RegistryClient(tls_up["registry"], timeout_s=5, token=tls_up["token"], tls_ca=tls_ca) as client:
            with pytest.raises(Unavailable):
                client.list()
    # the CLI given the address alone (no --tls-ca, no ready file) speaks plaintext, and fails the same way
    refused = cli("ls", "--registry", tls_up["registry"])
    assert refused.returncode == 1 and "unavailable" in refused.stderr


def _eureka_get(url: str, context: ssl.SSLContext | None, token: str) -> tuple[int, str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 0
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection(host, port, timeout=10, context=context)
        if context is not None
        else http.client.HTTPConnection(host, port, timeout=10)
    )
    try:
        conn.request(
            "GET", parts.path + "/apps/", headers={"Accept": "application/json", "Authorization": f"Bearer {token}"}
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def test_eureka_answers_over_https_with_the_ca_and_not_over_http(
    tls_up: dict[str, Any], pki: dict[str, CertFiles]
) -> None:
    vip = f"tls-eureka-{uuid.uuid4().hex[:6]}"
    with RegistryClient(tls_up["registry"], token=tls_up["token"], tls_ca=str(pki["ca"].cert)) as client:
        client.register(pb.Instance(vip=vip, host="127.0.0.1", port=8082, lease=LONG_LEASE))
    context = ssl.create_default_context(cafile=str(pki["ca"].cert))
    deadline = time.monotonic() + 30
    status, body = _eureka_get(tls_up["eureka"], context, tls_up["token"])
    while not (status == 200 and vip.upper() in body) and time.monotonic() < deadline:
        time.sleep(0.2)  # the Eureka view follows etcd: the registration shows up within moments
        status, body = _eureka_get(tls_up["eureka"], context, tls_up["token"])
    assert status == 200 and vip.upper() in body, (status, body[:300])

    plain_url = "http://" + tls_up["eureka"].removeprefix("https://")
    with pytest.raises((OSError, http.client.HTTPException)):  # a TLS listener never answers plain HTTP
        _eureka_get(plain_url, None, tls_up["token"])
    untrusted = ssl.create_default_context(cafile=str(pki["other"].cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        _eureka_get(tls_up["eureka"], untrusted, tls_up["token"])


def test_a_real_envoy_gets_a_cluster_over_tls_ads_and_routes_to_the_backend(
    tls_up: dict[str, Any], pki: dict[str, CertFiles], session_dir: Path, backends: Any
) -> None:
    listen, admin = free_port(), free_port()
    ready = str(Path(tls_up["state_dir"]) / "ready.json")
    text = ok(cli("bootstrap", "--ready-file", ready, "--node-id", "tls-envoy",
                  "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}"))  # fmt: skip
    assert str(pki["ca"].cert) in text and "UpstreamTlsContext" in text
    work = session_dir / f"tls-envoy-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    (work / "envoy.yaml").write_text(text)
    envoy = EnvoyProcess(work / "envoy.yaml", ("127.0.0.1", admin), work / "envoy.log", listen=("127.0.0.1", listen))
    envoy.start()
    try:
        b = backends("tls-backend")
        vip = f"tls-e2e-{uuid.uuid4().hex[:6]}"
        with RegistryClient(tls_up["registry"], token=tls_up["token"], tls_ca=str(pki["ca"].cert)) as client:
            client.register(pb.Instance(vip=vip, host="127.0.0.1", port=b.port, lease=LONG_LEASE))
        assert wait_routable(envoy.listen, [vip], timeout_s=30), envoy.admin_get("/clusters")[-2000:]
        reply = get(envoy.listen, vip)
        assert (reply.status, reply.body) == (200, "tls-backend")
        stats = envoy.stats()
        assert stats.get("cluster.meshactors_xds.ssl.handshake", 0) >= 1, {
            k: v for k, v in stats.items() if k.startswith("cluster.meshactors_xds.ssl")
        }
    finally:
        envoy.stop()


def test_up_on_a_network_address_without_tls_refuses_at_once_starting_nothing(session_dir: Path) -> None:
    """No Ray session (its temp dir stays empty), no etcd (the state dir, where its data would go, is never made),
    a one-line error naming the flag and both ways out, exit 2, in seconds."""
    state, ray_tmp = (
        session_dir / f"refused-{uuid.uuid4().hex[:6]}",
        session_dir / f"refused-ray-{uuid.uuid4().hex[:4]}",
    )
    ray_tmp.mkdir()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "up", "--host", "0.0.0.0", "--state-dir", str(state), *PORTS],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "RAY_TMPDIR": str(ray_tmp)},
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.count("\n") == 0, err
    assert "--host: 0.0.0.0 is not a loopback address" in err and "--tls-cert" in err and "--insecure" in err
    assert not state.exists() and list(ray_tmp.iterdir()) == []
    assert took < 15, took


def test_a_proxyless_grpcio_client_reads_the_tls_bootstrap_and_calls_the_backend(
    tls_up: dict[str, Any], pki: dict[str, CertFiles], session_dir: Path
) -> None:
    from tests.integration.test_proxyless_grpc import XdsClient, _echo_server, _until

    ready = str(Path(tls_up["state_dir"]) / "ready.json")
    text = ok(cli("bootstrap", "--grpc", "--ready-file", ready, "--node-id", "tls-proxyless"))
    assert json.loads(text)["xds_servers"][0]["channel_creds"] == [
        {"type": "tls", "config": {"ca_certificate_file": str(pki["ca"].cert)}}
    ]
    bootstrap = session_dir / f"tls-grpc-bootstrap-{uuid.uuid4().hex[:6]}.json"
    bootstrap.write_text(text)
    server, port = _echo_server("tls-echo")
    client = XdsClient("grpcio", bootstrap, session_dir / f"tls-grpcio-{uuid.uuid4().hex[:6]}.stderr")
    try:
        vip = f"tls-grpc-{uuid.uuid4().hex[:6]}"
        with RegistryClient(tls_up["registry"], token=tls_up["token"], tls_ca=str(pki["ca"].cert)) as registry:
            registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, lease=LONG_LEASE))
        replies = _until(client, f"xds:///{vip}", lambda r: all(x == "tls-echo:hello" for x in r), "TLS xDS")
        assert replies and set(replies) == {"tls-echo:hello"}
    finally:
        client.close()
        server.stop(0)
