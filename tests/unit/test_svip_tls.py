"""SVIP mTLS pieces: SVIP clusters' TLS context and SAN checks, the secure inbound listener, the identity agent."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshactors.ca import SpiffeId, cert_pem, generate_root, issue, verify_leaf
from meshactors.ca.bundle import TrustBundle
from meshactors.envoy import sds
from meshactors.envoy.bootstrap import SecureInbound, envoy_bootstrap
from meshactors.errors import ConfigError, Unavailable
from meshactors.identity_agent import IdentityAgent, new_key_and_csr
from meshactors.model.instance import Instance, Status
from meshactors.resources.types import CLUSTER
from meshactors.snapshot.builder import build_vip, server_identities
from meshactors.testing.waits import until
from tests.unit.test_envoy_bootstrap import envoy_binary

TD = "mesh.test"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
XDS = [("127.0.0.1", 18000)]


def svip_inst(iid: str, host: str, by: str = "service:orders", app: str = "ORDERS", **kw: Any) -> Instance:
    return Instance(app=app, instance_id=iid, host=host, svip="orders-secure", secure_port=8443, registered_by=by, **kw)


def upstream_of(snapshot: Any) -> tls_pb2.UpstreamTlsContext:
    body = next(r.body for r in snapshot.resources if r.type_url == CLUSTER)
    cluster = cluster_pb2.Cluster.FromString(body)
    assert cluster.transport_socket.name == sds.TLS_SOCKET
    ctx = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(ctx)
    return ctx


# --- the builder ------------------------------------------------------------------------------------------


def test_server_identities_come_from_the_registering_service_else_the_app() -> None:
    fleet = [
        svip_inst("a", "10.0.0.1"),
        svip_inst("b", "10.0.0.2", by="admin:0123456789abcdef", app="Billing"),
        svip_inst("c", "10.0.0.3", by="service:gone", status=Status.DOWN),  # not serving: not trusted
        Instance(app="x", instance_id="d", host="10.0.0.4", vip="orders-secure", port=80, registered_by="service:x"),
    ]
    assert server_identities("orders-secure", fleet, TD) == (f"spiffe://{TD}/svc/billing", f"spiffe://{TD}/svc/orders")
    assert server_identities("plain", fleet, TD) is None


def test_an_svip_cluster_verifies_exactly_its_servers_identities_in_the_trust_domain() -> None:
    snap = build_vip("orders-secure", [svip_inst("a", "10.0.0.1"), svip_inst("b", "10.0.0.2")], trust_domain=TD)
    ctx = upstream_of(snap)
    common = ctx.common_tls_context
    sans = common.combined_validation_context.default_validation_context.match_typed_subject_alt_names
    uri = sans[0].URI
    assert [(m.san_type, m.matcher.exact) for m in sans] == [(uri, f"spiffe://{TD}/svc/orders")]
    assert common.tls_certificate_sds_secret_configs[0].name == sds.IDENTITY_SECRET
    path = common.tls_certificate_sds_secret_configs[0].sds_config.path_config_source
    assert (path.path, path.watched_directory.path) == (f"{sds.IDENTITY_DIR}/{sds.IDENTITY_FILE}", sds.IDENTITY_DIR)
    assert common.combined_validation_context.validation_context_sds_secret_config.name == sds.BUNDLE_SECRET
    assert common.tls_params.tls_minimum_protocol_version == common.tls_params.TLSv1_3
    # the same bytes for every proxy and every build: relative paths, deterministic serialization
    again = build_vip("orders-secure", [svip_inst("b", "10.0.0.2"), svip_inst("a", "10.0.0.1")], trust_domain=TD)
    assert [r.version for r in again.resources] == [r.version for r in snap.resources]


def test_a_plain_vip_cluster_has_no_tls_and_an_svip_follows_the_trust_domain() -> None:
    plain = build_vip("orders", [Instance(app="o", instance_id="a", host="10.0.0.1", vip="orders", port=80)])
    body = next(r.body for r in plain.resources if r.type_url == CLUSTER)
    assert not cluster_pb2.Cluster.FromString(body).HasField("transport_socket")
    other = upstream_of(build_vip("orders-secure", [svip_inst("a", "10.0.0.1")], trust_domain="other.td"))
    sans = other.common_tls_context.combined_validation_context.default_validation_context
    assert sans.match_typed_subject_alt_names[0].matcher.exact == "spiffe://other.td/svc/orders"


def test_upstream_context_needs_server_identities() -> None:
    with pytest.raises(ValueError, match="identities of its servers"):
        sds.upstream_tls_context([])


# --- the secure inbound listener --------------------------------------------------------------------------


def _identity_files(directory: Path, service: str = "orders") -> None:
    ca = generate_root(TD, NOW)
    key, csr = new_key_and_csr()
    leaf = issue(ca, csr, SpiffeId(TD, service), now=datetime.now(UTC))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / sds.IDENTITY_FILE).write_text(sds.secret_file_text(sds.identity_secret(cert_pem(leaf), key_pem)))
    (directory / sds.BUNDLE_FILE).write_text(sds.secret_file_text(sds.bundle_secret(ca.cert_pem)))


def _response(ca: Any, leaf: x509.Certificate) -> SimpleNamespace:
    return SimpleNamespace(
        certificate_pem=cert_pem(leaf), bundle_pem=ca.cert_pem, spiffe_id=f"spiffe://{TD}/svc/orders",
        not_before_ms=int(leaf.not_valid_before_utc.timestamp() * 1000),
        not_after_ms=int(leaf.not_valid_after_utc.timestamp() * 1000),
        renew_at_ms=int(leaf.not_valid_after_utc.timestamp() * 1000) - 1000, signing_serial=ca.serial,
    )  # fmt: skip


def test_secure_inbound_listener_requires_mesh_client_certs_and_sets_xfcc() -> None:
    doc = envoy_bootstrap(
        [("127.0.0.1", 18000)], "sidecar-1", secure_inbound=SecureInbound(("0.0.0.0", 8443), ("127.0.0.1", 8080), TD)
    )
    listener = next(x for x in doc["static_resources"]["listeners"] if x["name"] == "meshactors_inbound_secure")
    chain = listener["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True
    vc = tls["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert vc["match_typed_subject_alt_names"] == [{"san_type": "URI", "matcher": {"prefix": f"spiffe://{TD}/svc/"}}]
    hcm = chain["filters"][0]["typed_config"]
    assert hcm["forward_client_cert_details"] == "SANITIZE_SET"
    assert hcm["set_current_client_cert_details"] == {"uri": True}
    app = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "meshactors_inbound_secure_app")
    assert app["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1", "port_value": 8080}  # fmt: skip


def test_real_envoy_validates_the_secure_inbound_bootstrap(tmp_path: Path) -> None:
    _identity_files(tmp_path / sds.IDENTITY_DIR)
    doc = envoy_bootstrap(
        [("127.0.0.1", 18000)],
        "sidecar-1",
        secure_inbound=SecureInbound(("127.0.0.1", 18443), ("127.0.0.1", 18080), TD),
    )
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump(doc))
    cmd = [envoy_binary(), "--mode", "validate", "-c", "envoy.yaml", "--disable-hot-restart", "-l", "error"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("taken", [("127.0.0.1", 15001), ("127.0.0.1", 15000)])
def test_secure_inbound_cannot_take_another_listeners_address(taken: tuple[str, int]) -> None:
    with pytest.raises(ConfigError, match="secure inbound listen"):
        envoy_bootstrap(
            [("127.0.0.1", 18000)], "sidecar-1", secure_inbound=SecureInbound(taken, ("127.0.0.1", 8080), TD)
        )


# --- the identity agent -----------------------------------------------------------------------------------


class FakeCa:
    """Signs like the CertificateService: the SAN from the caller's identity, never from the CSR."""

    def __init__(self, service: str = "orders") -> None:
        self.ca = generate_root(TD, NOW)
        self.service = service
        self.fail: Exception | None = None
        self.calls = 0

    def sign(self, csr: str) -> SimpleNamespace:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        leaf = issue(self.ca, csr, SpiffeId(TD, self.service), ttl_s=60)
        resp = _response(self.ca, leaf)
        resp.spiffe_id = f"spiffe://{TD}/svc/{self.service}"
        return resp


def test_agent_writes_envoy_secrets_and_pem_files_with_private_modes(tmp_path: Path) -> None:
    ca = FakeCa()
    agent = IdentityAgent(ca.sign, tmp_path / "id")
    issued = agent.refresh()
    d = tmp_path / "id"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / sds.KEY_PEM).stat().st_mode) == 0o600
    assert stat.S_IMODE((d / sds.IDENTITY_FILE).stat().st_mode) == 0o600
    assert not list(d.glob(".*.tmp"))  # every temporary file was renamed
    secret = json.loads((d / sds.IDENTITY_FILE).read_text())["resources"][0]
    assert secret["name"] == sds.IDENTITY_SECRET
    assert secret["tls_certificate"]["private_key"]["inline_string"] == (d / sds.KEY_PEM).read_text()
    bundle = json.loads((d / sds.BUNDLE_FILE).read_text())["resources"][0]
    assert bundle["validation_context"]["trusted_ca"]["inline_string"] == ca.ca.cert_pem
    got = verify_leaf(TrustBundle(TD, (ca.ca.cert,)), (d / sds.CERT_PEM).read_text(), datetime.now(UTC))
    assert got == SpiffeId(TD, "orders") and issued.spiffe_id == got.uri and issued.trust_domain == TD


def test_agent_uses_a_new_key_per_renewal_and_keeps_files_when_the_ca_fails(tmp_path: Path) -> None:
    ca = FakeCa()
    agent = IdentityAgent(ca.sign, tmp_path)
    agent.refresh()
    first_key = (tmp_path / sds.KEY_PEM).read_text()
    agent.refresh()
    assert (tmp_path / sds.KEY_PEM).read_text() != first_key
    kept = (tmp_path / sds.IDENTITY_FILE).read_text()
    ca.fail = Unavailable("CA down")
    with pytest.raises(Unavailable):
        agent.refresh()
    assert (tmp_path / sds.IDENTITY_FILE).read_text() == kept


def test_agent_waits_for_the_renewal_point_and_backs_off_within_the_lifetime(tmp_path: Path) -> None:
    now = [1000.0]
    agent = IdentityAgent(FakeCa().sign, tmp_path, clock=lambda: now[0])
    assert agent.next_wait(0) == 1.0 and agent.next_wait(3) == 4.0 and agent.next_wait(20) == 30.0  # no cert yet
    agent.refresh()
    assert agent.current is not None
    agent.current = type(agent.current)(agent.current.spiffe_id, "1", not_after_s=1100.0, renew_at_s=1060.0,
                                        bundle_pem="")  # fmt: skip
    assert agent.next_wait(0) == 60.0
    assert agent.next_wait(1) == 1.0
    assert agent.next_wait(10) == 10.0  # a tenth of the 100 s left, not 30 s
    now[0] = 1099.0
    assert agent.next_wait(10) == pytest.approx(0.2)


def test_agent_loop_survives_failures_and_renews(tmp_path: Path) -> None:
    ca = FakeCa()
    agent = IdentityAgent(ca.sign, tmp_path)
    agent.next_wait = lambda failed: 0.01  # type: ignore[method-assign]
    ca.fail = RuntimeError("boom")  # not even a MeshError: logged, retried
    stop = threading.Event()
    thread = agent.start(stop)
    try:
        deadline = threading.Event()
        for _ in range(500):
            if agent.failures >= 3:
                break
            deadline.wait(0.01)
        assert agent.failures >= 3 and thread.is_alive()
        ca.fail = None
        for _ in range(500):
            if agent.renewals >= 1:
                break
            deadline.wait(0.01)
        assert agent.renewals >= 1 and (tmp_path / sds.IDENTITY_FILE).exists()
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_agent_renews_at_once_when_the_cas_roots_move_and_not_otherwise(tmp_path: Path) -> None:
    ca = FakeCa()
    answer = {"bundle_pem": ca.ca.cert_pem, "signing_serial": ca.ca.serial}
    checks: list[int] = []

    def check() -> SimpleNamespace:
        checks.append(1)
        if answer.get("fail"):
            raise Unavailable("CA away")
        return SimpleNamespace(bundle_pem=answer["bundle_pem"], signing_serial=answer["signing_serial"])

    agent = IdentityAgent(ca.sign, tmp_path, check=check, check_s=0.02)
    agent.refresh()
    stop = threading.Event()
    thread = agent.start(stop)
    try:
        until(lambda: len(checks) >= 5, 5, "the agent checking the CA", every_s=0.01)
        assert agent.renewals == 0  # nothing moved: the leaf serves on until its renewal point
        answer["fail"] = True  # the CA away: not a failure, nothing renewed
        until(lambda: len(checks) >= 10, 5, "checks while the CA is away", every_s=0.01)
        assert agent.renewals == 0 and agent.failures == 0
        del answer["fail"]
        answer["signing_serial"] = "another-root"  # a rotation step: renewed at once
        until(lambda: agent.renewals >= 1, 5, "a renewal after the roots moved", every_s=0.01)
        assert agent.rotations_seen >= 1
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
