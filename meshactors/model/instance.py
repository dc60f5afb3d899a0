"""The registered instance: what a service advertises under a VIP (plain) and/or SVIP (mTLS) name."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any

DEFAULT_RENEWAL_INTERVAL_S = 30
DEFAULT_LEASE_DURATION_S = 90


class Status(enum.StrEnum):
    """Eureka instance statuses. Only UP instances receive traffic."""

    UP = "UP"
    DOWN = "DOWN"
    STARTING = "STARTING"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """How often an instance heartbeats and how long its registration lives without one (Eureka defaults)."""

    renewal_interval_s: int = DEFAULT_RENEWAL_INTERVAL_S
    duration_s: int = DEFAULT_LEASE_DURATION_S


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """Names one registration: `vip` is the name it is registered under (its VIP, or its SVIP if it has none)."""

    vip: str
    instance_id: str

    def __str__(self) -> str:
        return f"{self.vip}/{self.instance_id}"


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance. `vip`/`port` carry plain traffic, `svip`/`secure_port` mTLS traffic."""

    app: str
    instance_id: str
    host: str
    vip: str = ""
    svip: str = ""
    port: int = 0
    secure_port: int = 0
    zone: str = "default"
    status: Status = Status.UP
    version_label: str = ""
    weight: int = 1
    metadata: dict[str, str] = field(default_factory=dict)
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    registered_at_ms: int = 0
    registered_by: str = ""  # the principal whose token registered it (meshactors.auth.model.Identity.principal)

    @property
    def routing_name(self) -> str:
        """The name that places this instance on a registry shard and in the key schema."""
        return self.vip or self.svip

    @property
    def ref(self) -> InstanceRef:
        return InstanceRef(self.routing_name, self.instance_id)

    def names(self) -> tuple[str, ...]:
        """Every VIP/SVIP name this instance serves."""
        return tuple(n for n in (self.vip, self.svip) if n)

    def with_status(self, status: Status) -> Instance:
        return replace(self, status=status)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Instance:
        lease = d.get("lease") or {}
        return cls(
            app=d["app"],
            instance_id=d["instance_id"],
            host=d["host"],
            vip=d.get("vip", ""),
            svip=d.get("svip", ""),
            port=int(d.get("port", 0)),
            secure_port=int(d.get("secure_port", 0)),
            zone=d.get("zone", "default"),
            status=Status(d.get("status", "UP")),
            version_label=d.get("version_label", ""),
            weight=int(d.get("weight", 1)),
            metadata=dict(d.get("metadata") or {}),
            lease=LeaseSettings(
                renewal_interval_s=int(lease.get("renewal_interval_s", DEFAULT_RENEWAL_INTERVAL_S)),
                duration_s=int(lease.get("duration_s", DEFAULT_LEASE_DURATION_S)),
            ),
            registered_at_ms=int(d.get("registered_at_ms", 0)),
            registered_by=str(d.get("registered_by", "")),
        )
