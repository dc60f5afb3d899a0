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


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds and parses keys. Layout:

    {prefix}/instances/{vip}/{instance_id}   one registration (msgpack Instance record), attached to its lease
    {prefix}/policies/{vip}                  the traffic policy of a VIP (msgpack policy record, no lease)
    {prefix}/policies/_mesh                  the mesh-wide `*` policy document
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
