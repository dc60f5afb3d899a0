"""Every default a deployment and the CLI share that no component record owns: names, hosts, ports, counts, paths.

The CLI flags, `UpOptions` (meshactors.runtime.embedded) and `MeshSettings` (meshactors.settings) all read these.
Component records (ShardSettings, BuilderSettings, HostSettings, SelfPreservationPolicy, LeaseSettings) keep
their own defaults in their dataclasses; the `up` flags read those from the records (meshactors.flags).
No imports: anything may read this module cheaply.
"""

from __future__ import annotations

from pathlib import Path

NAMESPACE = "meshactors"  # Ray namespace of the actors
KEY_PREFIX = "/meshactors"  # etcd key prefix
HOST = "127.0.0.1"  # where the control plane's servers listen
REGISTRY_PORT = 7070
# Outside Ray's default worker port range (10002-19999) and the kernel's ephemeral range (32768+).
XDS_PORT = 7080  # the first xDS server's; the others follow
EUREKA_PORT = 8761  # where Eureka clients look by default
DASHBOARD_PORT = 8780  # the mesh dashboard (HTTP), on the registry host
ETCD_PORT = 0  # the embedded etcd's client port; 0: last run's, else a free one
SHARDS = 2
BUILDERS = 2
XDS_SERVERS = 2
CONTROLLER_INTERVAL_S = 1.0  # between two reconcile rounds

STATE_DIR = Path.home() / ".meshactors"  # where `up` keeps the embedded etcd's data, its ready file and the logs
READY_FILE = "ready.json"  # in the state dir: how every command finds the running mesh
LOG_DIR = "logs"  # in the state dir: one file per actor (<actor>.log), the driver's (driver.log)
LOG_MAX_BYTES = 5 * 1024 * 1024  # a log file is rotated at this size ...
LOG_BACKUPS = 3  # ... keeping this many older files (<actor>.log.1 ...): at most 20 MiB per actor
REGISTRY = f"{HOST}:{REGISTRY_PORT}"  # where clients look for the registry API
TRUST_DOMAIN = "meshactors.local"  # the mesh CA's trust domain: identities are spiffe://<it>/svc/<service>
CERT_TTL_S = 86400  # lifetime of the workload certificates the CA issues (24 h)
CA_KEY_FILE = "ca.key"  # in the state dir: the key the CA root's private key is sealed with in etcd (0600)

ENVOY_LISTEN = "127.0.0.1:15001"  # the outbound listener apps send HTTP to
ENVOY_ADMIN = "127.0.0.1:15000"

# `meshactors chaos`
CHAOS_DURATION_S = 30.0
CHAOS_INTERVAL_S = 4.0
CHAOS_RATE = 50.0  # requests per second through Envoy
CHAOS_VIPS = 2
CHAOS_ETCD_FAULT_S = 10.0
CHAOS_CONVERGE_TIMEOUT_S = 30.0
