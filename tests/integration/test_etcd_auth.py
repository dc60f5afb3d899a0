"""etcd's own auth behind the registry: the embedded etcd refuses clients without its root password; a TLS etcd
is reached with https:// and its CA; a token etcd no longer takes (restart) is replaced without the caller noticing."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import signal
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from meshactors.envoy.process import EnvoyProcess
from meshactors.errors import PermissionDenied, Unauthenticated, Unavailable
from meshactors.registry.client import RegistryClient
from meshactors.store.etcd import EtcdStore
from meshactors.store.etcdspec import EtcdSpec
from meshactors.store.keys import KeySchema
from meshactors.store.server import EtcdServer, find_binary
from meshactors.store.watch import Changes, ResumableWatch
from meshactors.testing.backends import get
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _unauthenticated(spec: str) -> str:
    """The same etcd, without the user and password."""
    return EtcdSpec(EtcdSpec.parse(spec).endpoints).url()


def _wrong_password(spec: str) -> str:
    return EtcdSpec.parse(spec).with_credentials("root", "not-the-password").url()


async def _refused(spec: str, keys: KeySchema, lease: int) -> list[Exception]:
    """Every way in to the registry's keys with `spec`: each must fail; returns the errors."""
    store = EtcdStore.from_spec(spec, timeout_s=5.0)
    await store.connect()
    errors: list[Exception] = []
    attempts = [
        lambda: store.list_prefix(keys.instances),
        lambda: store.get(keys.instances + "rogue/1"),
        lambda: store.put(keys.instances + "rogue/1", b"{}"),
        lambda: store.delete_prefix(keys.instances),
        lambda: store.revoke_lease(lease),
    ]
    try:
        for attempt in attempts:
            with pytest.raises((Unauthenticated, PermissionDenied)) as err:
                await attempt()
            errors.append(err.value)

        async def first_batch() -> None:
            async for _ in store.watch_prefix(keys.instances, 0):
                return

        with pytest.raises(Unauthenticated) as err:
            await asyncio.wait_for(first_batch(), 10)
        errors.append(err.value)
    finally:
        await store.close()
    return errors


async def test_embedded_etcd_refuses_clients_without_its_password(
    stack: dict[str, Any], registry: RegistryClient, store: EtcdStore
) -> None:
    keys = KeySchema(stack["key_prefix"])
    vip = f"auth-{uuid.uuid4().hex[:6]}"
    ref, _ = registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=9))
    item = await store.get(keys.instance(ref))  # the ready file's spec carries the credentials: it works
    assert item is not None and item.lease
    before = (await store.list_prefix(keys.instances))[0]

    errors = await _refused(_unauthenticated(stack["etcd"]), keys, item.lease)
    assert all(isinstance(e, Unauthenticated) for e in errors), errors
    assert all("requires authentication" in e.message for e in errors), [str(e) for e in errors]

    wrong = await _refused(_wrong_password(stack["etcd"]), keys, item.lease)
    assert all(isinstance(e, Unauthenticated) for e in wrong), wrong
    assert all("refused user 'root'" in e.message and "invalid user name or password" in e.message for e in wrong)
    assert not any("not-the-password" in e.message for e in wrong)

    # nothing was written, deleted or revoked: the registration is still there, under its lease
    after = (await store.list_prefix(keys.instances))[0]
    assert [(kv.key, kv.value) for kv in after] == [(kv.key, kv.value) for kv in before]
    assert await store.lease_ttl(item.lease) > 0
    registry.deregister(ref)


def test_credentials_and_ready_file_are_private_and_the_password_is_never_shown(stack: dict[str, Any]) -> None:
    state = Path(stack["state_dir"])
    creds_file = state / "etcd" / "credentials"
    assert stack["etcd_credentials"] == str(creds_file)
    creds = json.loads(creds_file.read_text())
    assert creds["user"] == "root" and len(creds["password"]) >= 32
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    ready = state / "ready.json"
    assert stat.S_IMODE(ready.stat().st_mode) == 0o600
    spec = EtcdSpec.parse(stack["etcd"])
    assert (spec.user, spec.password) == (creds["user"], creds["password"])  # the ready file has what works

    shown = [state / "up.log", *sorted((state / "logs").glob("*.log"))]
    assert len(shown) > 2
    for path in shown:
        text = path.read_text(errors="replace")
        assert creds["password"] not in text, f"{path} shows the etcd password"
    up_log = (state / "up.log").read_text()
    assert "root:***@127.0.0.1:" in up_log  # what is shown instead
    status = subprocess.run(
        [*_cli(), "status", "--ready-file", str(ready)], capture_output=True, text=True, timeout=60, check=True
    )
    assert creds["password"] not in status.stdout + status.stderr


def test_actors_authenticate_again_after_the_embedded_etcd_restarts(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, backends: Any
) -> None:
    """A restarted etcd knows none of the tokens it gave out: every actor's next call and watch authenticate again."""
    ready = Path(stack["state_dir"]) / "ready.json"
    old_pid = int(json.loads(ready.read_text())["etcd_pid"])
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while int(json.loads(ready.read_text()).get("etcd_pid") or 0) in (0, old_pid):  # `up` restarts it
        assert time.monotonic() - killed_at < 60, "up did not restart the embedded etcd"
        time.sleep(0.2)
    vip = f"reauth-{uuid.uuid4().hex[:6]}"
    b = backends(vip)
    lease = pb.LeaseSettings(renewal_interval_seconds=2, duration_seconds=30)
    while True:  # the write side: a shard's fenced write on a token the new etcd does not know, retried once
        try:
            ref, _ = registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=b.port, lease=lease))
            break
        except Unavailable:
            assert time.monotonic() - killed_at < 60, "the registry did not recover after etcd restarted"
            time.sleep(0.2)
    assert registry.heartbeat(ref) > 0  # the lease keep-alive stream
    registered_at = time.monotonic()
    while get(envoy.listen, vip).status != 200:  # the read side: the builders' watches created again
        assert time.monotonic() - registered_at < 20, "a registration after the restart never became routable"
        time.sleep(0.05)
    registry.deregister(ref)


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "meshactors.cli"]


# ---- a separate etcd: TLS, re-authentication after a restart, a user without permissions, an old data dir ------


def _certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 (cryptography's x509 builder)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("meshactors test CA")).issuer_name(name("meshactors test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = d / "ca.pem", d / "server.pem", d / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths[2].chmod(0o600)
    return paths


@pytest.fixture
def tls_etcd(tmp_path: Path) -> Any:
    ca, cert, key = _certs(tmp_path)
    server = EtcdServer(data_dir=tmp_path / "etcd" / "data", cert_file=str(cert), key_file=str(key), ca_file=str(ca))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_tls_etcd_with_auth_and_reauthentication_after_a_restart(tls_etcd: EtcdServer, tmp_path: Path) -> None:
    spec = tls_etcd.enable_auth(tmp_path / "etcd" / "credentials")
    parsed = EtcdSpec.parse(spec)
    assert spec.startswith("https://root:") and parsed.tls and parsed.ca == tls_etcd.ca_file

    async def before_restart() -> tuple[EtcdStore, int]:
        store = EtcdStore.from_spec(spec)
        await store.connect()
        await store.put("/tlstest/a", b"1")
        kv = await store.get("/tlstest/a")
        assert kv is not None and kv.value == b"1"
        assert store.authentications == 1
        # without the CA the server's certificate is not trusted: no connection at all
        untrusted = EtcdStore.from_spec(EtcdSpec(parsed.endpoints, tls=True), 1.0)
        await untrusted.connect()
        with pytest.raises(Unavailable):
            await untrusted.get("/tlstest/a")
        await untrusted.close()
        # plain http to the TLS port: refused too
        plain = EtcdStore(list(parsed.endpoints), 1.0)
        await plain.connect()
        with pytest.raises(Unavailable):
            await plain.get("/tlstest/a")
        await plain.close()
        return store, await store.revision()

    loop = asyncio.new_event_loop()
    try:
        store, revision = loop.run_until_complete(before_restart())
        # etcd's simple tokens live in the member's memory: after a restart every client's token is unknown
        tls_etcd.stop()
        tls_etcd.start()

        async def after_restart() -> None:
            # the watch comes first: etcd cancels it on the stale token, the store authenticates and re-creates it
            watch = ResumableWatch(store, "/tlstest/", start_revision=revision + 1, name="reauth").__aiter__()
            async with EtcdStore.from_spec(spec) as writer:
                await writer.put("/tlstest/b", b"2")

            async def first_change() -> Changes:
                async for change in watch:
                    if isinstance(change, Changes):
                        return change
                raise AssertionError("the watch ended")

            change = await asyncio.wait_for(first_change(), 20)
            await watch.aclose()
            assert [ev.key for ev in change.events] == ["/tlstest/b"]
            assert store.authentications == 2
            kv = await store.get("/tlstest/a")  # a unary call on the fresh token
            assert kv is not None and kv.value == b"1"
            lease = await store.grant_lease(30)
            assert await store.keep_alive(lease) > 0
            await store.close()

        loop.run_until_complete(after_restart())
    finally:
        loop.close()


def test_token_error_on_a_unary_call_is_retried_once(tls_etcd: EtcdServer, tmp_path: Path) -> None:
    spec = tls_etcd.enable_auth(tmp_path / "etcd" / "credentials")

    async def run() -> EtcdStore:
        store = EtcdStore.from_spec(spec)
        await store.connect()
        await store.put("/tlstest/c", b"1")
        assert store.authentications == 1
        return store

    loop = asyncio.new_event_loop()
    try:
        store = loop.run_until_complete(run())
        tls_etcd.stop()
        tls_etcd.start()

        async def after() -> None:
            assert await store.revision() > 0  # the first call after the restart: refused once, retried, answered
            assert store.authentications == 2
            await store.close()

        loop.run_until_complete(after())
    finally:
        loop.close()


def test_a_user_without_permissions_is_told_so(tls_etcd: EtcdServer, tmp_path: Path) -> None:
    spec = EtcdSpec.parse(tls_etcd.enable_auth(tmp_path / "etcd" / "credentials"))
    env_user = {"ETCDCTL_USER": f"root:{spec.password}"}  # in the environment, not on a command line
    subprocess.run(
        [find_binary("etcdctl"), "--endpoints", tls_etcd.url, "--cacert", tls_etcd.ca_file, "user", "add",
         "reader", "--new-user-password", "reader-pw"],
        capture_output=True, check=True, timeout=30, env={"PATH": "/usr/bin:/bin", **env_user},
    )  # fmt: skip
    reader = spec.with_credentials("reader", "reader-pw")

    async def run() -> None:
        store = EtcdStore.from_spec(reader)
        await store.connect()
        with pytest.raises(PermissionDenied, match="etcd refused get /x to etcd user 'reader'"):
            await store.get("/x")
        with pytest.raises(PermissionDenied, match="user 'reader'"):
            async for _ in store.watch_prefix("/x", 0):
                break
        await store.close()

    asyncio.run(run())


def test_an_etcd_from_before_auth_gets_it_and_keeps_its_data(tmp_path: Path) -> None:
    data = tmp_path / "etcd" / "data"
    creds = tmp_path / "etcd" / "credentials"
    old = EtcdServer(data_dir=data).start()
    try:

        async def write() -> None:
            async with EtcdStore.from_spec(old.url) as store:
                await store.put("/old/registration", b"kept")

        asyncio.run(write())
        port = old.client_port
        old.stop()
        assert not creds.exists()  # as a state dir from before this change is
        again = EtcdServer(data_dir=data, client_port=port).start()
        old = again
        spec = again.enable_auth(creds)  # turns auth on for the old data
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600

        async def read(spec: str) -> bytes | None:
            async with EtcdStore.from_spec(spec) as store:
                kv = await store.get("/old/registration")
                return kv.value if kv else None

        assert asyncio.run(read(spec)) == b"kept"
        with pytest.raises(Unauthenticated):
            asyncio.run(read(again.url))
        assert again.enable_auth(creds) == spec  # a later start reuses the stored password
        creds.unlink()  # a lost credentials file: said clearly, nothing changed
        with pytest.raises(Unauthenticated, match="is not its root password"):
            again.enable_auth(creds)
    finally:
        old.stop()
