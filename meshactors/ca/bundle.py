"""Trust bundles (the ordered roots a peer trusts), the two-step root rotation, and leaf verification against one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshactors.ca.authority import check_root
from meshactors.ca.identity import SpiffeId, validate_trust_domain
from meshactors.errors import InvalidArgument, PermissionDenied

MAX_ROOTS = 8  # a rotation needs two; more is a bundle nobody pruned
MAX_BUNDLE_BYTES = 64 * 1024
MAX_LEAF_BYTES = 8192


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """The roots of one trust domain, oldest first, no duplicates, each a valid root of that domain."""

    trust_domain: str
    roots: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        validate_trust_domain(self.trust_domain)
        if not self.roots:
            raise InvalidArgument("bundle", "holds no root")
        if len(self.roots) > MAX_ROOTS:
            raise InvalidArgument("bundle", f"{len(self.roots)} roots; at most {MAX_ROOTS}")
        seen: set[str] = set()
        for i, root in enumerate(self.roots):
            td = check_root(root, f"bundle.roots[{i}]")
            if td != self.trust_domain:
                raise InvalidArgument(f"bundle.roots[{i}]", f"is a root of {td!r}, not of {self.trust_domain!r}")
            fp = fingerprint(root)
            if fp in seen:
                raise InvalidArgument(f"bundle.roots[{i}]", "is already in the bundle")
            seen.add(fp)

    @property
    def serials(self) -> tuple[str, ...]:
        return tuple(format(r.serial_number, "x") for r in self.roots)

    def pem(self) -> str:
        """Every root as PEM, concatenated in order: what Envoy's and gRPC's CA file takes."""
        return "".join(r.public_bytes(serialization.Encoding.PEM).decode("ascii") for r in self.roots)

    @classmethod
    def from_pem(cls, data: bytes | str, trust_domain: str | None = None) -> TrustBundle:
        """Parse a PEM bundle (bounded); its trust domain is the first root's unless `trust_domain` is given."""
        raw = data.encode("ascii", "replace") if isinstance(data, str) else data
        if len(raw) > MAX_BUNDLE_BYTES:
            raise InvalidArgument("bundle", f"{len(raw)} bytes; at most {MAX_BUNDLE_BYTES}")
        if raw.count(b"-----BEGIN CERTIFICATE-----") > MAX_ROOTS:
            raise InvalidArgument("bundle", f"more than {MAX_ROOTS} certificates")
        try:
            roots = tuple(x509.load_pem_x509_certificates(raw))
        except ValueError as exc:
            raise InvalidArgument("bundle", f"not PEM certificates: {str(exc)[:200]}") from None
        if trust_domain is None:
            trust_domain = check_root(roots[0], "bundle.roots[0]")
        return cls(trust_domain, roots)


def rotate(bundle: TrustBundle, new_root: x509.Certificate) -> tuple[TrustBundle, TrustBundle]:
    """The two bundles of a root rotation: (overlap, final).

    Publish `overlap` (every current root plus `new_root`) everywhere first, and only then issue from the new root;
    once every leaf of the old roots has been replaced, publish `final` (the new root only). A peer holding
    `overlap` accepts leaves of either root, so no handshake fails at either step."""
    overlap = TrustBundle(bundle.trust_domain, (*bundle.roots, new_root))
    return overlap, TrustBundle(bundle.trust_domain, (new_root,))


def load_leaf(data: bytes | str | x509.Certificate) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if len(raw) > MAX_LEAF_BYTES:
        raise InvalidArgument("certificate", f"{len(raw)} bytes; at most {MAX_LEAF_BYTES}")
    try:
        return x509.load_pem_x509_certificate(raw)
    except ValueError as exc:
        raise InvalidArgument("certificate", f"not a PEM certificate: {str(exc)[:200]}") from None


def verify_leaf(
    bundle: TrustBundle,
    leaf: bytes | str | x509.Certificate,
    now: datetime,
    expected: SpiffeId | None = None,
) -> SpiffeId:
    """The identity of `leaf` if it chains to a root of `bundle` at `now` (signature, validity, CA constraints, EKU
    clientAuth, checked by cryptography's verifier) and carries exactly one SPIFFE URI SAN of the bundle's trust
    domain, with serverAuth too; that SAN must be `expected` when given. PermissionDenied naming what failed."""
    if now.tzinfo is None:
        raise InvalidArgument("now", "must be a timezone-aware datetime")
    cert = load_leaf(leaf)
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(bundle.roots)))
        .time(now.astimezone(UTC))
        .max_chain_depth(1)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(cert, [])
    except verification.VerificationError as exc:
        raise PermissionDenied(f"certificate does not chain to the trust bundle {bundle.serials}: {exc}") from None
    uris = [n.value for n in (verified.subjects or []) if isinstance(n, x509.UniformResourceIdentifier)]
    others = [n for n in (verified.subjects or []) if not isinstance(n, x509.UniformResourceIdentifier)]
    if len(uris) != 1 or others:
        raise PermissionDenied(f"certificate must carry exactly one URI SAN, has {len(uris)} and {len(others)} other")
    try:
        identity = SpiffeId.parse(uris[0], "certificate.san")
    except InvalidArgument as exc:
        raise PermissionDenied(f"certificate SAN is not a service identity: {exc.reason}") from None
    if identity.trust_domain != bundle.trust_domain:
        raise PermissionDenied(f"certificate {identity.uri} is outside trust domain {bundle.trust_domain!r}")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise PermissionDenied("certificate has no extended key usage (serverAuth and clientAuth needed)") from None
    if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
        raise PermissionDenied("certificate lacks extended key usage serverAuth")
    if expected is not None and identity != expected:
        raise PermissionDenied(f"certificate is {identity.uri}, expected {expected.uri}")
    return identity
