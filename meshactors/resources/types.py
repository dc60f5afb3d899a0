"""xDS type URLs, the make-before-break send order, content versions and `VersionedResource`: no protobuf, no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

TYPE_PREFIX = "type.googleapis.com/"
LISTENER = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
VIRTUAL_HOST = TYPE_PREFIX + "envoy.config.route.v3.VirtualHost"
CLUSTER = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
# ECDS: a filter's config delivered on its own (the known-VIPs guard before the on-demand filter).
EXTENSION_CONFIG = TYPE_PREFIX + "envoy.config.core.v3.TypedExtensionConfig"

# Make before break: when several types change at once they are sent in this order (CDS, EDS, LDS, RDS/VHDS,
# SDS, ECDS). A type URL not listed sorts after all of these.
SEND_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST, SECRET, EXTENSION_CONFIG)
_RANK = {type_url: i for i, type_url in enumerate(SEND_ORDER)}

# Client kinds a resource variant can be made for. DEFAULT is the variant every other kind gets.
DEFAULT_KIND = ""
ENVOY_KIND = "envoy"
GRPC_KIND = "grpc"
CLIENT_KINDS: tuple[str, ...] = (DEFAULT_KIND, ENVOY_KIND, GRPC_KIND)

# A ClusterLoadAssignment can also have a variant per caller zone (locality failover: that zone preferred). A
# session with a zone reads it first, then its kind's. The prefix cannot start a client kind.
ZONE_VARIANT_PREFIX = "zone="


def zone_variant(zone: str) -> str:
    """The variant name of the assignments made for callers in `zone` ("" for no zone: no such variant)."""
    return ZONE_VARIANT_PREFIX + zone if zone else ""


# A reference from one resource to another: (type URL, name).
Ref = tuple[str, str]


def send_rank(type_url: str) -> int:
    """Where a type URL goes in the send order (unknown types last)."""
    return _RANK.get(type_url, len(SEND_ORDER))


# A generation of a cluster (`vip@2`, `vip~v1@2`): the name a proxy whose clusters of the VIP were collected is
# routed to next (Envoy 1.40 never asks again for a name it once asked for on demand, so a collected cluster comes
# back under a fresh name). `@` is in no VIP name and no version label.
GENERATION_SEP = "@"
MAX_GENERATIONS = 16  # collections of one VIP's clusters per proxy stream: each leaves Envoy a subscribed name


def generation_name(cluster: str, generation: int) -> str:
    """`cluster` at `generation` (0: the cluster's own name)."""
    return f"{cluster}{GENERATION_SEP}{generation}" if generation else cluster


def split_generation(name: str) -> tuple[str, int]:
    """(cluster, generation) of a name `generation_name` made; generation -1: malformed (`x@`, `x@0`, `x@a`, or
    beyond MAX_GENERATIONS)."""
    base, sep, tail = name.partition(GENERATION_SEP)
    if not sep:
        return name, 0
    if not tail.isdigit() or tail.startswith("0") or int(tail) > MAX_GENERATIONS:
        return base, -1
    return base, int(tail)


def content_version(body: bytes | None) -> str:
    """A resource's version is a hash of its serialized content: equal content, equal version."""
    if body is None:
        return "absent"
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def client_kind(user_agent_name: str) -> str:
    """The client kind of a node, from its `user_agent_name`: Envoy sends "envoy", gRPC's xDS clients send
    "gRPC C-core ...", "gRPC Java", "gRPC Go", "gRPC Node Pure JS" and the like. Anything else gets the default."""
    agent = user_agent_name.strip().lower()
    if agent == "envoy":
        return ENVOY_KIND
    if agent.startswith("grpc"):
        return GRPC_KIND
    return DEFAULT_KIND


@dataclass(frozen=True, slots=True)
class VersionedResource:
    """One xDS resource, serialized once and shared by every session that subscribes to it.

    `body` is the serialized resource message (the `value` of its `Any`); None means the resource is
    answered as "does not exist" (a `Resource{name, aliases}` with no body, as VHDS needs). `variant` is the
    client kind this body is for (DEFAULT_KIND: every kind without a variant of its own); each variant is
    versioned by its own bytes. `refs` names the resources this one needs present to be usable (an EDS
    Cluster its ClusterLoadAssignment, a route its clusters, a TLS context its secrets): `Snapshot.consistent`
    checks them. Neither takes part in the wire encoding.
    """

    type_url: str
    name: str
    version: str
    body: bytes | None
    aliases: tuple[str, ...] = ()
    variant: str = DEFAULT_KIND
    refs: tuple[Ref, ...] = ()

    @classmethod
    def of(
        cls,
        type_url: str,
        name: str,
        body: bytes | None,
        aliases: tuple[str, ...] = (),
        *,
        variant: str = DEFAULT_KIND,
        refs: tuple[Ref, ...] = (),
    ) -> VersionedResource:
        return cls(type_url, name, content_version(body), body, aliases, variant, refs)

    @property
    def key(self) -> tuple[str, str, str]:
        """(type URL, name, variant): what one version is kept for."""
        return (self.type_url, self.name, self.variant)
