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

from meshactors import defaults
from meshactors.envoy.grpc_tls import with_grpc_upstream_tls
from meshactors.envoy.policy import compile_envoy, compile_grpc, load_assignments
from meshactors.envoy.resources import (
    KNOWN_VIPS_FILTER,
    Endpoint,
    cluster_load_assignment,
    eds_cluster,
    grpc_api_listener,
    intentions_config,
    intentions_filter_name,
    known_vips_config,
)
from meshactors.envoy.sds import SPIFFE_SERVICE_PREFIX, with_upstream_tls
from meshactors.intentions.compile import rbac_config
from meshactors.intentions.model import Action, Rules
from meshactors.model.instance import Instance, Status
from meshactors.model.validate import is_valid_vip_name
from meshactors.policy.codec import encode as encode_policy
from meshactors.policy.model import Policy, is_empty
from meshactors.resources.snapshot import PolicySummary, Snapshot, cluster_refs, eds_refs
from meshactors.resources.types import (
    CLUSTER,
    DEFAULT_KIND,
    ENDPOINT,
    ENVOY_KIND,
    EXTENSION_CONFIG,
    GRPC_KIND,
    LISTENER,
    VersionedResource,
    content_version,
    zone_variant,
)

# Locality failover builds one assignment variant per zone of the VIP's endpoints, for at most this many zones
# (the first in name order); callers in a zone past it get the default assignment (no zone preferred), and the
# snapshot's notes say which zones were left out.
MAX_FAILOVER_ZONES = 16
NOTE_TOO_MANY_ZONES = f"more than {MAX_FAILOVER_ZONES} zones: callers in these get no zone preferred"

# Reasons an UP instance is left out of its VIP's ClusterLoadAssignment (reported in the snapshot's notes).
SKIP_NOT_IP = "host is not an IP address (EDS needs IP literals)"
SKIP_NO_PORT = "no port for this name"
SKIP_DUPLICATE = "same address as a more recently registered instance"

# The snapshot key of the known-VIPs guard (every name with a registration). `@` is never in a VIP name, so the
# key cannot collide with a VIP's; the builder map gives it one owner like any key.
KNOWN_VIPS_KEY = "@known-vips"
# The snapshot key of an SVIP's intentions (its inbound RBAC config over ECDS): `@intentions/<svip>`, owned through
# the builder map like any key, so the builder owning it follows that destination's intentions.
INTENTIONS_KEY_PREFIX = "@intentions/"


def intentions_key(svip: str) -> str:
    return INTENTIONS_KEY_PREFIX + svip


def intentions_svip(key: str) -> str | None:
    """The SVIP of an intentions key (None: `key` is none)."""
    return key[len(INTENTIONS_KEY_PREFIX) :] if key.startswith(INTENTIONS_KEY_PREFIX) else None


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


def server_identities(vip: str, instances: Iterable[Instance], trust_domain: str) -> tuple[str, ...] | None:
    """The SPIFFE IDs the servers of SVIP `vip` present, or None when `vip` is no SVIP (no instance registers it
    as `svip`). An instance's identity is the service of the token that registered it (`service:<name>`, what the
    CA put in its sidecar's certificate), else its app's name."""
    ids: set[str] = set()
    secure = False
    for inst in instances:
        if inst.svip != vip:
            continue
        secure = True
        if inst.status is not Status.UP:
            continue
        kind, _, name = inst.registered_by.partition(":")
        service = name if kind == "service" else inst.app.lower()
        if is_valid_vip_name(service):
            ids.add(SPIFFE_SERVICE_PREFIX.format(td=trust_domain) + service)
    return tuple(sorted(ids)) if secure else None


def _secured(snapshot: Snapshot, ids: tuple[str, ...] | None) -> Snapshot:
    """`snapshot` with an UpstreamTlsContext on its clusters when it is an SVIP's with known servers: Envoy's
    (file-based SDS, meshactors.envoy.sds) on the default variant, gRPC's (certificate provider instances,
    meshactors.envoy.grpc_tls) on the gRPC variant, made from the default one when the snapshot has none."""
    if not ids:
        return snapshot
    grpc_names = {r.name for r in snapshot.resources if r.type_url == CLUSTER and r.variant == GRPC_KIND}
    resources: list[VersionedResource] = []
    for r in snapshot.resources:
        if r.type_url != CLUSTER or r.body is None or r.variant not in (DEFAULT_KIND, GRPC_KIND):
            resources.append(r)
            continue
        if r.variant == GRPC_KIND or r.name not in grpc_names:
            body = with_grpc_upstream_tls(r.body, ids)
            resources.append(VersionedResource.of(CLUSTER, r.name, body, r.aliases, variant=GRPC_KIND, refs=r.refs))
        if r.variant == DEFAULT_KIND:
            body = with_upstream_tls(r.body, ids)
            resources.append(VersionedResource.of(CLUSTER, r.name, body, r.aliases, variant=DEFAULT_KIND, refs=r.refs))
    return Snapshot.of(snapshot.key, tuple(resources), notes=snapshot.notes, policy=snapshot.policy)


def build_vip(
    vip: str,
    instances: Iterable[Instance],
    policy: Policy | None = None,
    *,
    trust_domain: str = defaults.TRUST_DOMAIN,
    revisions: Iterable[tuple[str, int]] = (),
) -> Snapshot:
    """The snapshot of `vip`, `_build_vip`'s; an SVIP's Envoy clusters speak mTLS to its servers (see
    meshactors.envoy.sds), verifying the identities of `server_identities` in `trust_domain`. `revisions` are the
    etcd mod revisions of the documents `policy` was merged from, for the snapshot's `PolicySummary`."""
    instances = list(instances)
    built = _build_vip(vip, instances, policy, tuple(revisions))
    return _secured(built, server_identities(vip, instances, trust_domain))


def policy_digest(policy: Policy) -> str:
    """A short hash of an effective policy (its stored encoding): equal documents, equal digests."""
    return content_version(encode_policy(policy))


def _build_vip(
    vip: str, instances: Iterable[Instance], policy: Policy | None = None, revisions: tuple[tuple[str, int], ...] = ()
) -> Snapshot:
    """The snapshot of `vip`: its Cluster, ClusterLoadAssignment and gRPC api Listener, all named `vip`.

    An unknown VIP (no UP instances) gets the same cluster and a CLA with no endpoints that drops every call
    (category "no UP instances of <vip>"): Envoy answers 503 at once instead of waiting for the on-demand CDS
    timeout, and gRPC clients fail with UNAVAILABLE naming the VIP. UP instances left out of the endpoints are in
    `notes` as (instance_id, reason), for the caller to log.

    With a traffic `policy` (the VIP's effective one), the Cluster is compiled from it (load balancing, circuit
    breaking, outlier detection) as the default variant, and proxyless gRPC clients get a variant of their own
    (the subset their xDS implementation honours, with routes, splits, retries and faults in the Listener); a
    split's per-version clusters `vip~version` and their assignments join the snapshot. With
    `destination.localityFailover` every assignment also has a variant per zone of the endpoints, that zone at
    priority 0 (`_zone_assignments`): a session whose node has that zone reads it. What a kind of client does
    not get is in `notes` as (field path, reason), and in the snapshot's `policy` (a `PolicySummary`: the policy's
    digest, `revisions`, and per variant what it left out), which `status` shows per session holding the VIP.
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
    assignments = load_assignments(policy, endpoints)
    resources: list[VersionedResource] = [listener_for(vip, vip), *assignments]
    if policy.destination is not None and policy.destination.locality_failover:
        resources.extend(_zone_assignments(policy, endpoints, assignments, notes))
    for res in envoy.resources:  # the VirtualHost (VHDS) is asked for by Envoy only
        resources.append(replace(res, variant=DEFAULT_KIND))  # Envoy's, and every kind without its own
    resources.extend(grpc.resources)
    notes.extend((f"envoy: {lo.field}", lo.reason) for lo in envoy.left_out)
    notes.extend((f"grpc: {lo.field}", lo.reason) for lo in grpc.left_out)
    summary = PolicySummary.of(
        policy_digest(policy),
        revisions,
        {ENVOY_KIND: map(str, envoy.left_out), GRPC_KIND: map(str, grpc.left_out)},
    )
    return Snapshot.of(vip, resources, notes=notes, policy=summary)


def _zone_assignments(
    policy: Policy,
    endpoints: tuple[Endpoint, ...],
    default: tuple[VersionedResource, ...],
    notes: list[tuple[str, str]],
) -> list[VersionedResource]:
    """Locality failover: per zone of the endpoints (at most MAX_FAILOVER_ZONES), the assignments with that zone
    preferred, as variant `zone_variant(zone)`. A variant equal to the default one (a single zone, or a version
    with no endpoint in the zone) is left out: the session reads the default."""
    zones = sorted({ep.zone for ep in endpoints})
    if len(zones) > MAX_FAILOVER_ZONES:
        zones, rest = zones[:MAX_FAILOVER_ZONES], zones[MAX_FAILOVER_ZONES:]
        more = f" and {len(rest) - 5} more" if len(rest) > 5 else ""
        notes.append(("destination.localityFailover", f"{NOTE_TOO_MANY_ZONES}: {', '.join(rest[:5])}{more}"))
    plain = {res.name: res.version for res in default}
    out: list[VersionedResource] = []
    for zone in zones:
        for res in load_assignments(policy, endpoints, zone):
            if res.version != plain.get(res.name):
                out.append(replace(res, variant=zone_variant(zone)))
    return out


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


def build_intentions(svip: str, rules: Rules | None, default: Action, trust_domain: str) -> Snapshot:
    """The snapshot of `intentions_key(svip)`: the RBAC ECDS config of the SVIP's inbound listener, compiled from its
    intentions (`rules`, None: none) and the mesh `default` (meshactors.intentions.compile)."""
    body = intentions_config(svip, rbac_config(rules, default, trust_domain))
    resource = VersionedResource.of(EXTENSION_CONFIG, intentions_filter_name(svip), body)
    return Snapshot.of(intentions_key(svip), (resource,))
