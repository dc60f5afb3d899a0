"""Validation of registration input: every error names the field and the reason, and nothing is changed."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import replace

from meshactors.errors import InvalidArgument
from meshactors.model.instance import Instance, InstanceRef, LeaseSettings, Status

MAX_NAME_LEN = 253
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY_LEN = 63
MAX_METADATA_VALUE_LEN = 256
MAX_METADATA_BYTES = 4096
MAX_WEIGHT = 10_000
MAX_LEASE_DURATION_S = 3600

# Metadata keys under this prefix carry what the Eureka API keeps for its clients (e.g. `eureka/hostName`, the host
# name every Eureka client is shown): only the Eureka API writes them; the registry API refuses them.
RESERVED_METADATA_PREFIX = "eureka/"

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_VIP_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")
_APP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ZONE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION_RE = re.compile(r"[A-Za-z0-9._+-]{0,64}")
_META_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")


def validate_vip_name(name: str, field: str = "vip") -> str:
    """A VIP/SVIP name is a lowercase DNS name (it becomes a Host header and an Envoy cluster name)."""
    if not name:
        raise InvalidArgument(field, "must not be empty")
    if len(name) > MAX_NAME_LEN:
        raise InvalidArgument(field, f"longer than {MAX_NAME_LEN} characters")
    if not _VIP_RE.fullmatch(name):
        raise InvalidArgument(
            field,
            f"{name!r} is not a lowercase DNS name (letters a-z, digits, '-' inside labels, '.' between labels)",
        )
    return name


def is_valid_vip_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LEN and bool(_VIP_RE.fullmatch(name))


ZONE_RULE = "may hold only letters, digits and . _ - (at most 64)"


def is_valid_zone(zone: str) -> bool:
    """What a zone may be: an instance's, and so a proxy's (locality failover matches the two)."""
    return bool(_ZONE_RE.fullmatch(zone))


def _validate_port(value: int, field: str) -> None:
    if not 1 <= value <= 65535:
        raise InvalidArgument(field, f"{value} is out of range 1-65535")


def _validate_host(host: str) -> None:
    if not host:
        raise InvalidArgument("host", "must not be empty")
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if len(host) > MAX_NAME_LEN or not _HOST_RE.fullmatch(host):
        raise InvalidArgument("host", f"{host!r} is neither an IP address nor a DNS host name")


def validate_ref(ref: InstanceRef) -> InstanceRef:
    validate_vip_name(ref.vip, "vip")
    if not ref.instance_id:
        raise InvalidArgument("instance_id", "must not be empty")
    if not _ID_RE.fullmatch(ref.instance_id):
        raise InvalidArgument(
            "instance_id", f"{ref.instance_id!r} may hold only letters, digits and . _ : @ - (at most 200)"
        )
    return ref


def parse_status(value: str, field: str = "status") -> Status:
    try:
        return Status(value.upper())
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise InvalidArgument(field, f"unknown status {value!r} (one of {allowed})") from None


def validate_instance(inst: Instance) -> Instance:
    """Check every field; fill defaults (app and instance id); return the normalized instance."""
    if not inst.vip and not inst.svip:
        raise InvalidArgument("vip", "an instance needs a VIP or an SVIP name")
    if inst.vip:
        validate_vip_name(inst.vip, "vip")
        _validate_port(inst.port, "port")
    elif inst.port:
        raise InvalidArgument("port", "a plain port needs a VIP name")
    if inst.svip:
        validate_vip_name(inst.svip, "svip")
        if inst.svip == inst.vip:
            raise InvalidArgument("svip", "must differ from the VIP name")
        _validate_port(inst.secure_port, "secure_port")
    elif inst.secure_port:
        raise InvalidArgument("secure_port", "a secure port needs an SVIP name")
    _validate_host(inst.host)

    app = inst.app or inst.routing_name
    if not _APP_RE.fullmatch(app):
        raise InvalidArgument("app", f"{app!r} may hold only letters, digits and . _ - (at most 128)")
    instance_id = inst.instance_id or f"{inst.host}:{inst.port or inst.secure_port}"
    validate_ref(InstanceRef(inst.routing_name, instance_id))

    if not isinstance(inst.status, Status):
        raise InvalidArgument("status", f"unknown status {inst.status!r}")
    if not is_valid_zone(inst.zone):
        raise InvalidArgument("zone", f"{inst.zone!r} {ZONE_RULE}")
    if not _VERSION_RE.fullmatch(inst.version_label):
        raise InvalidArgument(
            "version_label", f"{inst.version_label!r} may hold only letters, digits and . _ + - (at most 64)"
        )
    if not 1 <= inst.weight <= MAX_WEIGHT:
        raise InvalidArgument("weight", f"{inst.weight} is out of range 1-{MAX_WEIGHT}")
    _validate_metadata(inst.metadata)
    _validate_lease(inst.lease)
    return replace(inst, app=app, instance_id=instance_id)


def _validate_metadata(metadata: dict[str, str]) -> None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidArgument("metadata", f"{len(metadata)} entries, at most {MAX_METADATA_ENTRIES} allowed")
    total = 0
    for key, value in metadata.items():
        if not isinstance(key, str) or not _META_KEY_RE.fullmatch(key):
            raise InvalidArgument(
                f"metadata[{key!r}]", f"key may hold only letters, digits and . _ / - (at most {MAX_METADATA_KEY_LEN})"
            )
        if not isinstance(value, str):
            raise InvalidArgument(f"metadata[{key!r}]", "value must be a string")
        if len(value) > MAX_METADATA_VALUE_LEN:
            raise InvalidArgument(
                f"metadata[{key!r}]", f"value is {len(value)} characters, at most {MAX_METADATA_VALUE_LEN} allowed"
            )
        total += len(key.encode()) + len(value.encode())
    if total > MAX_METADATA_BYTES:
        raise InvalidArgument("metadata", f"{total} bytes in total, at most {MAX_METADATA_BYTES} allowed")


def _validate_lease(lease: LeaseSettings) -> None:
    if lease.renewal_interval_s < 1:
        raise InvalidArgument("lease.renewal_interval_s", "must be at least 1 second")
    if lease.duration_s <= lease.renewal_interval_s:
        raise InvalidArgument(
            "lease.duration_s",
            f"{lease.duration_s} s must be longer than the renewal interval ({lease.renewal_interval_s} s)",
        )
    if lease.duration_s > MAX_LEASE_DURATION_S:
        raise InvalidArgument("lease.duration_s", f"{lease.duration_s} s is longer than {MAX_LEASE_DURATION_S} s")


def refuse_reserved_metadata(keys: Iterable[str], field: str) -> None:
    """Metadata a registry API client sets must not use the reserved prefix (see RESERVED_METADATA_PREFIX)."""
    for key in keys:
        if key.startswith(RESERVED_METADATA_PREFIX):
            raise InvalidArgument(
                f"{field}[{key[:100]!r}]", f"the {RESERVED_METADATA_PREFIX!r} prefix is reserved for the Eureka API"
            )
