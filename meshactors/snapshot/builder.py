"""Pure per-VIP resource building: registry `Instance` records in, one typed `Snapshot` per VIP out.

A VIP's snapshot holds its Cluster, ClusterLoadAssignment and gRPC api Listener today; a VirtualHost, per-version
clusters or per-client-kind variants join it as resources of the same snapshot. Called by the snapshot builders on
every registry change (and for every VIP at cold start), so it does no I/O and only what the resources need. The
bytes come from `meshactors.envoy.resources`; this module never touches a protobuf message itself.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import replace

from meshactors.envoy.policy import compile_envoy, compile_grpc, load_assignments
from meshactors.envoy.resources import (
    KNOWN_VIPS_FILTER,
    Endpoint,
    cluster_load_assignment,
    eds_cluster,
    grpc_api_listener,
    known_vips_config,
)
from meshactors.model.instance import Instance, Status
from meshactors.policy.model import Policy, is_empty
from meshactors.resources.snapshot import Snapshot, cluster_refs, eds_refs
from meshactors.resources.types import (
    CLUSTER,
    DEFAULT_KIND,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    VIRTUAL_HOST,
    VersionedResource,
)

# Why a policy field is not applied by a kind of client (reported in the snapshot's notes, never sent).
NOTE_ENVOY_ROUTES = "route-level policy (routing.*, adaptiveConcurrency) is not delivered to Envoy sidecars yet"
NOTE_FAILOVER = "localityFailover needs a per-caller-zone assignment, not built yet"

# Reasons an UP instance is left out of its VIP's ClusterLoadAssignment (reported in the snapshot's notes).
SKIP_NOT_IP = "host is not an IP address (EDS needs IP literals)"
SKIP_NO_PORT = "no port for this name"
SKIP_DUPLICATE = "same address as a more recently registered instance"

# The snapshot key of the known-VIPs guard (every name with a registration). `@` is never in a VIP name, so the
# key cannot collide with a VIP's; the builder map gives it one owner like any key.
KNOWN_VIPS_KEY = "@known-vips"


def _ip_literal(host: str) -> str | None:
    """The canonical form of an IP literal (so `::0:1` and `::1` are one address), or None for a name."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):
        return None


def _port_for(vip: str, inst: Instance) -> int | None:
    """The port `inst` serves `vip` on: `port` for its VIP, `secure_port` for its SVIP, None otherwise."""
    if inst.vip == vip:
        return inst.port
    if inst.svip == vip:
        return inst.secure_port
    return None


def select_endpoints(
    vip: str, instances: Iterable[Instance]
) -> tuple[tuple[Endpoint, ...], tuple[tuple[str, str], ...]]:
    """The endpoints serving `vip` (sorted by zone, host, port) and the UP instances left out, with why.

    Only UP instances are served. Instances of other names are ignored, so any superset may be passed.
    When two instances claim one address (an instance re-registered under a new id before the old lease
    ran out) the most recently registered one wins: grpcio NACKs a CLA that lists an address twice.
    """
    by_address: dict[tuple[str, int], tuple[tuple[int, str], Endpoint]] = {}
    skipped: list[tuple[str, str]] = []
    for inst in instances:
        if inst.status is not Status.UP:
            continue
        port = _port_for(vip, inst)
        if port is None:
            continue
        if not port:
            skipped.append((inst.instance_id, SKIP_NO_PORT))
            continue
        host = _ip_literal(inst.host)
        if host is None:
            skipped.append((inst.instance_id, SKIP_NOT_IP))
            continue
        rank = (inst.registered_at_ms, inst.instance_id)
        endpoint = Endpoint(host, port, inst.zone, inst.weight, inst.instance_id, inst.version_label)
        previous = by_address.get((host, port))
        if previous is None:
            by_address[(host, port)] = (rank, endpoint)
        elif rank > previous[0]:
            skipped.append((previous[1].instance_id, SKIP_DUPLICATE))
            by_address[(host, port)] = (rank, endpoint)
        else:
            skipped.append((inst.instance_id, SKIP_DUPLICATE))
    endpoints = sorted((ep for _, ep in by_address.values()), key=Endpoint.sort_key)
    return tuple(endpoints), tuple(sorted(skipped))


def endpoints_for(vip: str, instances: Iterable[Instance]) -> tuple[Endpoint, ...]:
    """The endpoints serving `vip`, sorted by (zone, host, port); see `select_endpoints`."""
    return select_endpoints(vip, instances)[0]


def build_vip(vip: str, instances: Iterable[Instance], policy: Policy | None = None) -> Snapshot:
    """The snapshot of `vip`: its Cluster, ClusterLoadAssignment and gRPC api Listener, all named `vip`.

    An unknown VIP (no UP instances) gets the same cluster and a CLA with no endpoints that drops every call
    (category "no UP instances of <vip>"): Envoy answers 503 at once instead of waiting for the on-demand CDS
    timeout, and gRPC clients fail with UNAVAILABLE naming the VIP. UP instances left out of the endpoints are in
    `notes` as (instance_id, reason), for the caller to log.

    With a traffic `policy` (the VIP's effective one), the Cluster is compiled from it (load balancing, circuit
    breaking, outlier detection) as the default variant, and proxyless gRPC clients get a variant of their own
    (the subset their xDS implementation honours, with routes, splits, retries and faults in the Listener); a
    split's per-version clusters `vip~version` and their assignments join the snapshot. What a kind of client
    does not get is in `notes` as (field path, reason).
    """
    endpoints, skipped = select_endpoints(vip, instances)
    if policy is None or is_empty(policy):
        return Snapshot.of(
            vip,
            (
                cluster_for(vip),
                VersionedResource.of(ENDPOINT, vip, cluster_load_assignment(vip, endpoints)),
                listener_for(vip, vip),
            ),
            notes=skipped,
        )
    policy = replace(policy, vip=vip)
    envoy, grpc = compile_envoy(policy), compile_grpc(policy)
    notes: list[tuple[str, str]] = list(skipped)
    resources: list[VersionedResource] = [listener_for(vip, vip), *load_assignments(policy, endpoints)]
    for res in envoy.resources:
        if res.type_url == VIRTUAL_HOST:  # Envoy's generic bootstrap routes by cluster_header, without VHDS yet
            notes.append(("routing", NOTE_ENVOY_ROUTES))
            continue
        resources.append(replace(res, variant=DEFAULT_KIND))  # Envoy's, and every kind without its own
    resources.extend(grpc.resources)
    notes.extend((f"grpc: {lo.field}", lo.reason) for lo in grpc.left_out)
    if policy.destination is not None and policy.destination.locality_failover:
        notes.append(("destination.localityFailover", NOTE_FAILOVER))
    return Snapshot.of(vip, resources, notes=notes)


def provisional_vip(vip: str) -> Snapshot:
    """What any host can serve for `vip` before its endpoints are known: the Cluster and the gRPC Listener,
    which depend only on the name (the ClusterLoadAssignment waits for the registry)."""
    return Snapshot.of(vip, (cluster_for(vip), listener_for(vip, vip)))


def cluster_for(vip: str) -> VersionedResource:
    """A VIP's Cluster: it depends only on the name (endpoints come by EDS), so any host can build it."""
    return VersionedResource.of(CLUSTER, vip, eds_cluster(vip), refs=eds_refs(vip))


def listener_for(name: str, vip: str) -> VersionedResource:
    """A gRPC api Listener named as the client asked (`vip` or `vip:port`), routing to cluster `vip`."""
    return VersionedResource.of(LISTENER, name, grpc_api_listener(name, vip), refs=cluster_refs(vip))


def build_known_vips(names: Iterable[str]) -> Snapshot:
    """The snapshot of KNOWN_VIPS_KEY: the guard's ECDS config letting exactly `names` through (any order)."""
    body = known_vips_config(names)
    return Snapshot.of(KNOWN_VIPS_KEY, (VersionedResource.of(EXTENSION_CONFIG, KNOWN_VIPS_FILTER, body),))
