"""The CertificateService against an in-memory store: who gets which certificate, limits, loading, restarts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshactors.auth.model import Identity, Role
from meshactors.ca import SpiffeId, TrustBundle, authority, verify_leaf, write_key_file
from meshactors.ca.limits import CsrRateLimiter
from meshactors.identity_agent import new_key_and_csr
from meshactors.registry import cert_service
from meshactors.registry.cert_service import CertificateService
from meshactors.store.keys import KeySchema
from meshactors.v1 import certificate_pb2 as pb
from tests.unit.test_policy_store import TxnStore

TD = "mesh.test"
KEYS = KeySchema("/t")


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    def invocation_metadata(self) -> tuple[()]:
        return ()


class Auth:
    """Stands in for the Authenticator: the caller is whoever the test says."""

    def __init__(self, who: Identity) -> None:
        self.who = who

    def identify(self, metadata: Any) -> Identity:
        return self.who


SERVICE_A = Identity("0123456789abcdef", Role.SERVICE, "orders", frozenset({"orders-secure"}))
PROXY = Identity("fedcba9876543210", Role.PROXY)


def service(store: TxnStore, key_file: Path, who: Identity = SERVICE_A, **kw: Any) -> CertificateService:
    return CertificateService(store, KEYS, Auth(who), TD, str(key_file), **kw)  # type: ignore[arg-type]


async def started(svc: CertificateService) -> CertificateService:
    await asyncio.wait_for(svc.load(), 5)
    return svc


def greedy_csr(uri: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


async def test_sign_issues_the_callers_own_identity_whatever_the_csr_asks(tmp_path: Path) -> None:
    write_key_file(tmp_path / "ca.key")
    svc = await started(service(TxnStore(), tmp_path / "ca.key", ttl_s=3600))
    resp = await svc.Sign(pb.SignRequest(csr_pem=greedy_csr(f"spiffe://{TD}/svc/billing")), Context())
    leaf = x509.load_pem_x509_certificate(resp.certificate_pem.encode())
    bundle = TrustBundle.from_pem(resp.bundle_pem)
    assert verify_leaf(bundle, leaf, datetime.now(UTC)) == SpiffeId(TD, "orders")
    assert resp.spiffe_id == f"spiffe://{TD}/svc/orders"
    now_ms = datetime.now(UTC).timestamp() * 1000
    assert resp.not_after_ms - now_ms == pytest.approx(3600_000, abs=5000)
    lifetime = resp.not_after_ms - now_ms
    assert now_ms + 0.49 * lifetime <= resp.renew_at_ms <= now_ms + 0.81 * lifetime  # from issuance, not backdating


async def test_a_caller_may_ask_for_a_shorter_lifetime_never_a_longer_one(tmp_path: Path) -> None:
    write_key_file(tmp_path / "ca.key")
    svc = await started(service(TxnStore(), tmp_path / "ca.key", ttl_s=3600))
    _, csr = new_key_and_csr()
    resp = await svc.Sign(pb.SignRequest(csr_pem=csr, ttl_seconds=20), Context())
    assert resp.not_after_ms - resp.not_before_ms == pytest.approx(20_000 + authority.LEAF_BACKDATE_S * 1000, abs=2000)
    assert resp.renew_at_ms - datetime.now(UTC).timestamp() * 1000 <= 0.81 * 20_000
    for asked in (3601, 9, -1):
        with pytest.raises(Aborted) as err:
            await svc.Sign(pb.SignRequest(csr_pem=csr, ttl_seconds=asked), Context())
        assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT, asked
        assert "ttl_seconds" in err.value.details and str(asked) in err.value.details


async def test_tokens_without_a_service_identity_get_no_certificate_but_the_bundle(tmp_path: Path) -> None:
    write_key_file(tmp_path / "ca.key")
    store = TxnStore()
    await started(service(store, tmp_path / "ca.key"))
    proxy = await started(service(store, tmp_path / "ca.key", who=PROXY))
    _, csr = new_key_and_csr()
    with pytest.raises(Aborted) as err:
        await proxy.Sign(pb.SignRequest(csr_pem=csr), Context())
    assert err.value.code is grpc.StatusCode.PERMISSION_DENIED and "service" in err.value.details
    bundle = await proxy.Bundle(pb.BundleRequest(), Context())
    assert bundle.trust_domain == TD and "BEGIN CERTIFICATE" in bundle.bundle_pem


async def test_bad_csrs_and_too_many_csrs_are_refused(tmp_path: Path) -> None:
    write_key_file(tmp_path / "ca.key")
    svc = await started(service(TxnStore(), tmp_path / "ca.key", limiter=CsrRateLimiter(burst=2, per_s=0.01)))
    with pytest.raises(Aborted) as err:
        await svc.Sign(pb.SignRequest(csr_pem="not a csr"), Context())
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT and "csr" in err.value.details
    _, csr = new_key_and_csr()
    await svc.Sign(pb.SignRequest(csr_pem=csr), Context())  # the bad one spent a token too
    with pytest.raises(Aborted) as err:
        await svc.Sign(pb.SignRequest(csr_pem=csr), Context())
    assert err.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "svc/orders" in err.value.details


async def test_a_restarted_service_loads_the_same_root(tmp_path: Path) -> None:
    write_key_file(tmp_path / "ca.key")
    store = TxnStore()
    first = await started(service(store, tmp_path / "ca.key"))
    second = await started(service(store, tmp_path / "ca.key"))
    assert first.state is not None and second.state is not None
    assert second.state.ca.serial == first.state.ca.serial and not second.state.created and first.state.created


async def test_a_missing_key_file_answers_unavailable_naming_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(cert_service, "READY_WAIT_S", 0.05)
    svc = service(TxnStore(), tmp_path / "missing.key")
    task = asyncio.create_task(svc.run())
    try:
        for _ in range(100):
            if "cannot start" in svc.problem:
                break
            await asyncio.sleep(0.01)
        _, csr = new_key_and_csr()
        with pytest.raises(Aborted) as err:
            await svc.Sign(pb.SignRequest(csr_pem=csr), Context())
        assert err.value.code is grpc.StatusCode.UNAVAILABLE and "missing.key" in err.value.details
    finally:
        task.cancel()


ADMIN = Identity("00112233445566ff", Role.ADMIN)


async def test_a_rotation_runs_its_steps_in_order_and_finish_waits_for_every_identity(tmp_path: Path) -> None:
    write_key_file(tmp_path / "ca.key")
    store = TxnStore()
    orders = await started(service(store, tmp_path / "ca.key"))
    admin = await started(service(store, tmp_path / "ca.key", who=ADMIN))
    _, csr = new_key_and_csr()
    old_leaf = await orders.Sign(pb.SignRequest(csr_pem=csr), Context())
    old = old_leaf.signing_serial
    with pytest.raises(Aborted) as err:  # only admins rotate
        await orders.Rotate(pb.RotateRequest(step="stage"), Context())
    assert err.value.code is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(Aborted) as err:  # out of order: names the step and what comes next
        await admin.Rotate(pb.RotateRequest(step="finish"), Context())
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT and "the next step is stage" in err.value.details

    staged = await admin.Rotate(pb.RotateRequest(step="stage"), Context())
    assert [r.signing for r in staged.roots] == [True, False] and staged.signing_serial == old
    orders.state = None  # the actor follows the bundle every FOLLOW_S; here it reloads by hand
    await orders.load()
    both = await orders.Bundle(pb.BundleRequest(), Context())
    assert len(TrustBundle.from_pem(both.bundle_pem).roots) == 2 and both.signing_serial == old

    active = await admin.Rotate(pb.RotateRequest(step="activate"), Context())
    new = active.signing_serial
    assert new != old and [r.signing for r in active.roots] == [False, True]
    with pytest.raises(Aborted) as err:  # orders' valid leaf is still of the old root
        await admin.Rotate(pb.RotateRequest(step="finish"), Context())
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT and f"spiffe://{TD}/svc/orders" in err.value.details
    orders.state = None
    await orders.load()
    renewed = await orders.Sign(pb.SignRequest(csr_pem=csr), Context())
    assert renewed.signing_serial == new
    shown = await admin.Show(pb.ShowRequest(), Context())
    assert [(i.spiffe_id, i.issuer_serial) for i in shown.identities] == [(f"spiffe://{TD}/svc/orders", new)]
    final = await admin.Rotate(pb.RotateRequest(step="finish"), Context())
    assert [(r.serial, r.signing) for r in final.roots] == [(new, True)]
    leaf = x509.load_pem_x509_certificate(renewed.certificate_pem.encode())
    assert verify_leaf(TrustBundle.from_pem((await admin.Bundle(pb.BundleRequest(), Context())).bundle_pem), leaf,
                       datetime.now(UTC)) == SpiffeId(TD, "orders")  # fmt: skip


async def test_finish_can_be_forced_past_identities_that_did_not_renew(tmp_path: Path) -> None:
    write_key_file(tmp_path / "ca.key")
    store = TxnStore()
    orders = await started(service(store, tmp_path / "ca.key"))
    admin = await started(service(store, tmp_path / "ca.key", who=ADMIN))
    _, csr = new_key_and_csr()
    await orders.Sign(pb.SignRequest(csr_pem=csr), Context())
    await admin.Rotate(pb.RotateRequest(step="stage"), Context())
    await admin.Rotate(pb.RotateRequest(step="activate"), Context())
    final = await admin.Rotate(pb.RotateRequest(step="finish", force=True), Context())
    assert len(final.roots) == 1 and final.roots[0].serial == final.signing_serial
