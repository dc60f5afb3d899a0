"""The signing core: a self-signed EC P-256 root, leaf issuance from a CSR for a proven identity, renewal timing."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshactors import log
from meshactors.ca.identity import SpiffeId, validate_trust_domain
from meshactors.errors import InvalidArgument, Unavailable

ROOT_LIFETIME_S = 10 * 365 * 86400  # 10 years
ROOT_BACKDATE_S = 3600
MIN_ROOT_LIFETIME_S = 86400
MAX_ROOT_LIFETIME_S = 30 * 365 * 86400
LEAF_TTL_S = 86400  # 24 h
MIN_LEAF_TTL_S = 10  # short TTLs are for rotation tests; the issue's own example is 20 s
MAX_LEAF_TTL_S = 30 * 86400
LEAF_BACKDATE_S = 300  # clock skew between the CA and the peers that check NotBefore
MAX_CSR_BYTES = 8192  # a P-256 CSR in PEM is ~500 bytes; more is refused before parsing
RENEW_FROM, RENEW_TO = 0.5, 0.8  # renewal point, as a fraction of the lifetime

_log = log.get("ca")


def _check_now(now: datetime, field_name: str = "now") -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise InvalidArgument(field_name, "must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _check_seconds(value: int, lo: int, hi: int, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field_name, f"must be an integer number of seconds, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgument(field_name, f"{value} is out of range {lo}-{hi} seconds")
    return value


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def _key_kind(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC {key.curve.name} key"
    size = getattr(key, "key_size", None)
    name = type(key).__name__.removeprefix("_").removesuffix("PublicKey")
    return f"a {name}{f'-{size}' if size else ''} key"


def root_trust_domain(cert: x509.Certificate, field_name: str = "root") -> str:
    """The trust domain a root names in its one URI SAN `spiffe://<trust domain>`."""
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    except x509.ExtensionNotFound:
        raise InvalidArgument(field_name, "has no URI SAN naming its trust domain") from None
    if len(uris) != 1 or not uris[0].startswith("spiffe://") or "/" in uris[0][len("spiffe://") :]:
        raise InvalidArgument(field_name, "must carry exactly one URI SAN spiffe://<trust domain>")
    return validate_trust_domain(uris[0][len("spiffe://") :], f"{field_name}.trust_domain")


def check_root(cert: x509.Certificate, field_name: str = "root") -> str:
    """A root this CA can use: self-signed EC P-256, CA:TRUE, keyCertSign, a trust domain SAN. Its trust domain."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound as exc:
        raise InvalidArgument(field_name, f"lacks a CA extension: {exc}") from None
    if not bc.ca or not ku.key_cert_sign:
        raise InvalidArgument(field_name, "is not a CA certificate (CA:TRUE with keyCertSign)")
    if not _is_p256(cert.public_key()):
        raise InvalidArgument(field_name, f"has {_key_kind(cert.public_key())}; roots are EC P-256")
    if cert.issuer != cert.subject:
        raise InvalidArgument(field_name, "is not self-signed")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise InvalidArgument(field_name, f"its self-signature does not verify: {exc}") from None
    return root_trust_domain(cert, field_name)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A root certificate and its private key (in memory only: at rest it is sealed, see meshactors.ca.sealing)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    trust_domain: str = ""

    def __post_init__(self) -> None:
        td = check_root(self.cert)
        if self.trust_domain and self.trust_domain != td:
            raise InvalidArgument("trust_domain", f"{self.trust_domain!r} is not the root's trust domain {td!r}")
        object.__setattr__(self, "trust_domain", td)
        if self.key.public_key() != self.cert.public_key():
            raise InvalidArgument("key", "the private key does not belong to the root certificate")

    @property
    def serial(self) -> str:
        """The root's serial number in hex: its name in the store and in `ca show`."""
        return format(self.cert.serial_number, "x")

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def __repr__(self) -> str:
        return f"CertificateAuthority(trust_domain={self.trust_domain!r}, serial={self.serial})"


def generate_root(trust_domain: str, now: datetime, lifetime_s: int = ROOT_LIFETIME_S) -> CertificateAuthority:
    """A new self-signed root for `trust_domain`: EC P-256, CA:TRUE pathlen 0 (it signs leaves only), valid from an
    hour before `now` for `lifetime_s` (10 years by default)."""
    validate_trust_domain(trust_domain)
    now = _check_now(now)
    _check_seconds(lifetime_s, MIN_ROOT_LIFETIME_S, MAX_ROOT_LIFETIME_S, "lifetime_s")
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, f"meshactors root {serial:x}"[:64]),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(seconds=ROOT_BACKDATE_S))
        .not_valid_after(now + timedelta(seconds=lifetime_s))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SpiffeId.trust_domain_uri(trust_domain))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    ca = CertificateAuthority(cert, key, trust_domain)
    _log.info(
        "ca root generated", trust_domain=trust_domain, serial=ca.serial, not_after=cert.not_valid_after_utc.isoformat()
    )
    return ca


def load_csr(csr_pem: bytes | str) -> x509.CertificateSigningRequest:
    """Parse and check a PEM CSR: bounded size, one request, a valid signature, an EC P-256 key.
    InvalidArgument("csr", reason) otherwise."""
    data = csr_pem.encode("ascii", "replace") if isinstance(csr_pem, str) else csr_pem
    if not isinstance(data, bytes) or not data:
        raise InvalidArgument("csr", "must be a non-empty PEM certificate request")
    if len(data) > MAX_CSR_BYTES:
        raise InvalidArgument("csr", f"{len(data)} bytes; at most {MAX_CSR_BYTES}")
    if data.count(b"-----BEGIN ") != 1:
        raise InvalidArgument("csr", "must hold exactly one PEM block (CERTIFICATE REQUEST)")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise InvalidArgument("csr", f"not a PEM certificate request: {str(exc)[:200]}") from None
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidArgument("csr", f"its public key cannot be read: {str(exc)[:200]}") from None
    if not _is_p256(key):
        raise InvalidArgument("csr", f"the request has {_key_kind(key)}; only EC P-256 (secp256r1) keys are accepted")
    if not csr.is_signature_valid:
        raise InvalidArgument("csr", "its signature does not verify (altered, or not signed by its key)")
    return csr


def _requested_names(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, x509.UnsupportedGeneralNameType, ValueError):
        return []  # only logged: the CSR's extensions are ignored either way
    return [str(getattr(n, "value", n))[:120] for n in list(san)[:8]]


def issue(
    ca: CertificateAuthority,
    csr_pem: bytes | str,
    identity: SpiffeId,
    ttl_s: int = LEAF_TTL_S,
    now: datetime | None = None,
) -> x509.Certificate:
    """A leaf for `identity` (the caller's proven identity) over the CSR's public key.

    Only the CSR's key is used: its subject and every extension it asks for (SANs, CA:TRUE, key usages) are ignored,
    so the leaf's one URI SAN is always `identity`. Validity: NotBefore `now` - 5 min (never before the root's),
    NotAfter `now` + `ttl_s` (never after the root's). Unavailable when the root is not valid at `now` or would cap
    the leaf below MIN_LEAF_TTL_S (rotate the root)."""
    if not isinstance(identity, SpiffeId):
        raise InvalidArgument("identity", "must be a SpiffeId (the caller's proven identity)")
    if identity.trust_domain != ca.trust_domain:
        raise InvalidArgument("identity", f"{identity.uri} is outside this CA's trust domain {ca.trust_domain!r}")
    _check_seconds(ttl_s, MIN_LEAF_TTL_S, MAX_LEAF_TTL_S, "ttl_s")
    now = _check_now(now if now is not None else datetime.now(UTC))
    csr = load_csr(csr_pem)
    root_nb, root_na = ca.cert.not_valid_before_utc, ca.cert.not_valid_after_utc
    if not root_nb <= now < root_na:
        raise Unavailable(
            f"CA root {ca.serial} is valid {root_nb.isoformat()} .. {root_na.isoformat()}, not at {now.isoformat()}"
        )
    not_before = max(now - timedelta(seconds=LEAF_BACKDATE_S), root_nb)
    not_after = min(now + timedelta(seconds=ttl_s), root_na)
    if not_after - now < timedelta(seconds=MIN_LEAF_TTL_S):
        raise Unavailable(f"CA root {ca.serial} expires at {root_na.isoformat()}: too soon to issue; rotate the root")
    requested = _requested_names(csr)
    if requested and requested != [identity.uri]:
        _log.warning("ca csr asked for other names; ignored", identity=identity.uri, requested=requested)
    key = csr.public_key()
    root_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        # The subject is empty, so the SAN is critical (RFC 5280 4.2.1.6), as X509-SVIDs are.
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    _log.info(
        "ca leaf issued",
        identity=identity.uri,
        serial=format(cert.serial_number, "x"),
        root=ca.serial,
        not_after=not_after.isoformat(),
    )
    return cert


def renew_at(not_before: datetime, not_after: datetime, rng: random.Random) -> datetime:
    """When to renew a leaf: a uniformly jittered point in [50 %, 80 %] of its lifetime, so a fleet issued at once
    does not renew at once and a missed renewal still leaves 20 % of the lifetime to retry in."""
    not_before = _check_now(not_before, "not_before")
    not_after = _check_now(not_after, "not_after")
    if not_after <= not_before:
        raise InvalidArgument("not_after", "must be after not_before")
    return not_before + (not_after - not_before) * rng.uniform(RENEW_FROM, RENEW_TO)


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
