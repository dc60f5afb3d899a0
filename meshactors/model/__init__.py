"""Pure value types of the mesh: instances, statuses, lease settings and their validation."""

from meshactors.model.instance import (
    DEFAULT_LEASE_DURATION_S,
    DEFAULT_RENEWAL_INTERVAL_S,
    Instance,
    InstanceRef,
    LeaseSettings,
    Status,
)
from meshactors.model.validate import validate_instance, validate_ref, validate_vip_name

__all__ = [
    "DEFAULT_LEASE_DURATION_S",
    "DEFAULT_RENEWAL_INTERVAL_S",
    "Instance",
    "InstanceRef",
    "LeaseSettings",
    "Status",
    "validate_instance",
    "validate_ref",
    "validate_vip_name",
]
