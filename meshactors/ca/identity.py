"""Workload identity names: trust domains, service names and the SPIFFE IDs built from them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshactors.errors import InvalidArgument
from meshactors.model.validate import validate_vip_name

SCHEME = "spiffe://"
SERVICE_PATH = "/svc/"
MAX_TRUST_DOMAIN_LEN = 255  # the SPIFFE ID spec's bound on a trust domain name
MAX_SPIFFE_ID_LEN = 2048  # the SPIFFE ID spec's bound on a whole ID

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TRUST_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def validate_trust_domain(name: str, field: str = "trust_domain") -> str:
    """A trust domain is a lowercase DNS name (labels a-z 0-9 '-', joined by '.'), at most 255 characters."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(field, "must be a non-empty string")
    if len(name) > MAX_TRUST_DOMAIN_LEN:
        raise InvalidArgument(field, f"longer than {MAX_TRUST_DOMAIN_LEN} characters")
    if not _TRUST_DOMAIN_RE.fullmatch(name):
        raise InvalidArgument(
            field,
            f"{name[:80]!r} is not a lowercase DNS name (letters a-z, digits, '-' inside labels, '.' between labels)",
        )
    return name


def validate_service(name: str, field: str = "service") -> str:
    """A service identity is the name of the VIP/SVIP it registers: the registry's lowercase DNS name rules."""
    if not isinstance(name, str):
        raise InvalidArgument(field, "must be a string")
    return validate_vip_name(name, field)


@dataclass(frozen=True, slots=True, order=True)
class SpiffeId:
    """`spiffe://<trust_domain>/svc/<service>`: the one identity a leaf certificate carries (its only URI SAN)."""

    trust_domain: str
    service: str

    def __post_init__(self) -> None:
        validate_trust_domain(self.trust_domain)
        validate_service(self.service)

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}{SERVICE_PATH}{self.service}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str, field: str = "spiffe_id") -> SpiffeId:
        """Strict inverse of `uri`: lowercase scheme and trust domain, no port, user, query or fragment, one
        `/svc/<service>` path. InvalidArgument naming `field` otherwise."""
        if not isinstance(uri, str):
            raise InvalidArgument(field, "must be a string")
        if len(uri) > MAX_SPIFFE_ID_LEN:
            raise InvalidArgument(field, f"longer than {MAX_SPIFFE_ID_LEN} characters")
        if not uri.startswith(SCHEME):
            raise InvalidArgument(field, f"{uri[:80]!r} does not start with {SCHEME!r}")
        rest = uri[len(SCHEME) :]
        trust_domain, slash, path = rest.partition("/")
        if not slash:
            raise InvalidArgument(field, f"{uri[:80]!r} has no path (expected {SCHEME}<trust domain>/svc/<service>)")
        try:
            validate_trust_domain(trust_domain, f"{field}.trust_domain")
        except InvalidArgument as exc:  # names a port, user info or upper case as what it is
            raise InvalidArgument(field, f"trust domain: {exc.reason}") from None
        full_path = "/" + path
        if not full_path.startswith(SERVICE_PATH):
            raise InvalidArgument(field, f"{uri[:80]!r}: the path must be {SERVICE_PATH}<service>")
        service = full_path[len(SERVICE_PATH) :]
        try:
            validate_service(service, f"{field}.service")
        except InvalidArgument as exc:  # '?', '#', '/' and '%' all fail the DNS-name rule
            raise InvalidArgument(field, f"service: {exc.reason}") from None
        return cls(trust_domain, service)

    @classmethod
    def trust_domain_uri(cls, trust_domain: str) -> str:
        """`spiffe://<trust_domain>`: the ID of the trust domain itself (a root's URI SAN)."""
        return f"{SCHEME}{validate_trust_domain(trust_domain)}"
