"""Converts between the registry API's protobuf messages (meshactors.v1) and the model's value types."""

from __future__ import annotations

from meshactors.errors import InvalidArgument
from meshactors.model import Instance, InstanceRef, LeaseSettings, Status
from meshactors.model.instance import DEFAULT_LEASE_DURATION_S, DEFAULT_RENEWAL_INTERVAL_S
from meshactors.v1 import registry_pb2 as pb

_TO_PB = {
    Status.UP: pb.STATUS_UP,
    Status.DOWN: pb.STATUS_DOWN,
    Status.STARTING: pb.STATUS_STARTING,
    Status.OUT_OF_SERVICE: pb.STATUS_OUT_OF_SERVICE,
}
_FROM_PB = {v: k for k, v in _TO_PB.items()}


def status_from_pb(value: int, field: str, default: Status | None = None) -> Status:
    if value == pb.STATUS_UNSPECIFIED and default is not None:
        return default
    try:
        return _FROM_PB[value]
    except KeyError:
        allowed = ", ".join(pb.Status.Name(v) for v in _TO_PB.values())
        raise InvalidArgument(field, f"unknown status {value} (one of {allowed})") from None


def status_to_pb(status: Status) -> int:
    return _TO_PB[status]


def instance_from_pb(msg: pb.Instance, field: str = "instance") -> Instance:
    return Instance(
        app=msg.app,
        instance_id=msg.instance_id,
        host=msg.host,
        vip=msg.vip,
        svip=msg.svip,
        port=msg.port,
        secure_port=msg.secure_port,
        zone=msg.zone or "default",
        status=status_from_pb(msg.status, f"{field}.status", default=Status.UP),
        version_label=msg.version_label,
        weight=msg.weight or 1,
        metadata=dict(msg.metadata),
        lease=LeaseSettings(
            renewal_interval_s=msg.lease.renewal_interval_seconds or DEFAULT_RENEWAL_INTERVAL_S,
            duration_s=msg.lease.duration_seconds or DEFAULT_LEASE_DURATION_S,
        ),
        registered_at_ms=msg.registered_at_ms,
        registered_by=msg.registered_by,
    )


def instance_to_pb(inst: Instance, mod_revision: int = 0) -> pb.Instance:
    return pb.Instance(
        app=inst.app,
        instance_id=inst.instance_id,
        vip=inst.vip,
        svip=inst.svip,
        host=inst.host,
        port=inst.port,
        secure_port=inst.secure_port,
        zone=inst.zone,
        status=status_to_pb(inst.status),
        version_label=inst.version_label,
        weight=inst.weight,
        metadata=inst.metadata,
        lease=pb.LeaseSettings(
            renewal_interval_seconds=inst.lease.renewal_interval_s, duration_seconds=inst.lease.duration_s
        ),
        registered_at_ms=inst.registered_at_ms,
        mod_revision=mod_revision,
        registered_by=inst.registered_by,
    )


def ref_from_pb(msg: pb.InstanceRef) -> InstanceRef:
    return InstanceRef(msg.vip, msg.instance_id)


def ref_to_pb(ref: InstanceRef) -> pb.InstanceRef:
    return pb.InstanceRef(vip=ref.vip, instance_id=ref.instance_id)
