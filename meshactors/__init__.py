"""meshactors: a zero-configuration service-mesh control plane (registry -> etcd -> snapshots -> xDS -> Envoy)."""

__version__ = "0.1.0"
