"""Pure builders of xDS resources as bytes: per-VIP Cluster, ClusterLoadAssignment, gRPC api Listener; the guard."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, extension_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.common.matcher.action.v3 import skip_action_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, message
from xds.type.matcher.v3 import matcher_pb2

from meshactors.telemetry.golden import stat_name

# The filter_metadata namespace our endpoint facts (instance id, version label) live under.
METADATA_NAMESPACE = "meshactors"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
ROUTER_FILTER = "envoy.filters.http.router"
FAULT_FILTER = "envoy.filters.http.fault"
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
FILTER_CHAIN_FILTER = "envoy.filters.http.filter_chain"
# The filter_chain filter is in the Envoy 1.40 binary but not in xds-protos 1.85: sent as a TypedStruct.
FILTER_CHAIN_TYPE = "type.googleapis.com/envoy.extensions.filters.http.filter_chain.v3.FilterChainConfig"
MAX_WEIGHT = 2**32 - 1
# The drop category a VIP with no endpoints drops every call under: gRPC clients fail the call with UNAVAILABLE
# and this text (grpcio: "EDS-configured drop: ...", grpc-js: "Call dropped by load balancing policy.
# Category: ..."); Envoy answers 503 "unconditional drop overload". All at once, without waiting for a timeout.
NO_ENDPOINTS_DROP_CATEGORY = "no UP instances of {name}"
# The known-VIPs guard: an HTTP filter before the on-demand filter, its config delivered over ECDS under this
# name (also the filter's name in the bootstrap). A request whose :authority is a known name skips it; any other
# gets a 503 from the fault filter it wraps ("fault filter abort"), so a junk Host never reaches on-demand CDS.
KNOWN_VIPS_FILTER = "meshactors_known_vips"
KNOWN_VIPS_TYPE = "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher"
# exact_match_map needs at least one entry: with no names this key (never a VIP name) stands in.
KNOWN_VIPS_PLACEHOLDER = "_none_"
GUARD_STATUS = 503
# Intentions: the secure inbound listener's RBAC filter, its config over ECDS under INTENTIONS_FILTER_PREFIX + the
# SVIP's name (also the filter's name in the bootstrap), compiled by meshactors.intentions.compile.
INTENTIONS_FILTER_PREFIX = "meshactors_intentions/"
INTENTIONS_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address serving a VIP. `host` must be an IP literal: Envoy and grpcio both reject names in EDS."""

    host: str
    port: int
    zone: str = "default"
    weight: int = 1
    instance_id: str = ""
    version_label: str = ""

    def sort_key(self) -> tuple[str, str, int, str]:
        return (self.zone, self.host, self.port, self.instance_id)


def _serialize(msg: message.Message) -> bytes:
    return msg.SerializeToString(deterministic=True)


def _pack(msg: message.Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, deterministic=True)
    return out


def _duration_ms(ms: int) -> duration_pb2.Duration:
    if ms <= 0:
        raise ValueError(f"duration must be positive, got {ms} ms")
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


@lru_cache(maxsize=64)
def _cluster_template(connect_timeout_ms: int, lb_policy: str, http2: bool) -> cluster_pb2.Cluster:
    """Everything of an EDS cluster but its name (never mutated: eds_cluster copies it)."""
    cluster = cluster_pb2.Cluster(
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=_duration_ms(connect_timeout_ms),
        lb_policy=cluster_pb2.Cluster.LbPolicy.Value(lb_policy),
    )
    eds_config = cluster.eds_cluster_config.eds_config
    eds_config.ads.SetInParent()
    eds_config.resource_api_version = config_source_pb2.V3
    if http2:
        options = http_protocol_options_pb2.HttpProtocolOptions()
        options.explicit_http_config.http2_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(_pack(options))
    return cluster


def eds_cluster_message(
    name: str, *, connect_timeout_ms: int = 1000, lb_policy: str = "ROUND_ROBIN", http2: bool = False
) -> cluster_pb2.Cluster:
    """A fresh (mutable) copy of the EDS cluster `eds_cluster` serializes: the traffic policy compiler
    (meshactors.envoy.policy) adds its knobs to it, so EDS config and names stay the same on both paths."""
    if not name:
        raise ValueError("cluster name must not be empty")
    cluster = cluster_pb2.Cluster()
    cluster.CopyFrom(_cluster_template(connect_timeout_ms, lb_policy, http2))
    cluster.name = name
    if stat_name(name) != name:
        # Envoy's tag extraction cuts a cluster's stat name at its first dot (`dotted.vip` would be reported as
        # `dotted`): a dotted name gets a dot-free stat name, which the golden signals map back. A dot-free name
        # already is its own stat name, so it gets none (the same stats, and the resource bytes stay as they were).
        cluster.alt_stat_name = stat_name(name)
    return cluster


@lru_cache(maxsize=4096)
def eds_cluster(
    name: str, *, connect_timeout_ms: int = 1000, lb_policy: str = "ROUND_ROBIN", http2: bool = False
) -> bytes:
    """An EDS cluster whose endpoints come over ADS (the CLA is named like the cluster).

    This answers on-demand CDS for known and unknown VIPs alike: an unknown VIP gets this cluster and an
    endpoint-less ClusterLoadAssignment that drops every call, so requests fail fast (Envoy 503, gRPC UNAVAILABLE)
    instead of waiting for the odcds timeout.
    gRPC accepts only ROUND_ROBIN (and RING_HASH, or load_balancing_policy) here; MAGLEV is NACKed.
    """
    return _serialize(
        eds_cluster_message(name, connect_timeout_ms=connect_timeout_ms, lb_policy=lb_policy, http2=http2)
    )


def _address_key(ep: Endpoint) -> tuple[bytes, int]:
    """The packed address of `ep` (inet_pton is strict and fast); ValueError for what EDS would NACK."""
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in ep.host else socket.AF_INET, ep.host)
    except OSError:
        raise ValueError(f"endpoint host {ep.host!r} is not an IP address (EDS needs IP literals)") from None
    if not 1 <= ep.port <= 65535:
        raise ValueError(f"endpoint {ep.host} port {ep.port} is out of range 1-65535")
    if not 1 <= ep.weight <= MAX_WEIGHT:
        raise ValueError(f"endpoint {ep.host}:{ep.port} weight {ep.weight} must be at least 1")
    return packed, ep.port


def _fill_lb_endpoint(lb: endpoint_components_pb2.LbEndpoint, ep: Endpoint) -> None:
    # Attribute assignment is several times faster than nested constructors (this runs per instance).
    socket_address = lb.endpoint.address.socket_address
    socket_address.address = ep.host
    socket_address.port_value = ep.port
    lb.health_status = health_check_pb2.HEALTHY
    lb.load_balancing_weight.value = ep.weight
    if ep.instance_id or ep.version_label:
        fields = lb.metadata.filter_metadata[METADATA_NAMESPACE].fields
        if ep.instance_id:
            fields["instance_id"].string_value = ep.instance_id
        if ep.version_label:
            fields["version_label"].string_value = ep.version_label


def cluster_load_assignment(name: str, endpoints: Iterable[Endpoint], *, prefer_zone: str | None = None) -> bytes:
    """The CLA for cluster `name`: one weighted locality per zone, endpoints sorted by (zone, host, port).

    Every locality carries `load_balancing_weight` (the sum of its endpoints' weights), which every gRPC
    implementation needs or it silently drops the locality. Endpoints are HEALTHY (gRPC uses only UNKNOWN
    and HEALTHY ones).

    Zero endpoints (an unknown VIP, or one whose instances are all gone) give a CLA with no localities and a
    100% drop_overload under NO_ENDPOINTS_DROP_CATEGORY: without it grpc-js fails calls with the anonymous
    "priority policy has empty priority list"; with it every gRPC client fails them at once with UNAVAILABLE
    naming the VIP, and Envoy answers 503 at once, as before.

    `prefer_zone` (locality failover, for a caller in that zone): its locality gets priority 0 and every other
    zone priority 1, so Envoy and gRPC use the other zones only when the caller's has no healthy endpoint.
    Priorities must be contiguous from 0: when the zone has no endpoints every locality stays at priority 0.

    Raises ValueError for input Envoy or gRPC would NACK: a non-IP host, a bad port or weight, the same
    address twice (grpcio and grpc-js reject duplicate addresses across the whole CLA), or locality weights
    summing past uint32 (one priority's total must fit, in Envoy and every gRPC implementation).
    """
    if not name:
        raise ValueError("cluster name must not be empty")
    ordered = sorted(endpoints, key=Endpoint.sort_key)
    seen: set[tuple[bytes, int]] = set()
    for ep in ordered:
        key = _address_key(ep)
        if key in seen:
            raise ValueError(f"duplicate endpoint address {ep.host}:{ep.port} in {name!r}")
        seen.add(key)
    if sum(ep.weight for ep in ordered) > MAX_WEIGHT:
        raise ValueError(f"the endpoint weights of {name!r} sum past {MAX_WEIGHT}")
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    if not ordered:
        drop = cla.policy.drop_overloads.add(category=NO_ENDPOINTS_DROP_CATEGORY.format(name=name))
        drop.drop_percentage.numerator = 100
        drop.drop_percentage.denominator = percent_pb2.FractionalPercent.HUNDRED
    failover = prefer_zone is not None and any(ep.zone == prefer_zone for ep in ordered)
    for zone, group in groupby(ordered, key=_zone):
        locality = cla.endpoints.add()
        locality.locality.zone = zone
        if failover and zone != prefer_zone:
            locality.priority = 1
        total = 0
        for ep in group:
            _fill_lb_endpoint(locality.lb_endpoints.add(), ep)
            total += ep.weight
        locality.load_balancing_weight.value = total
    return _serialize(cla)


def _zone(ep: Endpoint) -> str:
    return ep.zone


_ROUTER = hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=_pack(router_pb2.Router()))


@lru_cache(maxsize=4096)
def grpc_api_listener(
    name: str, cluster: str, *, virtual_host: bytes | None = None, fault: bytes | None = None
) -> bytes:
    """The Listener a proxyless gRPC client asks for (`xds:///name`) over SotW LDS.

    Its `api_listener` is an HttpConnectionManager with an inline route config (one virtual host for any
    authority, `prefix: ""` -> `cluster`) and the router as its only HTTP filter, which grpcio requires.
    A traffic policy passes its own serialized VirtualHost (routes, splits, retries; it replaces the default
    one) and a serialized `HTTPFault`, which becomes a fault filter before the router (gRFC A33).
    """
    if not name or not cluster:
        raise ValueError("listener and cluster names must not be empty")
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    route_config = manager.route_config
    route_config.name = name
    if virtual_host is not None:
        route_config.virtual_hosts.add().ParseFromString(virtual_host)
    else:
        default_host = route_config.virtual_hosts.add(name=name, domains=["*"])
        route = default_host.routes.add()
        route.match.prefix = ""  # a oneof member: set even though empty
        route.route.cluster = cluster
    if fault is not None:
        fault_filter = manager.http_filters.add(name=FAULT_FILTER)
        fault_filter.typed_config.type_url = FAULT_TYPE
        fault_filter.typed_config.value = fault
    manager.http_filters.append(_ROUTER)
    listener = listener_pb2.Listener(name=name)
    listener.api_listener.api_listener.Pack(manager, deterministic=True)
    return _serialize(listener)


def renamed_grpc_listener(body: bytes, name: str) -> bytes:
    """A gRPC api Listener (as `grpc_api_listener` builds it, possibly with a policy's routes) under another name,
    for a client that asked for `xds:///vip:port`: the listener, its HttpConnectionManager's stat prefix and its
    inline route config take the name; routes and filters stay as they are."""
    listener = listener_pb2.Listener.FromString(body)
    manager = hcm_pb2.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(manager)
    listener.name = name
    manager.stat_prefix = name
    manager.route_config.name = name
    listener.api_listener.api_listener.Pack(manager, deterministic=True)
    return _serialize(listener)


def renamed_cluster(body: bytes, name: str) -> bytes:
    """A Cluster under another name (a generation of it, meshactors.resources.types.generation_name): its
    ClusterLoadAssignment and its stats stay the original's (EDS service name and alt_stat_name name it), so the
    endpoints are the same bytes for every proxy and the golden signals count the VIP as before."""
    cluster = cluster_pb2.Cluster.FromString(body)
    base = cluster.name
    cluster.name = name
    if cluster.type == cluster_pb2.Cluster.EDS and not cluster.eds_cluster_config.service_name:
        cluster.eds_cluster_config.service_name = base
    if not cluster.alt_stat_name:
        cluster.alt_stat_name = stat_name(base)
    return _serialize(cluster)


def generation_virtual_host(body: bytes | None, name: str, vip: str, rename: Callable[[str], str]) -> bytes:
    """The VHDS virtual host `name` of `vip` for a proxy whose clusters of `vip` were collected: every route to a
    cluster of the VIP goes to `rename(cluster)` instead (a name that proxy never asked for, so its next request
    asks again on demand). `body`: the VIP's own virtual host (a routing policy's), None: the catch-all's one route.
    Mirrors (another VIP's cluster) stay as they are."""
    if body is None:
        vhost = route_pb2.VirtualHost(name=name, domains=[vip, f"{vip}:*"])
        route = vhost.routes.add()
        route.match.prefix = "/"
        route.route.cluster = rename(vip)
        return _serialize(vhost)
    vhost = route_pb2.VirtualHost.FromString(body)
    for route in vhost.routes:
        action = route.route
        if action.cluster:
            action.cluster = rename(action.cluster)
        for weighted in action.weighted_clusters.clusters:
            weighted.name = rename(weighted.name)
    return _serialize(vhost)


def _skip_on_match() -> matcher_pb2.Matcher.OnMatch:
    on_match = matcher_pb2.Matcher.OnMatch()
    on_match.action.name = "skip"
    on_match.action.typed_config.Pack(skip_action_pb2.SkipFilter(), deterministic=True)
    return on_match


def _guard_template() -> extension_matcher_pb2.ExtensionWithMatcher:
    """The guard without its names: the fault filter (503 for all) and the :authority input of the matcher."""
    guard = extension_matcher_pb2.ExtensionWithMatcher()
    fault = fault_pb2.HTTPFault()
    fault.abort.http_status = GUARD_STATUS
    fault.abort.percentage.numerator = 100
    guard.extension_config.name = FAULT_FILTER
    guard.extension_config.typed_config.Pack(fault, deterministic=True)
    tree_input = guard.xds_matcher.matcher_tree.input
    tree_input.name = "authority"
    authority = http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=":authority")
    tree_input.typed_config.Pack(authority, deterministic=True)
    return guard


_SKIP = _skip_on_match()
_GUARD = _guard_template()


@lru_cache(maxsize=4)
def _known_vips_config(names: tuple[str, ...]) -> bytes:
    guard = extension_matcher_pb2.ExtensionWithMatcher()
    guard.CopyFrom(_GUARD)
    entries = guard.xds_matcher.matcher_tree.exact_match_map.map
    for name in names or (KNOWN_VIPS_PLACEHOLDER,):
        entries[name].CopyFrom(_SKIP)
    config = extension_pb2.TypedExtensionConfig(name=KNOWN_VIPS_FILTER)
    config.typed_config.Pack(guard, deterministic=True)
    return _serialize(config)


def known_vips_config(names: Iterable[str]) -> bytes:
    """The guard's ECDS resource (a TypedExtensionConfig named KNOWN_VIPS_FILTER) for the known `names`.

    An ExtensionWithMatcher around a fault filter that aborts with 503: its matcher looks up :authority (the HCM
    has stripped any port) in an exact map of the names, each mapped to SkipFilter; no `on_no_match`, so any
    other authority runs the fault filter. Matching is case-sensitive, as VIP names are lowercase. The same
    names in any order give the same bytes; no names give a map with KNOWN_VIPS_PLACEHOLDER only (an empty map
    is NACKed, and a NACKed first config leaves the filter without config: every request a 500).
    """
    return _known_vips_config(tuple(sorted(set(names))))


def known_vips_names(body: bytes) -> frozenset[str]:
    """The names a `known_vips_config` body lets through (the placeholder is no name)."""
    config = extension_pb2.TypedExtensionConfig.FromString(body)
    guard = extension_matcher_pb2.ExtensionWithMatcher()
    if not config.typed_config.Unpack(guard):
        raise ValueError(f"{config.name!r} is not an ExtensionWithMatcher but {config.typed_config.type_url}")
    names = frozenset(guard.xds_matcher.matcher_tree.exact_match_map.map.keys())
    return names - {KNOWN_VIPS_PLACEHOLDER}


def intentions_filter_name(svip: str) -> str:
    """The ECDS name (and HTTP filter name) of `svip`'s intentions."""
    return INTENTIONS_FILTER_PREFIX + svip


def intentions_config(svip: str, rbac: Mapping[str, Any]) -> bytes:
    """The ECDS resource of `svip`'s intentions: a TypedExtensionConfig holding the RBAC config `rbac` (the JSON
    form meshactors.intentions.compile makes; a wrong field raises ValueError here, never reaches Envoy)."""
    body = {k: v for k, v in rbac.items() if k != "@type"}
    msg = json_format.ParseDict(body, rbac_pb2.RBAC())
    config = extension_pb2.TypedExtensionConfig(name=intentions_filter_name(svip))
    config.typed_config.Pack(msg, deterministic=True)
    return _serialize(config)


def intentions_rbac(body: bytes) -> dict[str, Any]:
    """The RBAC config of an `intentions_config` body, as JSON (what CSDS-like views and tests read)."""
    config = extension_pb2.TypedExtensionConfig.FromString(body)
    msg = rbac_pb2.RBAC()
    if not config.typed_config.Unpack(msg):
        raise ValueError(f"{config.name!r} is not an RBAC config but {config.typed_config.type_url}")
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)
