"""API tokens and identities: minting and parsing tokens, hashing their secrets, and the authorization rules.

A token is `ma1.<id>.<secret>`: `id` names its record in etcd, `secret` is 32 random bytes that only the holder
has. etcd keeps the SHA-256 of the secret (never the secret), so a reader of etcd cannot use a token. Checking a
token is a dictionary lookup by id and a constant-time comparison of hashes: no etcd round trip per request.

Roles:
- admin: everything, including tokens, policies, intentions and the operator commands;
- service: registers, renews, updates and deregisters instances under the VIPs/SVIPs its token names, sets the
  intentions whose destination is one of them, reads the registry and discovery;
- proxy: discovery only (xDS, registry reads), optionally for one node id.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from meshactors.errors import InvalidArgument, PermissionDenied, Unauthenticated
from meshactors.model.validate import is_valid_vip_name

TOKEN_PREFIX = "ma1"
MAX_TOKEN_CHARS = 256  # a longer credential is refused before any work
MAX_AUTH_HEADER = 1024  # an HTTP Authorization header longer than this is refused unparsed
MAX_VIPS = 256  # VIPs/SVIPs one service token may name
MAX_DESCRIPTION = 200
_ID_RE = re.compile(r"[0-9a-f]{16}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_SERVICE_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_NODE_MAX = 256


class Role(enum.StrEnum):
    ADMIN = "admin"
    SERVICE = "service"
    PROXY = "proxy"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What etcd stores for one token: everything but its secret, of which only the SHA-256 (hex)."""

    id: str
    role: Role
    secret_sha256: str
    service: str = ""  # role service: the service's name (who registered what is recorded as service:<name>)
    vips: tuple[str, ...] = ()  # role service: the VIP/SVIP names it owns (default: the service's name)
    node: str = ""  # role proxy: the one node id it may discover for ("" any)
    description: str = ""
    created_ms: int = 0

    @property
    def identity(self) -> Identity:
        return Identity(self.id, self.role, self.service, frozenset(self.vips), self.node)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "role": self.role.value, "secret_sha256": self.secret_sha256, "service": self.service,
            "vips": list(self.vips), "node": self.node, "description": self.description, "created_ms": self.created_ms,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TokenRecord:
        vips = d.get("vips", [])
        if not isinstance(vips, list) or not all(isinstance(v, str) for v in vips):
            raise ValueError("vips is not a list of names")
        return cls(
            id=str(d["id"]), role=Role(str(d["role"])), secret_sha256=str(d["secret_sha256"]),
            service=str(d.get("service", "")), vips=tuple(vips), node=str(d.get("node", "")),
            description=str(d.get("description", "")), created_ms=int(str(d.get("created_ms", 0))),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request: the token's id and role, and for a service its name and VIPs."""

    token_id: str
    role: Role
    service: str = ""
    vips: frozenset[str] = field(default_factory=frozenset)
    node: str = ""

    @property
    def principal(self) -> str:
        """What is recorded on what this identity writes (`registered_by`): `admin:<id>`, `service:<name>`."""
        if self.role is Role.SERVICE:
            return f"service:{self.service}"
        return f"{self.role.value}:{self.token_id}"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def mint(
    role: Role,
    *,
    service: str = "",
    vips: Iterable[str] = (),
    node: str = "",
    description: str = "",
    created_ms: int = 0,
) -> tuple[str, TokenRecord]:
    """A new token (the only time its secret exists outside its holder) and the record to store for it."""
    service, vips_t, node, description = _validated(role, service, tuple(vips), node, description)
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(
        id=token_id, role=role, secret_sha256=_sha256(secret), service=service, vips=vips_t, node=node,
        description=description, created_ms=created_ms,
    )  # fmt: skip
    return f"{TOKEN_PREFIX}.{token_id}.{secret}", record


def _validated(
    role: Role, service: str, vips: tuple[str, ...], node: str, description: str
) -> tuple[str, tuple[str, ...], str, str]:
    if role is Role.SERVICE:
        if not _SERVICE_RE.fullmatch(service):
            raise InvalidArgument("service", f"{service[:80]!r} is not a service name (lowercase DNS label)")
        vips = vips or (service,)
        if len(vips) > MAX_VIPS:
            raise InvalidArgument("vips", f"{len(vips)} names, at most {MAX_VIPS}")
        for i, vip in enumerate(vips):
            if not is_valid_vip_name(vip):
                raise InvalidArgument(f"vips[{i}]", f"{vip[:80]!r} is not a VIP name")
        vips = tuple(sorted(set(vips)))
    elif service or vips:
        raise InvalidArgument("service", f"only a service token names a service and VIPs, not a {role.value} token")
    if node and role is not Role.PROXY:
        raise InvalidArgument("node", f"only a proxy token names a node, not a {role.value} token")
    if len(node) > _NODE_MAX or not node.isprintable():
        raise InvalidArgument("node", f"at most {_NODE_MAX} printable characters")
    if len(description) > MAX_DESCRIPTION or not description.isprintable():
        raise InvalidArgument("description", f"at most {MAX_DESCRIPTION} printable characters")
    return service, vips, node, description


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str]:
    """(id, secret) of a well-formed token; Unauthenticated saying what is wrong otherwise (never echoing it)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated(f"the token is {len(token)} characters long; a meshactors token has under 100")
    prefix, _, rest = token.partition(".")
    token_id, _, secret = rest.partition(".")
    if prefix != TOKEN_PREFIX or not _ID_RE.fullmatch(token_id) or not _SECRET_RE.fullmatch(secret):
        raise Unauthenticated("the token is not a meshactors token (ma1.<id>.<secret>, from `meshactors token create`)")
    return token_id, secret


def bearer(header: str | None) -> str:
    """The token of an `authorization: Bearer <token>` value; Unauthenticated when absent or of another scheme."""
    if not header:
        raise Unauthenticated("no credentials: send `authorization: Bearer <token>` (see `meshactors token create`)")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the authorization header is not `Bearer <token>`")
    return token.strip()


def http_token(header: str | None) -> str:
    """The token of an HTTP `Authorization` header: `Basic` with the token as the password (the user name is free,
    so `http://app:TOKEN@host/...` works) or `Bearer <token>`. Unauthenticated saying what is missing otherwise."""
    if not header:
        raise Unauthenticated(
            "no credentials: give a token as the basic-auth password (http://app:TOKEN@host:port/eureka/)"
            " or as `Authorization: Bearer TOKEN` (see `meshactors token create`)"
        )
    if len(header) > MAX_AUTH_HEADER:
        raise Unauthenticated(f"the Authorization header is {len(header)} characters long, at most {MAX_AUTH_HEADER}")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        if not value:
            raise Unauthenticated("the Authorization header is `Bearer` without a token")
        return value
    if scheme.lower() != "basic":
        raise Unauthenticated(
            "the Authorization header is neither `Basic` (the token as password) nor `Bearer <token>`"
        )
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("the Basic credentials are not base64 of `user:password`") from None
    _, colon, password = decoded.partition(":")
    if not colon or not password:
        raise Unauthenticated("the Basic credentials have no password: give the token as the password (app:TOKEN)")
    return password


def verify(record: TokenRecord | None, secret: str) -> Identity:
    """The identity of a token whose record is `record` (None: no such token, e.g. revoked)."""
    if record is None:
        raise Unauthenticated("unknown or revoked token")
    if not hmac.compare_digest(record.secret_sha256, _sha256(secret)):
        raise Unauthenticated("unknown or revoked token")
    return record.identity


# ---- authorization ----------------------------------------------------------------------------------------------


def require_admin(who: Identity, what: str) -> None:
    if not who.is_admin:
        raise PermissionDenied(f"{what} needs an admin token; this is a {who.role.value} token")


def require_discovery(who: Identity, what: str, node: str = "") -> None:
    """Reading the registry or discovery: any role; a proxy token bound to a node only for that node."""
    if who.role is Role.PROXY and who.node and node and node != who.node:
        raise PermissionDenied(f"{what}: this proxy token is for node {who.node[:80]!r}, not {node[:80]!r}")


def require_names(who: Identity, names: Iterable[str], what: str) -> None:
    """Writing instances under `names` (VIPs/SVIPs): admin, or a service token that owns every one of them."""
    if who.is_admin:
        return
    if who.role is not Role.SERVICE:
        raise PermissionDenied(f"{what} needs a service or admin token; this is a {who.role.value} token")
    missing = sorted(n for n in set(names) if n not in who.vips)
    if missing:
        shown = ", ".join(repr(n[:80]) for n in missing[:3])
        raise PermissionDenied(
            f"{what}: the token of service {who.service!r} does not own {shown}"
            f" (it owns {', '.join(sorted(who.vips)[:5])}{' ...' if len(who.vips) > 5 else ''})"
        )


def may_replace(existing_owner: str, who_principal: str) -> bool:
    """Whether a registration by `who_principal` may replace an instance recorded as registered by
    `existing_owner`: the same identity, an admin, or an instance recorded before owners were kept."""
    return not existing_owner or existing_owner == who_principal or who_principal.startswith("admin:")
