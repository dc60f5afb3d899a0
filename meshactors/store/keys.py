"""The etcd key schema of meshactors, all under one configurable prefix (default `/meshactors`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshactors import defaults
from meshactors.errors import ConfigError, InvalidArgument
from meshactors.model import InstanceRef

DEFAULT_PREFIX = defaults.KEY_PREFIX
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds and parses keys. Layout:

    {prefix}/instances/{vip}/{instance_id}   one registration (msgpack Instance record), attached to its lease
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
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
