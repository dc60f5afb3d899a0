"""VipSource: the per-VIP source an xDS host serves Cluster, ClusterLoadAssignment and gRPC Listener from.

It runs inside the xDS server's process and owns what a name means for these type URLs: every name is a VIP,
except that a gRPC client's Listener may be named `vip:port` (`xds:///vip:port`), which it derives from the
VIP's snapshot. Snapshots come from the snapshot builders through a `BuilderTransport` (direct gRPC in
production, wired by the runtime); the first answer for a never-seen VIP (its Cluster and Listener, which
do not depend on the registry) is given at once, before the endpoints are fetched.

It also serves the known-VIPs guard (ECDS, one name, key KNOWN_VIPS_KEY, never provisional: Envoy's listener
warms until the real answer) and learns the known names from it (`observe`): a VIP key whose name has no
registration counts against a budget per xDS server, so clients that are not Envoy cannot make it hold
unbounded junk either. An SVIP's intentions (ECDS `meshactors_intentions/<svip>`, key `@intentions/<svip>`) are
never provisional either: the secure listener warms until the real RBAC config.

An xDS-enabled gRPC server's Listener (`grpc/server?xds.resource.listening_address=IP:PORT`, gRFC A36) depends
only on its name: this source answers it itself (key `@grpc-server/IP:PORT`, like the route table), with the
mTLS Listener of meshactors.envoy.grpc_tls; a malformed name is refused with the reason
(meshactors.resources.server_listener).
"""

from __future__ import annotations

import functools
import re
from types import MappingProxyType
from typing import Protocol

from meshactors import log
from meshactors.envoy.bootstrap import OUTBOUND_ROUTE_CONFIG
from meshactors.envoy.grpc_tls import grpc_server_listener
from meshactors.envoy.policy import UNSERVED_VIRTUAL_HOST, outbound_route_configuration, virtual_host_name
from meshactors.envoy.resources import (
    INTENTIONS_FILTER_PREFIX,
    KNOWN_VIPS_FILTER,
    generation_virtual_host,
    known_vips_names,
    renamed_cluster,
    renamed_grpc_listener,
)
from meshactors.model.validate import is_valid_vip_name
from meshactors.resources.server_listener import (
    is_server_listener,
    parse_server_listener,
    server_key,
    server_key_name,
)
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import (
    CLUSTER,
    DEFAULT_KIND,
    ENDPOINT,
    EXTENSION_CONFIG,
    GENERATION_SEP,
    LISTENER,
    MAX_GENERATIONS,
    ROUTE,
    VIRTUAL_HOST,
    Ref,
    VersionedResource,
    generation_name,
    split_generation,
)
from meshactors.snapshot.builder import (
    KNOWN_VIPS_KEY,
    intentions_key,
    intentions_svip,
    listener_for,
    provisional_vip,
)
from meshactors.snapshot.settings import VipSourceSettings  # re-exported: it lives in a proto-free module
from meshactors.snapshot.statistics import VipSourceStatistics  # re-exported, as VipSourceSettings

# A traffic policy's per-version cluster of a VIP: `vip~version` (`~` is in neither a VIP nor a version label).
_VERSION_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")

VIP_SOURCE = "vip"
VIP_TYPES: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER)
SOURCE_TYPES: tuple[str, ...] = (*VIP_TYPES, EXTENSION_CONFIG, ROUTE, VIRTUAL_HOST)
# The sidecars' outbound RouteConfiguration: the same for everyone, answered here without asking a builder.
ROUTES_KEY = "@outbound-routes"
_VHOST_PREFIX = OUTBOUND_ROUTE_CONFIG + "/"

_log = log.get("snapshot.source")


class BuilderTransport(Protocol):
    """How a VipSource reaches the snapshot builders owning the VIPs."""

    async def subscribe(self, vips: list[str]) -> list[Snapshot]: ...

    async def unsubscribe(self, vips: list[str]) -> None: ...


def vip_of(type_url: str, name: str) -> str:
    """The VIP a resource name belongs to: listeners may be named `vip:port` (gRPC's `xds:///vip:port`), clusters
    and their assignments `vip~version` (a traffic policy's per-version cluster)."""
    if type_url == LISTENER and is_server_listener(name):
        return name
    if type_url == LISTENER and ":" in name:
        return name.rsplit(":", 1)[0]
    if type_url == CLUSTER:
        name = split_generation(name)[0]  # a generation of a cluster (`vip@2`, `vip~v1@2`) is the VIP's too
    if type_url in (CLUSTER, ENDPOINT) and "~" in name:
        return name.split("~", 1)[0]
    if type_url == VIRTUAL_HOST:
        return name.removeprefix(_VHOST_PREFIX)
    if type_url == EXTENSION_CONFIG:
        return name.removeprefix(INTENTIONS_FILTER_PREFIX)
    return name


def validate_name(type_url: str, name: str) -> str | None:
    """Why a subscribed name cannot be served as a VIP resource or the guard's config (None: it can)."""
    if type_url == EXTENSION_CONFIG:
        if name == KNOWN_VIPS_FILTER:
            return None
        if name.startswith(INTENTIONS_FILTER_PREFIX) and is_valid_vip_name(name[len(INTENTIONS_FILTER_PREFIX) :]):
            return None
        return f"{name[:100]!r}: the extension configs are {KNOWN_VIPS_FILTER} and {INTENTIONS_FILTER_PREFIX}<svip>"
    if type_url == ROUTE:
        return (
            None
            if name == OUTBOUND_ROUTE_CONFIG
            else f"{name[:100]!r}: the only route config is {OUTBOUND_ROUTE_CONFIG}"
        )
    if type_url == VIRTUAL_HOST and not name.startswith(_VHOST_PREFIX):
        return f"{name[:100]!r}: a virtual host is {_VHOST_PREFIX}<vip>"
    if type_url not in (*VIP_TYPES, VIRTUAL_HOST):
        return f"type {type_url} is not served by the VIP source"
    if type_url == LISTENER and is_server_listener(name):
        try:
            parse_server_listener(name)
        except ValueError as exc:
            return str(exc)
        return None
    if type_url == CLUSTER:
        name, generation = split_generation(name)
        if generation < 0:
            return f"{name[:120]!r}: a cluster's generation is @1 to @{MAX_GENERATIONS}"
    vip = vip_of(type_url, name)
    if not is_valid_vip_name(vip):
        return f"{vip[:100]!r} is not a VIP name (lowercase DNS name)"
    if type_url == LISTENER and vip != name:
        port = name.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"{name[:120]!r}: the port must be a number 1-65535"
    if type_url in (CLUSTER, ENDPOINT) and vip != name and not _VERSION_RE.match(name.split("~", 1)[1]):
        return f"{name[:120]!r}: a version cluster is vip~version (letters, digits and . _ + -, at most 64)"
    return None


class VipSource:
    """A `meshactors.resources.source.Source` over the snapshot builders.

    The unknown-VIP budget: every VIP key the host holds or is about to hold (from the first answer on,
    `provisional`, until `forget`) is tracked; those whose name is not known (no registration, as the last
    known-names snapshot `observe`d says) count against `max_unknown_vips`. Past it `validate` refuses a new
    unknown name; a known name, or one already held, is never refused by it."""

    name = VIP_SOURCE
    type_urls = SOURCE_TYPES
    # A VIP's virtual host reaches an Envoy with the VIP's Cluster (its route table's catch-all means Envoy
    # never asks VHDS for a name itself), and only the Envoys that asked for that Cluster.
    companion_types = MappingProxyType({VIRTUAL_HOST: UNSERVED_VIRTUAL_HOST})
    # A route's mirror cluster is never discovered on demand: it reaches an Envoy on its bootstrap's wildcard CDS
    # subscription, ahead of the virtual host that names it, and only the Envoys holding that virtual host. The
    # wildcard's first answer is empty (measured with Envoy 1.40: /ready in 0.16 s; unanswered, 15.2 s).
    pushed_types = MappingProxyType({CLUSTER: ""})

    def __init__(self, transport: BuilderTransport, settings: VipSourceSettings | None = None) -> None:
        self.transport = transport
        self.settings = settings or VipSourceSettings()
        # vip -> (`vip:port` name, variant) -> (version of the VIP's listener it came from, the derived Listener)
        self._listeners: dict[str, dict[tuple[str, str], tuple[str, VersionedResource]]] = {}
        # vip -> (name, generation, variant) -> (version it came from, the renamed Cluster or generation vhost)
        self._generations: dict[str, dict[tuple[str, int, str], tuple[str, VersionedResource]]] = {}
        self._known: frozenset[str] | None = None  # None: not seen yet (every name counts as unknown)
        self._known_version = ""
        self._held: set[str] = set()  # VIP keys held or being fetched
        self._unknown: set[str] = set()  # those of them whose name is not known
        self.refused_by_budget = 0

    def _is_known(self, vip: str) -> bool:
        return self._known is not None and vip in self._known

    def known_names(self) -> frozenset[str] | None:
        """The VIP names that have registrations, as the last known-names snapshot said (None: none seen yet)."""
        return self._known

    def validate(self, type_url: str, name: str) -> str | None:
        reason = validate_name(type_url, name)
        if reason is not None or type_url == ROUTE or (type_url == EXTENSION_CONFIG and name == KNOWN_VIPS_FILTER):
            return reason
        if type_url == LISTENER and is_server_listener(name):
            return None  # answered from the name alone: nothing held for it but the one Listener
        vip = vip_of(type_url, name)  # an SVIP's intentions count as its key does
        key = self.key_of(type_url, name) if type_url == EXTENSION_CONFIG else vip
        if key in self._held or self._is_known(vip) or len(self._unknown) < self.settings.max_unknown_vips:
            return None
        self.refused_by_budget += 1
        if self.refused_by_budget == 1 or self.refused_by_budget % 1000 == 0:
            _log.warning("unknown VIP refused: the budget of this xDS server is spent", vip=vip[:100],
                         refused=self.refused_by_budget, budget=self.settings.max_unknown_vips)  # fmt: skip
        return (
            f"{vip[:100]!r} has no registration and this xDS server already holds "
            f"{self.settings.max_unknown_vips} VIPs that have none (--xds-max-unknown-vips)"
        )

    def key_of(self, type_url: str, name: str) -> str:
        if type_url == EXTENSION_CONFIG:
            if name.startswith(INTENTIONS_FILTER_PREFIX):
                return intentions_key(name[len(INTENTIONS_FILTER_PREFIX) :])
            return KNOWN_VIPS_KEY
        if type_url == ROUTE:
            return ROUTES_KEY
        if type_url == LISTENER and is_server_listener(name):
            return server_key(name)
        return vip_of(type_url, name)

    def companions(self, type_url: str, name: str) -> tuple[Ref, ...]:
        if type_url == CLUSTER and "~" not in name:
            return ((VIRTUAL_HOST, virtual_host_name(split_generation(name)[0])),)
        return ()

    def generation_resource(
        self, type_url: str, name: str, base: VersionedResource | None, generation: int
    ) -> VersionedResource | None:
        """What (type URL, name) is for a stream whose clusters of its VIP were collected `generation` times: a
        VIP's virtual host routing to that generation's clusters (`base`: the VIP's own virtual host, if it has
        one). None: the same as for every stream."""
        if type_url != VIRTUAL_HOST or generation <= 0:
            return base
        vip = vip_of(VIRTUAL_HOST, name)
        cache = self._generations.setdefault(vip, {})
        key = (name, generation, base.variant if base is not None else "")
        held = cache.get(key)
        version = base.version if base is not None else ""
        if held is not None and held[0] == version:
            return held[1]

        def rename(cluster: str) -> str:
            return generation_name(cluster, generation) if vip_of(CLUSTER, cluster) == vip else cluster

        body = generation_virtual_host(base.body if base is not None else None, name, vip, rename)
        refs = tuple((t, rename(n)) if t == CLUSTER else (t, n) for t, n in (base.refs if base is not None else ()))
        variant = base.variant if base is not None else DEFAULT_KIND
        found = VersionedResource.of(VIRTUAL_HOST, name, body, variant=variant, refs=refs)
        cache[key] = (version, found)
        return found

    def pushed_refs(self, resource: VersionedResource) -> tuple[Ref, ...]:
        """A VIP's virtual host pushes the clusters of other VIPs it names (its mirror); its own (`vip`, `vip~v1`)
        Envoy asks for on demand when a route picks them."""
        if resource.type_url != VIRTUAL_HOST:
            return ()
        vip = vip_of(VIRTUAL_HOST, resource.name)
        return tuple(ref for ref in resource.refs if ref[0] == CLUSTER and vip_of(CLUSTER, ref[1]) != vip)

    def _hold(self, key: str) -> None:
        if key in (KNOWN_VIPS_KEY, ROUTES_KEY):
            return
        self._held.add(key)  # a VIP key, or an SVIP's intentions key (held against the budget like its VIP's)
        if not self._is_known(_name_of(key)):
            self._unknown.add(key)

    def provisional(self, key: str) -> Snapshot | None:
        if server_key_name(key) is not None:
            return _server_snapshot(key)  # None for a malformed one (validate refused its name)
        if key.startswith("@") and key != ROUTES_KEY:
            # the guard waits for the real names, an SVIP's RBAC for its real intentions: a wrong first config
            # would cost every request (or open an SVIP its intentions close)
            return None
        if key == ROUTES_KEY:
            return _routes_snapshot()
        self._hold(key)
        return provisional_vip(key)

    def observe(self, snapshot: Snapshot) -> None:
        """Learn the known names from the known-names snapshot the host applied; other snapshots teach nothing."""
        if snapshot.key != KNOWN_VIPS_KEY:
            return
        res = snapshot.get(EXTENSION_CONFIG, KNOWN_VIPS_FILTER)
        if res is None or res.body is None or res.version == self._known_version:
            return
        try:
            known = known_vips_names(res.body)
        except ValueError as exc:  # a builder bug: keep the names we had
            _log.error("known-names snapshot unreadable; keeping the last names", error=str(exc)[:300])
            return
        self._known, self._known_version = known, res.version
        self._unknown = {k for k in self._held if _name_of(k) not in known}

    def statistics(self) -> VipSourceStatistics:
        return VipSourceStatistics(
            known_names=len(self._known) if self._known is not None else -1,
            vip_keys_held=len(self._held),
            unknown_vip_keys_held=len(self._unknown),
            unknown_vip_budget=self.settings.max_unknown_vips,
            refused_by_budget=self.refused_by_budget,
        )

    def resolve(self, snapshot: Snapshot, type_url: str, name: str, kind: str) -> VersionedResource | None:
        if type_url == LISTENER and name != snapshot.key and not is_server_listener(name):
            base = snapshot.get(LISTENER, snapshot.key, kind)
            if base is None:
                return None
            by_name = self._listeners.setdefault(snapshot.key, {})
            held = by_name.get((name, base.variant))
            if held is not None and held[0] == base.version:
                return held[1]
            # derived from the VIP's own listener for this kind (with its policy's routes, if any)
            if base.variant == DEFAULT_KIND:
                found = listener_for(name, snapshot.key)
            else:
                body = renamed_grpc_listener(base.body or b"", name)
                found = VersionedResource.of(LISTENER, name, body, variant=base.variant, refs=base.refs)
            by_name[(name, base.variant)] = (base.version, found)
            return found
        if type_url == CLUSTER and GENERATION_SEP in name:
            base_name, generation = split_generation(name)
            base = snapshot.get(CLUSTER, base_name, kind)
            if base is None or generation <= 0:
                return None
            by_name = self._generations.setdefault(snapshot.key, {})
            key = (name, generation, base.variant)
            held = by_name.get(key)
            if held is not None and held[0] == base.version:
                return held[1]
            found = VersionedResource.of(
                CLUSTER, name, renamed_cluster(base.body or b"", name), variant=base.variant, refs=base.refs
            )
            by_name[key] = (base.version, found)
            return found
        return snapshot.get(type_url, name, kind)

    def derived_names(self, snapshot: Snapshot, type_url: str) -> list[str]:
        if type_url == CLUSTER:  # the generations of its clusters some stream was sent
            held = self._generations.get(snapshot.key, {})
            return list(dict.fromkeys(name for name, _g, _variant in held if GENERATION_SEP in name))
        if type_url != LISTENER:
            return []
        return list(dict.fromkeys(name for name, _variant in self._listeners.get(snapshot.key, ())))

    def forget(self, key: str) -> None:
        self._listeners.pop(key, None)
        self._generations.pop(key, None)
        self._held.discard(key)
        self._unknown.discard(key)

    async def fetch(self, keys: list[str]) -> list[Snapshot]:
        local = [_routes_snapshot()] if ROUTES_KEY in keys else []
        local += [s for s in map(_server_snapshot, keys) if s is not None]
        keys = [k for k in keys if from_builders(k)]
        for key in keys:
            self._hold(key)
        return [*local, *(await self.transport.subscribe(keys))] if keys else local

    async def release(self, keys: list[str]) -> None:
        keys = [k for k in keys if from_builders(k)]
        if keys:
            await self.transport.unsubscribe(keys)


def _name_of(key: str) -> str:
    """The VIP name a held key is of (an intentions key's SVIP)."""
    svip = intentions_svip(key)
    return key if svip is None else svip


def from_builders(key: str) -> bool:
    """True for a key whose snapshots come from the snapshot builders; False for the route table and the gRPC
    servers' Listeners, which this source answers itself (a builder would build them as unknown VIPs)."""
    return key != ROUTES_KEY and server_key_name(key) is None


@functools.cache
def _routes_snapshot() -> Snapshot:
    """The route table's snapshot: the same bytes forever, so built once per process."""
    return Snapshot.of(ROUTES_KEY, (outbound_route_configuration(),))


def _server_snapshot(key: str) -> Snapshot | None:
    """The snapshot of a gRPC server's Listener key (None: `key` is none, or its name is malformed)."""
    name = server_key_name(key)
    if name is None:
        return None
    try:
        host, port = parse_server_listener(name)
    except ValueError:  # validate refused the name: no key is held for it
        return None
    return Snapshot.of(key, (VersionedResource.of(LISTENER, name, grpc_server_listener(host, port)),))
