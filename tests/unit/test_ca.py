"""The CA core without I/O: SANs come from the identity only, lifetimes and backdating capped by the root, key types,
tampered CSRs, the sealed root key, rotation bundles, renewal jitter and validation errors naming the field."""

from __future__ import annotations

import os
import random
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshactors.ca import (
    SpiffeId,
    TrustBundle,
    authority,
    generate_root,
    issue,
    read_key_file,
    renew_at,
    rotate,
    seal,
    sealing,
    unseal,
    validate_trust_domain,
    verify_leaf,
    write_key_file,
)
from meshactors.ca.sealing import Kek
from meshactors.errors import ConfigError, InvalidArgument, PermissionDenied, Unavailable

TD = "mesh.test"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ORDERS = SpiffeId(TD, "orders")
ROOT = generate_root(TD, NOW)


def _csr(key: object = None, sans: list[x509.GeneralName] | None = None, ca: bool = False, cn: str = "") -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _uris(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )


# --- SAN from the identity only ---------------------------------------------------------------------------------


def test_a_csr_asking_for_another_identity_dns_names_and_ca_gets_only_the_callers_identity() -> None:
    csr = _csr(
        sans=[
            x509.UniformResourceIdentifier(f"spiffe://{TD}/svc/payments"),
            x509.UniformResourceIdentifier("spiffe://other.test/svc/orders"),
            x509.DNSName("payments.example.com"),
        ],
        ca=True,
        cn="payments",
    )
    leaf = issue(ROOT, csr, ORDERS, now=NOW)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [x509.UniformResourceIdentifier(ORDERS.uri)]
    assert san.critical  # the subject is empty
    assert leaf.subject == x509.Name([])
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert verify_leaf(TrustBundle(TD, (ROOT.cert,)), leaf, NOW) == ORDERS
    with pytest.raises(PermissionDenied, match=re.escape("expected spiffe://mesh.test/svc/payments")):
        verify_leaf(TrustBundle(TD, (ROOT.cert,)), leaf, NOW, expected=SpiffeId(TD, "payments"))


def test_a_csr_with_no_san_gets_the_identity_too() -> None:
    assert _uris(issue(ROOT, _csr(), ORDERS, now=NOW)) == [ORDERS.uri]


def test_an_identity_outside_the_trust_domain_or_not_a_spiffe_id_is_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        issue(ROOT, _csr(), SpiffeId("other.test", "orders"), now=NOW)
    assert err.value.field == "identity" and "outside" in err.value.reason
    with pytest.raises(InvalidArgument) as err:
        issue(ROOT, _csr(), ORDERS.uri, now=NOW)  # type: ignore[arg-type]
    assert err.value.field == "identity"


# --- lifetimes ---------------------------------------------------------------------------------------------------


def test_default_lifetime_is_24h_backdated_5_min_with_server_and_client_usage() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue(ROOT, _csr(key), ORDERS, now=NOW)
    assert leaf.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert leaf.not_valid_after_utc == NOW + timedelta(hours=24)
    ext = leaf.extensions
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_encipherment)
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        key.public_key()
    )
    root_ski = ROOT.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == root_ski
    assert leaf.public_key() == key.public_key() and leaf.issuer == ROOT.cert.subject
    other = issue(ROOT, _csr(key), ORDERS, now=NOW)
    assert other.serial_number != leaf.serial_number and leaf.serial_number.bit_length() > 64


def test_a_short_ttl_is_honoured_and_ttl_bounds_name_the_field() -> None:
    leaf = issue(ROOT, _csr(), ORDERS, ttl_s=20, now=NOW)
    assert leaf.not_valid_after_utc == NOW + timedelta(seconds=20)
    for bad in (0, 9, authority.MAX_LEAF_TTL_S + 1, True, 1.5):
        with pytest.raises(InvalidArgument) as err:
            issue(ROOT, _csr(), ORDERS, ttl_s=bad, now=NOW)  # type: ignore[arg-type]
        assert err.value.field == "ttl_s"
    with pytest.raises(InvalidArgument) as err:
        issue(ROOT, _csr(), ORDERS, now=datetime(2030, 1, 1))  # naive
    assert err.value.field == "now"


def test_backdating_never_precedes_the_roots_not_before_and_expiry_never_passes_the_roots() -> None:
    root = generate_root(TD, NOW, lifetime_s=86400)
    root_nb, root_na = root.cert.not_valid_before_utc, root.cert.not_valid_after_utc
    assert root_nb == NOW - timedelta(hours=1) and root_na == NOW + timedelta(days=1)
    early = issue(root, _csr(), ORDERS, now=root_nb + timedelta(minutes=1))
    assert early.not_valid_before_utc == root_nb
    late = issue(root, _csr(), ORDERS, now=root_na - timedelta(hours=1))
    assert late.not_valid_after_utc == root_na
    assert verify_leaf(TrustBundle(TD, (root.cert,)), late, root_na - timedelta(seconds=1)) == ORDERS


def test_a_root_expired_not_yet_valid_or_about_to_expire_refuses_to_issue() -> None:
    root = generate_root(TD, NOW, lifetime_s=86400)
    root_nb, root_na = root.cert.not_valid_before_utc, root.cert.not_valid_after_utc
    for when, what in ((root_na, "not at"), (root_nb - timedelta(seconds=1), "not at"),
                       (root_na - timedelta(seconds=5), "rotate the root")):  # fmt: skip
        with pytest.raises(Unavailable, match=what):
            issue(root, _csr(), ORDERS, now=when)


def test_root_is_a_long_lived_p256_ca_of_pathlen_0_naming_the_trust_domain() -> None:
    cert = ROOT.cert
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    assert cert.not_valid_after_utc - NOW == timedelta(days=3650)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == TD
    assert _uris(cert) == [f"spiffe://{TD}"]
    assert TD in repr(ROOT) and "PRIVATE" not in repr(ROOT)
    with pytest.raises(InvalidArgument) as err:
        generate_root(TD, NOW, lifetime_s=60)
    assert err.value.field == "lifetime_s"


# --- what the CA accepts in a CSR --------------------------------------------------------------------------------


def test_rsa_and_other_curves_are_refused_naming_the_key() -> None:
    cases = [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA-2048"),
        (ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
    ]
    for key, named in cases:
        with pytest.raises(InvalidArgument) as err:
            issue(ROOT, _csr(key), ORDERS, now=NOW)
        assert err.value.field == "csr" and named in err.value.reason and "P-256" in err.value.reason


def test_a_tampered_csr_is_refused() -> None:
    csr = x509.load_pem_x509_csr(_csr(cn="aaaaaaaa"))
    der = csr.public_bytes(serialization.Encoding.DER)
    assert der.count(b"aaaaaaaa") == 1
    tampered = x509.load_der_x509_csr(der.replace(b"aaaaaaaa", b"aaaaaaab"))
    with pytest.raises(InvalidArgument) as err:
        issue(ROOT, tampered.public_bytes(serialization.Encoding.PEM), ORDERS, now=NOW)
    assert err.value.field == "csr" and "signature does not verify" in err.value.reason


def test_oversized_multiple_and_garbage_csrs_are_refused() -> None:
    good = _csr()
    for data, why in (
        (b"", "non-empty"),
        (good + b"\n" * authority.MAX_CSR_BYTES, "at most"),
        (good + good, "exactly one"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "not a PEM"),
    ):
        with pytest.raises(InvalidArgument) as err:
            issue(ROOT, data, ORDERS, now=NOW)
        assert err.value.field == "csr" and why in err.value.reason


# --- the root key at rest ----------------------------------------------------------------------------------------


def test_a_sealed_root_key_round_trips_and_is_not_the_plain_key() -> None:
    kek = Kek.generate("/keys/ca.key")
    blob = seal(ROOT.key, kek, b"serial-1")
    plain = ROOT.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert plain not in blob and plain[-32:] not in blob
    assert unseal(blob, kek, b"serial-1").private_numbers() == ROOT.key.private_numbers()
    assert seal(ROOT.key, kek, b"serial-1") != blob  # a fresh nonce every time


def test_a_wrong_key_file_is_a_clear_error_naming_it() -> None:
    blob = seal(ROOT.key, Kek.generate("/keys/right.key"), b"s")
    with pytest.raises(ConfigError, match=re.escape("key file /keys/wrong.key")) as err:
        unseal(blob, Kek.generate("/keys/wrong.key"), b"s")
    assert "another key" in err.value.message


def test_a_sealed_key_bound_to_another_root_or_damaged_does_not_open() -> None:
    kek = Kek.generate("/keys/ca.key")
    blob = seal(ROOT.key, kek, b"serial-1")
    for bad, ctx in ((blob, b"serial-2"), (blob[:-1] + bytes([blob[-1] ^ 1]), b"serial-1"), (blob[:20], b""),
                     (b"nope", b"")):  # fmt: skip
        with pytest.raises(InvalidArgument) as err:
            unseal(bad, kek, ctx)
        assert err.value.field == "sealed_key"


def test_key_files_are_0600_refused_when_others_can_read_them_and_never_printed(tmp_path: Path) -> None:
    path = tmp_path / "ca.key"
    kek = write_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).key == kek.key
    assert kek.key.hex() not in repr(kek) and kek.key.hex() not in repr(read_key_file(path))
    with pytest.raises(ConfigError, match="already exists"):
        write_key_file(path)
    assert read_key_file(path).key == kek.key  # not overwritten
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=re.escape(f"chmod 600 {path}")):
        read_key_file(path)
    bad = tmp_path / "bad.key"
    bad.write_text("not hex at all\n")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match=re.escape(f"key file {bad}: expected 64 hex digits")):
        read_key_file(bad)
    with pytest.raises(ConfigError, match=re.escape(f"key file {tmp_path / 'missing.key'}: cannot open")):
        read_key_file(tmp_path / "missing.key")


# --- rotation ----------------------------------------------------------------------------------------------------


def test_rotation_overlap_accepts_leaves_of_both_roots_and_final_only_the_new_ones() -> None:
    old, new = ROOT, generate_root(TD, NOW)
    old_leaf, new_leaf = issue(old, _csr(), ORDERS, now=NOW), issue(new, _csr(), ORDERS, now=NOW)
    start = TrustBundle(TD, (old.cert,))
    overlap, final = rotate(start, new.cert)
    assert overlap.serials == (old.serial, new.serial) and final.serials == (new.serial,)
    for leaf in (old_leaf, new_leaf):
        assert verify_leaf(overlap, leaf, NOW) == ORDERS
    assert verify_leaf(final, new_leaf, NOW) == ORDERS
    with pytest.raises(PermissionDenied, match="does not chain"):
        verify_leaf(final, old_leaf, NOW)
    with pytest.raises(PermissionDenied, match="does not chain"):
        verify_leaf(start, new_leaf, NOW)
    assert TrustBundle.from_pem(overlap.pem()).serials == overlap.serials  # PEM keeps the order


def test_rotate_refuses_a_root_already_in_the_bundle_or_of_another_trust_domain() -> None:
    start = TrustBundle(TD, (ROOT.cert,))
    with pytest.raises(InvalidArgument, match="already in the bundle"):
        rotate(start, ROOT.cert)
    with pytest.raises(InvalidArgument, match=re.escape("not of 'mesh.test'")) as err:
        rotate(start, generate_root("other.test", NOW).cert)
    assert err.value.field == "bundle.roots[1]"


def test_a_leaf_is_refused_when_expired_or_from_a_foreign_root_of_the_same_name() -> None:
    bundle = TrustBundle(TD, (ROOT.cert,))
    leaf = issue(ROOT, _csr(), ORDERS, ttl_s=60, now=NOW)
    with pytest.raises(PermissionDenied):
        verify_leaf(bundle, leaf, NOW + timedelta(seconds=61))
    with pytest.raises(PermissionDenied):
        verify_leaf(bundle, leaf, NOW - timedelta(minutes=6))  # before the backdated NotBefore
    impostor = issue(generate_root(TD, NOW), _csr(), ORDERS, now=NOW)
    with pytest.raises(PermissionDenied, match="does not chain"):
        verify_leaf(bundle, impostor, NOW)


def test_a_leaf_is_not_accepted_as_a_bundle_root() -> None:
    with pytest.raises(InvalidArgument, match="not a CA certificate"):
        TrustBundle(TD, (issue(ROOT, _csr(), ORDERS, now=NOW),))


# --- renewal -----------------------------------------------------------------------------------------------------


def test_renewal_is_jittered_within_50_to_80_percent_of_the_lifetime() -> None:
    rng = random.Random(7)
    nb, na = NOW, NOW + timedelta(hours=24)
    fractions = [(renew_at(nb, na, rng) - nb) / (na - nb) for _ in range(2000)]
    assert all(0.5 <= f <= 0.8 for f in fractions)
    assert min(fractions) < 0.52 and max(fractions) > 0.78  # spread over the window, not one point
    with pytest.raises(InvalidArgument) as err:
        renew_at(na, nb, rng)
    assert err.value.field == "not_after"


# --- names ---------------------------------------------------------------------------------------------------------


def test_spiffe_ids_format_and_parse_strictly() -> None:
    assert ORDERS.uri == "spiffe://mesh.test/svc/orders" and str(ORDERS) == ORDERS.uri
    assert SpiffeId.parse("spiffe://mesh.test/svc/orders.v2") == SpiffeId(TD, "orders.v2")
    bad = [
        "https://mesh.test/svc/orders",
        "spiffe://mesh.test",
        "spiffe://Mesh.test/svc/orders",
        "spiffe://mesh.test:443/svc/orders",
        "spiffe://user@mesh.test/svc/orders",
        "spiffe://mesh.test/ns/orders",
        "spiffe://mesh.test/svc/orders/extra",
        "spiffe://mesh.test/svc/orders?x=1",
        "spiffe://mesh.test/svc/Orders",
        "spiffe://mesh.test/svc/",
        "spiffe://mesh.test/svc/" + "a" * 3000,
    ]
    for uri in bad:
        with pytest.raises(InvalidArgument) as err:
            SpiffeId.parse(uri, "peer")
        assert err.value.field == "peer", uri


def test_trust_domain_and_service_validation_names_the_field() -> None:
    assert validate_trust_domain("a-b.c0") == "a-b.c0"
    for bad in ("", "Mesh", "mesh_test", "-mesh", "mesh.", "a" * 256):
        with pytest.raises(InvalidArgument) as err:
            validate_trust_domain(bad)
        assert err.value.field == "trust_domain"
    with pytest.raises(InvalidArgument) as err:
        SpiffeId(TD, "Orders")
    assert err.value.field == "service"
    with pytest.raises(InvalidArgument) as err:
        generate_root("Not A Domain", NOW)
    assert err.value.field == "trust_domain"


def test_sealing_blob_layout_names_its_kek() -> None:
    kek = Kek.generate()
    blob = seal(ROOT.key, kek)
    assert sealing.sealed_kek_id(blob) == kek.kek_id and blob.startswith(sealing.MAGIC)
