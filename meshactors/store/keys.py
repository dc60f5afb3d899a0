"""The etcd key schema of meshactors, all under one configurable prefix (default `/meshactors`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshactors import defaults
from meshactors.errors import ConfigError, InvalidArgument
from meshactors.model import InstanceRef
from meshactors.model.validate import is_valid_vip_name

DEFAULT_PREFIX = defaults.KEY_PREFIX
MESH_WIDE = "*"  # the VIP of the mesh-wide policy document (meshactors.policy.model.MESH_WIDE)
MESH_WIDE_KEY = "_mesh"  # its key segment: '_' is never in a VIP name (a lowercase DNS name), so no VIP collides
_PREFIX_RE = re.compile(r"(/[A-Za-z0-9._-]+)+")
_TOKEN_ID_RE = re.compile(r"[0-9a-f]{16}")
_ROOT_SERIAL_RE = re.compile(r"[0-9a-f]{1,40}")  # an X.509 serial in lowercase hex, at most 20 bytes (RFC 5280)


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds and parses keys. Layout:

    {prefix}/instances/{vip}/{instance_id}   one registration (msgpack Instance record), attached to its lease
    {prefix}/policies/{vip}                  the traffic policy of a VIP (msgpack policy record, no lease)
    {prefix}/policies/_mesh                  the mesh-wide `*` policy document
    {prefix}/intentions/{vip}                the intentions of a destination VIP (JSON: source -> allow|deny)
    {prefix}/intentions/_mesh                the mesh default intention (JSON: allow|deny)
    {prefix}/tokens/{id}                     one API token's record (msgpack TokenRecord: its secret's hash only)
    {prefix}/ca/roots/{serial}               one CA root: its certificate and its sealed (encrypted) private key
    {prefix}/ca/bundle                       the trust bundle: the roots' certificates in order and the signing root
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ConfigError(
                f"key prefix {self.prefix!r} must look like /name[/name...] (letters, digits, . _ -; no trailing /)"
            )

    @property
    def instances(self) -> str:
        """Prefix of every registration (ends with '/')."""
        return f"{self.prefix}/instances/"

    def vip_instances(self, vip: str) -> str:
        return f"{self.instances}{vip}/"

    def instance(self, ref: InstanceRef) -> str:
        return f"{self.instances}{ref.vip}/{ref.instance_id}"

    def parse_instance(self, key: str) -> InstanceRef:
        """Inverse of `instance`; raises InvalidArgument for a key outside the schema."""
        if not key.startswith(self.instances):
            raise InvalidArgument("key", f"{key!r} is not under {self.instances!r}")
        rest = key[len(self.instances) :]
        vip, sep, instance_id = rest.partition("/")
        if not sep or not vip or not instance_id or "/" in instance_id:
            raise InvalidArgument("key", f"{key!r} is not {self.instances}<vip>/<instance_id>")
        return InstanceRef(vip, instance_id)

    @property
    def policies(self) -> str:
        """Prefix of every traffic policy document (ends with '/'); disjoint from `instances`."""
        return f"{self.prefix}/policies/"

    def policy(self, vip: str) -> str:
        """The key of `vip`'s policy document (`*`: the mesh-wide one). InvalidArgument for a name no key holds."""
        if vip == MESH_WIDE:
            return f"{self.policies}{MESH_WIDE_KEY}"
        if not is_valid_vip_name(vip):
            raise InvalidArgument("vip", f"{vip!r} is not a VIP name or '*'")
        return f"{self.policies}{vip}"

    def parse_policy(self, key: str) -> str:
        """Inverse of `policy`: the VIP (`*` for the mesh-wide key); InvalidArgument for a key outside the schema."""
        if not key.startswith(self.policies):
            raise InvalidArgument("key", f"{key!r} is not under {self.policies!r}")
        rest = key[len(self.policies) :]
        if rest == MESH_WIDE_KEY:
            return MESH_WIDE
        if not is_valid_vip_name(rest):
            raise InvalidArgument("key", f"{key!r} is not {self.policies}<vip> or {self.policies}{MESH_WIDE_KEY}")
        return rest

    @property
    def intentions(self) -> str:
        """Prefix of every intentions document (ends with '/'); disjoint from the other prefixes."""
        return f"{self.prefix}/intentions/"

    def intention(self, destination: str) -> str:
        """The key of `destination`'s intentions (`*`: the mesh default). InvalidArgument for a name no key holds."""
        if destination == MESH_WIDE:
            return f"{self.intentions}{MESH_WIDE_KEY}"
        if not is_valid_vip_name(destination):
            raise InvalidArgument("destination", f"{destination[:80]!r} is not a VIP name")
        return f"{self.intentions}{destination}"

    def parse_intention(self, key: str) -> str:
        """Inverse of `intention`: the destination (`*` for the mesh default); InvalidArgument outside the schema."""
        rest = key[len(self.intentions) :] if key.startswith(self.intentions) else ""
        if rest == MESH_WIDE_KEY:
            return MESH_WIDE
        if not is_valid_vip_name(rest):
            raise InvalidArgument("key", f"{key[:160]!r} is not {self.intentions}<vip> or {self.intentions}_mesh")
        return rest

    @property
    def tokens(self) -> str:
        """Prefix of every API token record (ends with '/'); disjoint from `instances` and `policies`."""
        return f"{self.prefix}/tokens/"

    def token(self, token_id: str) -> str:
        return f"{self.tokens}{token_id}"

    def parse_token(self, key: str) -> str:
        """Inverse of `token`: the token id; InvalidArgument for a key outside the schema."""
        token_id = key[len(self.tokens) :] if key.startswith(self.tokens) else ""
        if not _TOKEN_ID_RE.fullmatch(token_id):
            raise InvalidArgument("key", f"{key[:160]!r} is not {self.tokens}<token id>")
        return token_id

    @property
    def ca(self) -> str:
        """Prefix of every CA record (ends with '/'); disjoint from the other prefixes."""
        return f"{self.prefix}/ca/"

    @property
    def ca_roots(self) -> str:
        return f"{self.ca}roots/"

    @property
    def ca_bundle(self) -> str:
        return f"{self.ca}bundle"

    @property
    def ca_issued(self) -> str:
        """Prefix of the records of the last leaf issued to each identity (one per service); outside `ca`, so
        loading the CA never lists them."""
        return f"{self.prefix}/issued/"

    def ca_issued_to(self, service: str) -> str:
        """The key of the issuance record of `service` (an app name, as tokens carry it)."""
        if not is_valid_vip_name(service):
            raise InvalidArgument("service", f"{service[:80]!r} is not a service name")
        return f"{self.ca_issued}{service}"

    def ca_root(self, serial: str) -> str:
        """The key of the root with serial `serial` (lowercase hex); InvalidArgument for anything else."""
        if not _ROOT_SERIAL_RE.fullmatch(serial):
            raise InvalidArgument("serial", f"{serial[:80]!r} is not a certificate serial in lowercase hex")
        return f"{self.ca_roots}{serial}"

    def parse_ca_root(self, key: str) -> str:
        """Inverse of `ca_root`: the serial; InvalidArgument for a key outside the schema."""
        serial = key[len(self.ca_roots) :] if key.startswith(self.ca_roots) else ""
        if not _ROOT_SERIAL_RE.fullmatch(serial):
            raise InvalidArgument("key", f"{key[:160]!r} is not {self.ca_roots}<serial>")
        return serial
