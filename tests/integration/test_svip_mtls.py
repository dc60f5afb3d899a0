"""SVIP mTLS end to end: real `meshactors sidecar`s, real Envoys, certificates from the stack's CA.

A client sidecar calls an SVIP through the server's sidecar over mTLS and the app sees the caller's SPIFFE ID;
the secure port refuses plain HTTP, no certificate and another CA's certificate; the client checks the server's
identity; a service token only ever gets its own identity; roots rotate and 20 s certificates renew under load
with no failed request; the CA's root survives its actor being killed.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshactors.ca import SpiffeId, TrustBundle, cert_pem, generate_root, issue, verify_leaf
from meshactors.envoy import sds
from meshactors.errors import InvalidArgument, PermissionDenied, Unavailable
from meshactors.identity_agent import IdentityAgent, new_key_and_csr
from meshactors.registry.cert_client import CertificateClient
from meshactors.registry.client import RegistryClient
from meshactors.registry.token_client import TokenClient
from meshactors.store.server import free_port
from meshactors.testing.backends import get
from meshactors.testing.waits import until
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def tokens(stack: dict[str, Any]) -> Iterator[TokenClient]:
    with TokenClient(stack["registry"], token=stack["token"]) as client:
        yield client


class Sidecar:
    def __init__(self, stack: dict[str, Any], work: Path, token: str, *args: str) -> None:
        self.listen, self.admin = free_port(), free_port()
        self.work = work
        ready = Path(stack["state_dir"]) / "ready.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshactors.cli", "sidecar", "--ready-file", str(ready), "--token", token,
             "--listen", f"127.0.0.1:{self.listen}", "--admin", f"127.0.0.1:{self.admin}", "--work-dir", str(work),
             "--lease-renewal", "1", "--lease-duration", "15", "--bundle-check-interval", "1", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


@contextmanager
def _secure_pair(
    stack: dict[str, Any], tokens: TokenClient, session_dir: Path, name: str, *extra: str
) -> Iterator[dict[str, Any]]:
    """An SVIP `<name>-*-secure` served by an app behind its sidecar, and a client sidecar of service `web-*`;
    `extra` goes to both sidecars' command lines."""
    from meshactors.testing.backends import Backend

    rnd = uuid.uuid4().hex[:6]
    server_svc, client_svc = f"{name}-{rnd}", f"web-{rnd}"
    svip = f"{server_svc}-secure"
    server_token, _ = tokens.create("service", service=server_svc, vips=[svip])
    client_token, _ = tokens.create("service", service=client_svc)
    app, web_app = Backend(server_svc), Backend(client_svc)
    secure_port = free_port()
    server = Sidecar(stack, session_dir / f"mtls-{server_svc}", server_token, "--svip", svip, "--secure-port",
                     str(secure_port), "--port", str(app.port), *extra)  # fmt: skip
    client = Sidecar(stack, session_dir / f"mtls-{client_svc}", client_token, "--vip", client_svc, "--port",
                     str(web_app.port), *extra)  # fmt: skip
    with RegistryClient(stack["registry"], token=stack["token"]) as registry:
        try:
            until(lambda: registry.list(vip=svip)[0], 30, f"{svip} was not registered ({server.proc.poll()})")
            yield {
                "svip": svip, "server_svc": server_svc, "client_svc": client_svc, "app": app, "server": server,
                "client": client, "secure_port": secure_port, "server_token": server_token,
                "client_token": client_token, "td": stack["trust_domain"], "registry": registry,
            }  # fmt: skip
        finally:
            results = [server.stop(), client.stop()]
            app.stop()
            web_app.stop()
    for code, _, err in results:
        assert code == 0, err[-2000:]


@pytest.fixture(scope="module")
def mesh(stack: dict[str, Any], tokens: TokenClient, session_dir: Path) -> Iterator[dict[str, Any]]:
    """An SVIP `orders-*-secure` served by app `orders` behind its sidecar, and a client sidecar of service `web`."""
    with _secure_pair(stack, tokens, session_dir, "orders") as pair:
        yield pair


def _through(mesh: dict[str, Any], host: str) -> Any:
    def ok() -> Any:
        try:
            reply = get(("127.0.0.1", mesh["client"].listen), host, timeout_s=5)
        except OSError:
            return None
        return reply if reply.status == 200 else None

    return ok


def test_client_sidecar_calls_an_svip_over_mtls_and_the_app_sees_the_callers_identity(mesh: dict[str, Any]) -> None:
    td = mesh["td"]
    reply = until(_through(mesh, mesh["svip"]), 30, "no 200 through the client sidecar to the SVIP")
    assert reply.body == mesh["server_svc"]
    _, headers = mesh["app"].seen[-1]
    xfcc = headers.get("x-forwarded-client-cert", "")
    assert f"URI=spiffe://{td}/svc/{mesh['client_svc']}" in xfcc, headers
    assert f"By=spiffe://{td}/svc/{mesh['server_svc']}" in xfcc, headers
    for work in (mesh["server"].work, mesh["client"].work):
        key = (work / "meshactors-identity" / "key.pem").stat()
        assert key.st_mode & 0o077 == 0


def test_the_client_checks_the_servers_identity(mesh: dict[str, Any], stack: dict[str, Any]) -> None:
    """An SVIP whose registered server identity is someone else's: the client Envoy's SAN check refuses the
    orders sidecar that answers on its address (503), while the real SVIP keeps answering 200."""
    impostor = f"impostor-{uuid.uuid4().hex[:6]}"
    ref, _ = mesh["registry"].register(
        pb.Instance(app=impostor, svip=impostor, host="127.0.0.1", secure_port=mesh["secure_port"])
    )
    try:
        until(_through(mesh, mesh["svip"]), 30, "the real SVIP stopped answering")

        def refused() -> Any:
            reply = get(("127.0.0.1", mesh["client"].listen), impostor, timeout_s=5)
            return reply if reply.status == 503 and "upstream connect error" in reply.body else None

        until(refused, 30, "the client accepted a server certificate of another identity")
        stats = until(lambda: _stat(mesh["client"].admin, f"cluster.{impostor}.ssl.fail_verify_san"), 10, "no stat")
        assert stats >= 1
    finally:
        mesh["registry"].deregister(ref)


def _stat(admin: int, name: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter={name}", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
    return 0


def _tls_get(port: int, cert: tuple[Path, Path] | None) -> bytes:
    """An HTTPS GET to the secure port with `cert` (or none); the server is not verified (what is tested is
    what the server accepts). What came back (b"" when the server closed the connection)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                chunks = []
                while chunk := tls.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return b""


def _write_pair(tmp: Path, name: str, leaf_pem: str, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_text(leaf_pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def test_secure_port_refuses_plain_http_no_cert_and_another_cas_cert(
    mesh: dict[str, Any], stack: dict[str, Any], tmp_path: Path
) -> None:
    port, td = mesh["secure_port"], mesh["td"]
    # the control: a certificate of the mesh CA gets through (so the refusals below are the server's doing)
    key, csr = new_key_and_csr()
    with CertificateClient(stack["registry"], token=mesh["client_token"]) as certs:
        mesh_pair = _write_pair(tmp_path, "mesh", certs.sign(csr).certificate_pem, key)
    answer = until(lambda: _tls_get(port, mesh_pair), 20, "a mesh certificate was refused")
    assert answer.startswith(b"HTTP/1.1 200") and mesh["server_svc"].encode() in answer, answer[:300]
    # plain HTTP to the TLS port
    plain = _plain_get(port)
    assert not plain.startswith(b"HTTP/"), plain[:200]
    # TLS without a client certificate
    assert _tls_get(port, None) == b""
    # a certificate of another CA, for the same identity as the mesh one, with the right SAN
    other = generate_root(td, datetime.now(UTC))
    okey, ocsr = new_key_and_csr()
    foreign = issue(other, ocsr, SpiffeId(td, mesh["client_svc"]))
    assert _tls_get(port, _write_pair(tmp_path, "foreign", cert_pem(foreign), okey)) == b""
    # a self-signed certificate
    skey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = datetime.now(UTC)
    selfsigned = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(skey.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{td}/svc/web")]), False)
        .sign(skey, hashes.SHA256())
    )  # fmt: skip
    assert _tls_get(port, _write_pair(tmp_path, "self", cert_pem(selfsigned), skey)) == b""


def _plain_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


def _server_serial(port: int, pair: tuple[Path, Path]) -> str:
    """The serial (hex) of the certificate the secure port presents to a new connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(pair[0]), str(pair[1]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def test_a_renewed_certificate_is_served_to_new_connections(
    mesh: dict[str, Any], stack: dict[str, Any], tmp_path: Path
) -> None:
    """What the sidecar's renewal does (a new key and leaf renamed into its identity directory), done now: the
    server's Envoy presents the new leaf on the next connection, and the SVIP keeps answering."""
    port = mesh["secure_port"]
    key, csr = new_key_and_csr()
    with CertificateClient(stack["registry"], token=mesh["client_token"]) as certs:
        pair = _write_pair(tmp_path, "mesh", certs.sign(csr).certificate_pem, key)
    before = _server_serial(port, pair)
    with CertificateClient(stack["registry"], token=mesh["server_token"]) as certs:
        renewed = IdentityAgent(certs.sign, mesh["server"].work / sds.IDENTITY_DIR).refresh()
    assert renewed.serial != before
    until(lambda: _server_serial(port, pair) == renewed.serial, 15, "Envoy kept serving the old certificate")
    until(_through(mesh, mesh["svip"]), 15, "the SVIP stopped answering after the renewal")


def test_a_service_token_only_ever_gets_its_own_identity(mesh: dict[str, Any], stack: dict[str, Any]) -> None:
    td = mesh["td"]
    victim = f"spiffe://{td}/svc/{mesh['server_svc']}"
    key = ec.generate_private_key(ec.SECP256R1())
    greedy = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, mesh["server_svc"])]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(victim)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    with CertificateClient(stack["registry"], token=mesh["client_token"]) as certs:
        resp = certs.sign(greedy)
        bundle = TrustBundle.from_pem(certs.bundle().bundle_pem)
    leaf = x509.load_pem_x509_certificate(resp.certificate_pem.encode())
    assert verify_leaf(bundle, leaf, datetime.now(UTC)) == SpiffeId(td, mesh["client_svc"])
    assert resp.spiffe_id == f"spiffe://{td}/svc/{mesh['client_svc']}"
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [resp.spiffe_id]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert resp.not_after_ms - resp.not_before_ms >= 24 * 3600 * 1000  # the default TTL, plus the backdating
    # tokens without a service identity get no certificate at all; a bad CSR names the field
    _, csr = new_key_and_csr()
    for token in (stack["token"], stack["proxy_token"]):
        with CertificateClient(stack["registry"], token=token) as certs, pytest.raises(PermissionDenied):
            certs.sign(csr)
        with CertificateClient(stack["registry"], token=token) as certs:
            assert certs.bundle().bundle_pem == bundle.pem()  # any valid token may read the roots
    with CertificateClient(stack["registry"], token=mesh["client_token"]) as certs:
        with pytest.raises(InvalidArgument, match="csr"):
            certs.sign("-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n")


def test_ca_show_lists_the_roots_and_every_identitys_expiry_to_admins_only(
    stack: dict[str, Any], mesh: dict[str, Any]
) -> None:
    until(_through(mesh, mesh["svip"]), 30, "no 200 through the client sidecar to the SVIP")  # both hold leaves
    ready = str(Path(stack["state_dir"]) / "ready.json")
    shown = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "ca", "show", "--ready-file", ready, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    doc = json.loads(shown.stdout)
    assert doc["trust_domain"] == stack["trust_domain"] and doc["leaf_ttl_seconds"] > 0
    [root] = doc["roots"]
    assert root["signing"] and root["not_after_ms"] > doc["now_ms"] and len(root["fingerprint_sha256"]) == 64
    with CertificateClient(stack["registry"], token=stack["proxy_token"]) as certs:
        bundle = TrustBundle.from_pem(certs.bundle().bundle_pem)
    assert [root["serial"]] == list(bundle.serials)
    by_id = {i["spiffe_id"]: i for i in doc["identities"]}
    for svc in (mesh["server_svc"], mesh["client_svc"]):
        issued = by_id[SpiffeId(stack["trust_domain"], svc).uri]
        assert issued["state"] == "ok" and issued["not_before_ms"] < doc["now_ms"] < issued["not_after_ms"]
        assert issued["issued_ms"] <= doc["now_ms"]
    # the identity's record is the leaf the sidecar serves
    served = x509.load_pem_x509_certificate((mesh["server"].work / "meshactors-identity" / "cert.pem").read_bytes())
    assert by_id[SpiffeId(stack["trust_domain"], mesh["server_svc"]).uri]["serial"] == format(served.serial_number, "x")
    table = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "ca", "show", "--ready-file", ready],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 0 and root["serial"] in table.stdout and mesh["server_svc"] in table.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "ca", "show", "--ready-file", ready, "--token", mesh["client_token"]],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "needs an admin token" in refused.stderr, refused.stderr[-2000:]
    assert mesh["client_token"] not in refused.stderr
    # `status` sums it up: how many identities, the soonest expiry, none expiring
    status = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "status", "--ready-file", ready, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr[-2000:]
    ca = json.loads(status.stdout)["ca"]
    assert ca["identities"] == len(doc["identities"]) >= 2 and ca["expiring"] == [] and ca["expired"] == [], ca
    assert ca["soonest"]["not_after_ms"] == min(i["not_after_ms"] for i in doc["identities"])


class _Load:
    """Calls the SVIP through the client sidecar from a thread at up to ~100 requests/s (Envoy's retries are off):
    how many were sent, which failed, and for how long (`with _Load(mesh) as load: ...`)."""

    def __init__(self, mesh: dict[str, Any]) -> None:
        self.mesh = mesh
        self.failures: list[Any] = []
        self.sent = 0
        self.took = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                reply = get(("127.0.0.1", self.mesh["client"].listen), self.mesh["svip"], timeout_s=5)
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            self.sent += 1
            if reply.status != 200:
                self.failures.append((reply.status, reply.body[:200]))
            self._stop.wait(max(0.0, 0.01 - (time.monotonic() - started)))

    def __enter__(self) -> _Load:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.took = time.monotonic() - self._t0


def _restarted(ray_driver: Any, namespace: str, name: str) -> None:
    """Kill actor `name`'s process (Ray restarts it) and wait until the restarted one answers ready."""
    from meshactors.runtime.calls import call_sync
    from meshactors.runtime.ops import kill
    from meshactors.runtime.topology import observe

    before, handle = observe(name, namespace)
    kill(handle, restart=True)

    def ready() -> bool:
        try:
            now, current = observe(name, namespace)
            return now.restarts > before.restarts and bool(call_sync(current, "ready", timeout_s=2))
        except Exception:
            return False

    until(ready, 60, f"{name} did not come back")


def _ca_rotate(stack: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`meshactors ca rotate` through all its steps (phase wait 3 s), which must succeed."""
    rotated = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "ca", "rotate", "--ready-file",
         str(Path(stack["state_dir"]) / "ready.json"), "--phase-wait", "3", "--timeout", "60"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stdout[-2000:] + rotated.stderr[-2000:]
    return rotated


def test_a_root_rotation_under_load_fails_no_request(
    stack: dict[str, Any], mesh: dict[str, Any], tmp_path: Path
) -> None:
    """`ca rotate` through all three steps while the client sidecar calls the SVIP at >= 50 requests/s (Envoy's
    retries off): not one request fails, and afterwards the bundle is the new root alone and the server's Envoy
    presents a leaf of it. (The session's CA has a new root afterwards.)"""
    until(_through(mesh, mesh["svip"]), 30, "no 200 through the client sidecar to the SVIP")
    with CertificateClient(stack["registry"], token=stack["token"]) as certs:
        before = certs.show()
    [old_root] = before.roots
    with _Load(mesh) as load:
        rotated = _ca_rotate(stack)
    took, sent, failures = load.took, load.sent, load.failures
    for step in ("stage", "activate", "finish"):
        assert f"ca rotate: {step} done" in rotated.stdout, rotated.stdout
    print(f"\nrotation took {took:.1f} s; {sent} requests, {len(failures)} failed")
    assert failures == [], failures[:5]
    assert sent >= 50 * took, (sent, took)
    with CertificateClient(stack["registry"], token=stack["token"]) as certs:
        after = certs.show()
        bundle = TrustBundle.from_pem(certs.bundle().bundle_pem)
    [new_root] = after.roots
    assert new_root.signing and new_root.serial != old_root.serial and list(bundle.serials) == [new_root.serial]
    # every active identity holds a leaf of the new root (earlier modules' stopped sidecars left valid leaves of the
    # old one on record: inactive, they held no step up and never present them again)
    active = {i.spiffe_id: i.issuer_serial for i in after.identities if i.not_after_ms > after.now_ms and i.active}
    for svc in (mesh["server_svc"], mesh["client_svc"]):
        assert SpiffeId(stack["trust_domain"], svc).uri in active, active
    assert set(active.values()) == {new_root.serial}, active
    # the server's Envoy presents the leaf its sidecar holds, one of the new root (checked by a client of the new
    # root alone). The file is read on every look: `finish` changed the bundle, so the sidecar renews once more
    # within its bundle check interval, and the leaf on file a moment ago may already be replaced.
    identity = mesh["server"].work / "meshactors-identity" / "cert.pem"
    key, csr = new_key_and_csr()
    with CertificateClient(stack["registry"], token=mesh["client_token"]) as certs:
        pair = _write_pair(tmp_path, "after-rotation", certs.sign(csr).certificate_pem, key)
    seen: dict[str, str] = {}

    def presents_the_leaf_on_file() -> bool:
        on_file = x509.load_pem_x509_certificate(identity.read_bytes())
        assert verify_leaf(bundle, on_file, datetime.now(UTC)) == SpiffeId(stack["trust_domain"], mesh["server_svc"])
        seen.update(on_file=format(on_file.serial_number, "x"), presented=_server_serial(mesh["secure_port"], pair))
        return seen["on_file"] == seen["presented"]

    try:
        until(presents_the_leaf_on_file, 15, "the server's Envoy did not present the leaf on file")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last look: {seen}") from exc
    until(_through(mesh, mesh["svip"]), 15, "the SVIP stopped answering after the rotation")


def _loaded_serials(admin_port: int) -> set[str]:
    """The serials of the certificates an Envoy holds right now (its admin's /certs), bundle roots left out."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/certs", timeout=5) as reply:
        loaded = json.load(reply)
    return {c["serial_number"] for entry in loaded.get("certificates", []) for c in entry.get("cert_chain", [])}


def test_short_lived_certificates_renew_and_the_root_rotates_under_load_failing_no_request(
    stack: dict[str, Any], tokens: TokenClient, session_dir: Path
) -> None:
    """Two sidecars that ask for 20 s certificates (`sidecar --cert-ttl 20`), the client calling the server's SVIP
    at >= 50 requests/s with Envoy's retries off: a root rotation (`ca rotate`), then at least three renewals of
    each sidecar's own certificate after it, every one loaded by its Envoy (admin /certs) and the server's new ones
    presented on the secure port; not one request fails."""
    with _secure_pair(stack, tokens, session_dir, "ledger", "--cert-ttl", "20") as mesh:
        until(_through(mesh, mesh["svip"]), 30, "no 200 through the client sidecar to the SVIP")
        held = x509.load_pem_x509_certificate((mesh["server"].work / sds.IDENTITY_DIR / "cert.pem").read_bytes())
        lifetime = held.not_valid_after_utc - max(held.not_valid_before_utc, datetime.now(UTC))
        assert lifetime.total_seconds() <= 20, held.not_valid_after_utc  # the asked-for lifetime
        with _Load(mesh) as load:
            _ca_rotate(stack)
            key, csr = new_key_and_csr()  # a probe of the new root, to see what the secure port presents
            with CertificateClient(stack["registry"], token=mesh["client_token"]) as certs:
                pair = _write_pair(session_dir, f"probe-{mesh['client_svc']}", certs.sign(csr).certificate_pem, key)
            loaded = {side: _loaded_serials(mesh[side].admin) for side in ("server", "client")}
            presented = {_server_serial(mesh["secure_port"], pair)}
            t_rotated = time.monotonic()

            def renewed_three_times() -> bool:
                for side in ("server", "client"):
                    loaded[side] |= _loaded_serials(mesh[side].admin)
                presented.add(_server_serial(mesh["secure_port"], pair))
                return all(len(serials) >= 4 for serials in loaded.values()) and len(presented) >= 4

            until(renewed_three_times, 90, f"fewer than three renewals each after the rotation: {loaded} {presented}")
            renewals_took = time.monotonic() - t_rotated
        print(f"\nrotation + 3 renewals of 20 s certificates: {load.sent} requests in {load.took:.1f} s "
              f"({renewals_took:.1f} s of renewals), {len(load.failures)} failed")  # fmt: skip
        assert load.failures == [], load.failures[:5]
        assert load.sent >= 50 * load.took, (load.sent, load.took)
        until(_through(mesh, mesh["svip"]), 15, "the SVIP stopped answering after the renewals")


def test_the_ca_root_survives_its_actor_being_killed(
    stack: dict[str, Any], ray_driver: Any, mesh: dict[str, Any]
) -> None:
    """Under load through the sidecars: the CA's actor (the registry API) is killed, then every xDS server; not one
    request fails, the CA comes back with the same root, and a new certificate is issued after the restart."""
    until(_through(mesh, mesh["svip"]), 30, "no 200 through the client sidecar to the SVIP")
    with CertificateClient(stack["registry"], token=stack["proxy_token"]) as certs:
        before = certs.bundle().bundle_pem

    def bundle_again() -> str:
        try:
            with CertificateClient(stack["registry"], token=stack["proxy_token"], timeout_s=3) as certs:
                return certs.bundle().bundle_pem
        except Exception:
            return ""

    _, csr = new_key_and_csr()

    def sign() -> str:
        try:
            with CertificateClient(stack["registry"], token=mesh["server_token"], timeout_s=3) as certs:
                return certs.sign(csr).certificate_pem
        except Unavailable:
            return ""

    with _Load(mesh) as load:
        from meshactors.runtime.ops import handle_of, kill

        kill(handle_of("registry-api", stack["namespace"]), restart=True)
        until(lambda: not bundle_again(), 30, "the killed registry API kept answering")  # ray.kill is asynchronous
        assert until(bundle_again, 60, "the CA did not come back") == before
        leaf = x509.load_pem_x509_certificate(until(sign, 30, "no certificate after the restart").encode())
        for i in range(len(stack["xds"])):
            _restarted(ray_driver, stack["namespace"], f"xds-server-{i}")
        after_kills = load.sent  # the load runs on past the last restart (the sidecars' streams reconnect)
        until(lambda: load.sent >= after_kills + 100, 30, "the load stalled after the xDS servers' restarts")
    expected = SpiffeId(stack["trust_domain"], mesh["server_svc"])
    assert verify_leaf(TrustBundle.from_pem(before), leaf, datetime.now(UTC)) == expected
    print(f"\nkills under load: {load.sent} requests in {load.took:.1f} s, {len(load.failures)} failed")
    assert load.failures == [], load.failures[:5]
    assert load.sent >= 50 * load.took, (load.sent, load.took)
    until(_through(mesh, mesh["svip"]), 30, "the SVIP stopped answering after the restarts")
