"""Compiles a VIP's effective traffic policy to xDS resources: the Envoy variant, and the gRPC variant holding
only what proxyless gRPC honours (design.md section 9), with every field it leaves out reported, never sent.

Pure: a merged `Policy` (meshactors.policy.load.merge) in, serialized resources out. Where each piece goes:

- Cluster `vip` (and `vip~<version>` for every version the routing names): the EDS cluster of
  `resources.eds_cluster_message` plus lb_policy, ring hash / maglev config, circuit_breakers (retry budget),
  outlier_detection, and for Envoy the hash keys in HttpProtocolOptions.hash_policy (so a destination-only
  policy needs no VirtualHost and keeps the plain `cluster_header` path).
- VirtualHost `meshactors_outbound/<vip>` (VHDS), Envoy only: routes (header / prefix matches first, then the
  split or the plain cluster), timeout, retry_policy, hedge_policy, request_mirror_policies, and per-VIP
  typed_per_filter_config for the fault filter and for adaptive concurrency through the filter_chain filter.
- Listener `vip` (gRPC api_listener), gRPC only: the same routes inline, hash_policy on the route, the
  timeout as max_stream_duration, and the VIP's HTTPFault as a fault filter before the router (gRFC A33).
- ClusterLoadAssignments (`load_assignments`): per version, and with priorities per caller zone for locality
  failover; they depend on endpoints, not on the client kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.config.route.v3 import route_pb2 as route_config_pb2
from envoy.extensions.filters.http.adaptive_concurrency.v3 import adaptive_concurrency_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, message, struct_pb2
from xds.type.v3 import typed_struct_pb2

from meshactors.envoy.bootstrap import OUTBOUND_ROUTE_CONFIG, outbound_route_config
from meshactors.envoy.resources import (
    FAULT_FILTER,
    FILTER_CHAIN_FILTER,
    HTTP_PROTOCOL_OPTIONS,
    Endpoint,
    cluster_load_assignment,
    eds_cluster_message,
    grpc_api_listener,
)
from meshactors.policy.model import (
    MAGLEV,
    RETRY_ON_GRPC,
    RING_HASH,
    ROUND_ROBIN,
    CircuitBreaker,
    Destination,
    Faults,
    OutlierDetection,
    Policy,
    Retries,
    Routing,
    version_cluster,
)
from meshactors.resources.snapshot import cluster_refs, eds_refs
from meshactors.resources.types import (
    CLUSTER,
    ENDPOINT,
    ENVOY_KIND,
    GRPC_KIND,
    LISTENER,
    ROUTE,
    VIRTUAL_HOST,
    VersionedResource,
)

# VHDS names a virtual host `<route_config>/<host>`; the generic bootstrap's outbound route config is the one.
VHDS_ROUTE_CONFIG = OUTBOUND_ROUTE_CONFIG
ADAPTIVE_CONCURRENCY_FILTER = "envoy.filters.http.adaptive_concurrency"
TYPE_PREFIX = "type.googleapis.com/"
# The filter_chain filter is in the Envoy 1.40 binary but not in xds-protos 1.85: sent as a TypedStruct.
FILTER_CHAIN_PER_ROUTE_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.filter_chain.v3.FilterChainConfigPerRoute"

# What a compiled field defaults to when the document leaves it out but Envoy needs a value.
DEFAULT_CONNECT_TIMEOUT_MS = 1000
DEFAULT_RETRY_ON = ("5xx", "reset", "connect-failure", "refused-stream")
DEFAULT_GRPC_RETRY_ON = ("unavailable",)
DEFAULT_CONCURRENCY_UPDATE_INTERVAL_MS = 100
DEFAULT_MIN_RTT_INTERVAL_MS = 60_000
GRPC_MAX_RETRIES = 4  # grpcio caps an RPC at 5 attempts (gRFC A6)
ENFORCE = 100

GRPC_LB = (ROUND_ROBIN, RING_HASH)


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A policy field a client kind cannot honour: not compiled into its variant (it would NACK or mislead)."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Compiled:
    """A VIP's policy resources for one client kind (`variant` == kind) and what that kind leaves out."""

    vip: str
    kind: str
    resources: tuple[VersionedResource, ...]
    left_out: tuple[LeftOut, ...] = ()

    def get(self, type_url: str, name: str) -> VersionedResource | None:
        return next((r for r in self.resources if r.type_url == type_url and r.name == name), None)

    def names(self, type_url: str) -> list[str]:
        return [r.name for r in self.resources if r.type_url == type_url]


def virtual_host_name(vip: str) -> str:
    """The VHDS resource name Envoy asks for when a request's Host is `vip`."""
    return f"{VHDS_ROUTE_CONFIG}/{vip}"


# A VHDS name no VIP has ("-" is not a valid VIP name): what a first VHDS answer with nothing else removes, so that
# Envoy's VHDS subscription (a watch on the route table's namespace) ends its initial fetch at once
UNSERVED_VIRTUAL_HOST = virtual_host_name("-")


def needs_virtual_host(policy: Policy) -> bool:
    """True when the policy has route-level knobs (routing, faults, adaptive concurrency): Envoy then needs the
    VIP's VirtualHost over VHDS; otherwise the plain `cluster_header` path with the policy's Cluster is enough."""
    routing = policy.routing
    if routing is not None and any(getattr(routing, f) is not None for f in routing.__dataclass_fields__):
        return True
    return _adaptive_enabled(policy.destination)


# --- small pieces -----------------------------------------------------------------------------------------


def _serialize(msg: message.Message) -> bytes:
    return msg.SerializeToString(deterministic=True)


def _pack(msg: message.Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, deterministic=True)
    return out


def _duration(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _fraction(percent: float | None) -> percent_pb2.FractionalPercent:
    """A percentage as a FractionalPercent: per hundred when whole, else per million (0.0001 % steps)."""
    value = 100.0 if percent is None else float(percent)
    if value.is_integer():
        return percent_pb2.FractionalPercent(numerator=int(value), denominator=percent_pb2.FractionalPercent.HUNDRED)
    return percent_pb2.FractionalPercent(
        numerator=round(value * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _header_matchers(headers: Iterable[tuple[str, str]]) -> list[route_pb2.HeaderMatcher]:
    return [route_pb2.HeaderMatcher(name=n, string_match=string_pb2.StringMatcher(exact=v)) for n, v in headers]


def _adaptive_enabled(dest: Destination | None) -> bool:
    return dest is not None and dest.adaptive_concurrency is not None and dest.adaptive_concurrency.enabled is not False


# --- clusters ---------------------------------------------------------------------------------------------


def _cluster_lb(policy: Policy, kind: str, left: list[LeftOut]) -> str:
    lb = policy.effective_lb()
    if kind != GRPC_KIND or lb in GRPC_LB:
        return lb
    dest = policy.destination
    field = "destination.loadBalancer" if dest is not None and dest.load_balancer is not None else "destination"
    if lb == MAGLEV:
        left.append(LeftOut(field, "gRPC has no MAGLEV (NACKed): its variant uses RING_HASH on the same key"))
        return RING_HASH
    left.append(LeftOut(field, f"gRPC has no {lb} (NACKed or unimplemented): its variant uses ROUND_ROBIN"))
    return ROUND_ROBIN


def _grpc_hash_key_ok(policy: Policy, left: list[LeftOut]) -> bool:
    """gRPC hashes only on a header (route hash_policy); other keys fall back to ROUND_ROBIN."""
    ch = policy.destination.consistent_hash if policy.destination is not None else None
    if ch is None or ch.header is not None:
        return True
    key = "cookie" if ch.cookie is not None else "sourceIp" if ch.source_ip else "queryParameter"
    left.append(
        LeftOut(f"destination.consistentHash.{key}", "gRPC hashes only on a header: its variant uses ROUND_ROBIN")
    )
    return False


def _hash_policy(policy: Policy) -> route_pb2.RouteAction.HashPolicy | None:
    ch = policy.destination.consistent_hash if policy.destination is not None else None
    if ch is None:
        return None
    hp = route_pb2.RouteAction.HashPolicy()
    if ch.header is not None:
        hp.header.header_name = ch.header
    elif ch.cookie is not None:
        hp.cookie.name = ch.cookie
        if ch.cookie_ttl_ms is not None:
            hp.cookie.ttl.CopyFrom(_duration(ch.cookie_ttl_ms))
    elif ch.source_ip:
        hp.connection_properties.source_ip = True
    elif ch.query_parameter is not None:
        hp.query_parameter.name = ch.query_parameter
    return hp


def _circuit_breakers(cb: CircuitBreaker, kind: str, left: list[LeftOut]) -> circuit_breaker_pb2.CircuitBreakers:
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(priority=base_pb2.DEFAULT)
    if cb.max_requests is not None:
        thresholds.max_requests.value = cb.max_requests
    envoy_only = {
        "maxConnections": cb.max_connections,
        "maxPendingRequests": cb.max_pending_requests,
        "maxRetries": cb.max_retries,
        "retryBudgetPercent": cb.retry_budget_percent,
        "retryBudgetMinConcurrency": cb.retry_budget_min_concurrency,
    }
    if kind == GRPC_KIND:
        for doc, value in envoy_only.items():
            if value is not None:
                left.append(LeftOut(f"destination.circuitBreaker.{doc}", "gRPC honours only maxRequests"))
    else:
        if cb.max_connections is not None:
            thresholds.max_connections.value = cb.max_connections
        if cb.max_pending_requests is not None:
            thresholds.max_pending_requests.value = cb.max_pending_requests
        if cb.max_retries is not None:
            thresholds.max_retries.value = cb.max_retries
        if cb.retry_budget_percent is not None or cb.retry_budget_min_concurrency is not None:
            budget = thresholds.retry_budget
            budget.SetInParent()
            if cb.retry_budget_percent is not None:
                budget.budget_percent.value = cb.retry_budget_percent
            if cb.retry_budget_min_concurrency is not None:
                budget.min_retry_concurrency.value = cb.retry_budget_min_concurrency
    out = circuit_breaker_pb2.CircuitBreakers()
    if thresholds.ListFields() != [(thresholds.DESCRIPTOR.fields_by_name["priority"], base_pb2.DEFAULT)]:
        out.thresholds.append(thresholds)
    return out


def _outlier_detection(
    od: OutlierDetection, kind: str, left: list[LeftOut]
) -> outlier_detection_pb2.OutlierDetection | None:
    """Only the detectors the document names enforce: Envoy's default success-rate ejection is switched off."""
    out = outlier_detection_pb2.OutlierDetection()
    detectors = 0
    if kind == GRPC_KIND:
        for doc, value in (
            ("consecutive5xxErrors", od.consecutive_5xx_errors),
            ("consecutiveGatewayErrors", od.consecutive_gateway_errors),
        ):
            if value is not None:
                left.append(
                    LeftOut(
                        f"destination.outlierDetection.{doc}", "gRPC ejects by successRate or failurePercentage only"
                    )
                )
    else:
        if od.consecutive_5xx_errors is not None:
            out.consecutive_5xx.value = od.consecutive_5xx_errors
            out.enforcing_consecutive_5xx.value = ENFORCE
            detectors += 1
        else:
            out.enforcing_consecutive_5xx.value = 0
        if od.consecutive_gateway_errors is not None:
            out.consecutive_gateway_failure.value = od.consecutive_gateway_errors
            out.enforcing_consecutive_gateway_failure.value = ENFORCE
            detectors += 1
    sr = od.success_rate
    if sr is not None:
        out.enforcing_success_rate.value = ENFORCE
        if sr.minimum_hosts is not None:
            out.success_rate_minimum_hosts.value = sr.minimum_hosts
        if sr.request_volume is not None:
            out.success_rate_request_volume.value = sr.request_volume
        if sr.stdev_factor is not None:
            out.success_rate_stdev_factor.value = round(sr.stdev_factor * 1000)
        detectors += 1
    else:
        out.enforcing_success_rate.value = 0
    fp = od.failure_percentage
    if fp is not None:
        out.failure_percentage_threshold.value = int(fp.threshold or 0)
        out.enforcing_failure_percentage.value = ENFORCE
        if fp.minimum_hosts is not None:
            out.failure_percentage_minimum_hosts.value = fp.minimum_hosts
        if fp.request_volume is not None:
            out.failure_percentage_request_volume.value = fp.request_volume
        detectors += 1
    if detectors == 0:
        if kind == GRPC_KIND:
            left.append(LeftOut("destination.outlierDetection", "no detector gRPC implements is set: left out whole"))
        return None
    if od.interval_ms is not None:
        out.interval.CopyFrom(_duration(od.interval_ms))
    if od.base_ejection_time_ms is not None:
        out.base_ejection_time.CopyFrom(_duration(od.base_ejection_time_ms))
    if od.max_ejection_time_ms is not None:
        out.max_ejection_time.CopyFrom(_duration(od.max_ejection_time_ms))
    if od.max_ejection_percent is not None:
        out.max_ejection_percent.value = od.max_ejection_percent
    return out


def policy_cluster(name: str, policy: Policy, kind: str = ENVOY_KIND) -> tuple[bytes, tuple[LeftOut, ...]]:
    """The EDS cluster `name` (the VIP's or one of its version clusters) carrying the policy's destination half."""
    left: list[LeftOut] = []
    dest = policy.destination or Destination()
    lb = _cluster_lb(policy, kind, left)
    if kind == GRPC_KIND and lb == RING_HASH and not _grpc_hash_key_ok(policy, left):
        lb = ROUND_ROBIN
    cluster = eds_cluster_message(
        name, connect_timeout_ms=dest.connect_timeout_ms or DEFAULT_CONNECT_TIMEOUT_MS, lb_policy=lb
    )
    ch = dest.consistent_hash
    if lb == RING_HASH and ch is not None and ch.minimum_ring_size is not None:
        cluster.ring_hash_lb_config.minimum_ring_size.value = ch.minimum_ring_size
    elif lb == RING_HASH:
        cluster.ring_hash_lb_config.SetInParent()
    elif lb == MAGLEV:
        cluster.maglev_lb_config.SetInParent()
        if ch is not None and ch.minimum_ring_size is not None:
            left.append(LeftOut("destination.consistentHash.minimumRingSize", "MAGLEV has a fixed table size"))
    if kind != GRPC_KIND and lb in (RING_HASH, MAGLEV):
        hp = _hash_policy(policy)
        if hp is not None:
            options = http_protocol_options_pb2.HttpProtocolOptions()
            options.explicit_http_config.http_protocol_options.SetInParent()
            options.hash_policy.append(hp)
            cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(_pack(options))
    if dest.circuit_breaker is not None:
        breakers = _circuit_breakers(dest.circuit_breaker, kind, left)
        if breakers.thresholds:
            cluster.circuit_breakers.CopyFrom(breakers)
    if dest.outlier_detection is not None:
        od = _outlier_detection(dest.outlier_detection, kind, left)
        if od is not None:
            cluster.outlier_detection.CopyFrom(od)
    if kind == GRPC_KIND and _adaptive_enabled(dest):
        left.append(LeftOut("destination.adaptiveConcurrency", "gRPC has no adaptive concurrency limit"))
    return _serialize(cluster), tuple(left)


# --- routes -----------------------------------------------------------------------------------------------


def _retry_policy(retries: Retries, kind: str, left: list[LeftOut]) -> route_pb2.RetryPolicy | None:
    if retries.attempts == 0:
        return None
    policy = route_pb2.RetryPolicy()
    if kind == GRPC_KIND:
        given = retries.retry_on or DEFAULT_GRPC_RETRY_ON
        kept = [c for c in given if c in RETRY_ON_GRPC]
        dropped = [c for c in given if c not in RETRY_ON_GRPC]
        if dropped:
            left.append(
                LeftOut(
                    "routing.retries.retryOn", f"gRPC retries on gRPC status codes only; left out {', '.join(dropped)}"
                )
            )
        if not kept:
            left.append(LeftOut("routing.retries", "no retry condition gRPC implements: no retries for gRPC"))
            return None
        for doc, value in (
            ("perTryTimeout", retries.per_try_timeout_ms),
            ("retriableStatusCodes", retries.retriable_status_codes),
        ):
            if value is not None:
                left.append(LeftOut(f"routing.retries.{doc}", "gRPC does not implement it (gRFC A44)"))
        policy.retry_on = ",".join(kept)
        if retries.attempts is not None:
            if retries.attempts > GRPC_MAX_RETRIES:
                left.append(
                    LeftOut(
                        "routing.retries.attempts", f"gRPC caps retries at {GRPC_MAX_RETRIES}: its variant has that"
                    )
                )
            policy.num_retries.value = min(retries.attempts, GRPC_MAX_RETRIES)
    else:
        conditions = list(retries.retry_on or DEFAULT_RETRY_ON)
        if retries.retriable_status_codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        policy.retry_on = ",".join(conditions)
        if retries.attempts is not None:
            policy.num_retries.value = retries.attempts
        if retries.per_try_timeout_ms is not None:
            policy.per_try_timeout.CopyFrom(_duration(retries.per_try_timeout_ms))
        policy.retriable_status_codes.extend(retries.retriable_status_codes or ())
    if retries.backoff is not None:
        policy.retry_back_off.base_interval.CopyFrom(_duration(int(retries.backoff.base_interval_ms or 0)))
        if retries.backoff.max_interval_ms is not None:
            policy.retry_back_off.max_interval.CopyFrom(_duration(retries.backoff.max_interval_ms))
    return policy


def _fill_action(action: route_pb2.RouteAction, policy: Policy, kind: str, left: list[LeftOut]) -> None:
    """What every route of the VIP shares: timeout, retries, hedging, mirroring, the hash key (gRPC)."""
    routing = policy.routing or Routing()
    if routing.timeout_ms is not None:
        if kind == GRPC_KIND:
            action.max_stream_duration.max_stream_duration.CopyFrom(_duration(routing.timeout_ms))
        else:
            action.timeout.CopyFrom(_duration(routing.timeout_ms))
    if routing.retries is not None:
        retry = _retry_policy(routing.retries, kind, left)
        if retry is not None:
            action.retry_policy.CopyFrom(retry)
    if routing.hedging is not None and routing.hedging.on_per_try_timeout is not None:
        if kind == GRPC_KIND:
            left.append(LeftOut("routing.hedging", "gRPC has no hedging on per-try timeouts"))
        else:
            action.hedge_policy.hedge_on_per_try_timeout = routing.hedging.on_per_try_timeout
    if routing.mirror is not None:
        if kind == GRPC_KIND:
            left.append(LeftOut("routing.mirror", "gRPC does not mirror requests"))
        else:
            mirror = action.request_mirror_policies.add(cluster=routing.mirror.vip)
            if routing.mirror.percent is not None and routing.mirror.percent < 100:
                mirror.runtime_fraction.default_value.CopyFrom(_fraction(routing.mirror.percent))
    if kind == GRPC_KIND and policy.effective_lb() in (RING_HASH, MAGLEV):
        hp = _hash_policy(policy)
        if hp is not None and hp.HasField("header"):
            action.hash_policy.append(hp)


def _split(policy: Policy) -> list[tuple[str, int]]:
    routing = policy.routing
    return [(str(w.version), int(w.weight or 0)) for w in (routing.split or ()) if w.weight] if routing else []


def _route_cluster(action: route_pb2.RouteAction, vip: str, split: list[tuple[str, int]]) -> None:
    if len(split) > 1:
        for version, weight in split:
            action.weighted_clusters.clusters.add(name=version_cluster(vip, version)).weight.value = weight
    elif split:
        action.cluster = version_cluster(vip, split[0][0])
    else:
        action.cluster = vip


def _virtual_host(policy: Policy, kind: str, left: list[LeftOut]) -> route_pb2.VirtualHost:
    vip = policy.vip
    grpc = kind == GRPC_KIND
    routing = policy.routing or Routing()
    if grpc:
        vhost = route_pb2.VirtualHost(name=vip, domains=["*"])  # the target may be `vip:port`
    else:
        # named like its VHDS resource: Envoy keys pushed virtual hosts by name and removes them by resource name
        vhost = route_pb2.VirtualHost(name=virtual_host_name(vip), domains=[vip, f"{vip}:*"])
    default_prefix = "" if grpc else "/"
    for r in routing.routes or ():
        route = vhost.routes.add()
        match = r.match
        route.match.prefix = (match.prefix if match is not None and match.prefix else None) or default_prefix
        route.match.headers.extend(_header_matchers(match.headers or () if match is not None else ()))
        route.route.cluster = version_cluster(vip, str(r.version))
        _fill_action(route.route, policy, kind, [])
    route = vhost.routes.add()
    route.match.prefix = default_prefix
    _route_cluster(route.route, vip, _split(policy))
    _fill_action(route.route, policy, kind, left)  # reported once, for the default route
    if not grpc:
        if routing.faults is not None:
            vhost.typed_per_filter_config[FAULT_FILTER].CopyFrom(_pack(_http_fault(routing.faults)))
        if _adaptive_enabled(policy.destination):
            vhost.typed_per_filter_config[FILTER_CHAIN_FILTER].CopyFrom(_adaptive_per_route(policy.destination))
    return vhost


def _http_fault(faults: Faults) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    if faults.delay is not None:
        out.delay.fixed_delay.CopyFrom(_duration(int(faults.delay.fixed_ms or 0)))
        out.delay.percentage.CopyFrom(_fraction(faults.delay.percent))
    if faults.abort is not None:
        if faults.abort.http_status is not None:
            out.abort.http_status = faults.abort.http_status
        else:
            out.abort.grpc_status = int(faults.abort.grpc_status or 0)
        out.abort.percentage.CopyFrom(_fraction(faults.abort.percent))
    out.headers.extend(_header_matchers(faults.headers or ()))
    if faults.max_active is not None:
        out.max_active_faults.value = faults.max_active
    return out


def _adaptive_concurrency(dest: Destination) -> adaptive_concurrency_pb2.AdaptiveConcurrency:
    ac = dest.adaptive_concurrency
    assert ac is not None
    gradient = adaptive_concurrency_pb2.GradientControllerConfig()
    if ac.sample_percentile is not None:
        gradient.sample_aggregate_percentile.value = ac.sample_percentile
    limit = gradient.concurrency_limit_params
    if ac.max_concurrency_limit is not None:
        limit.max_concurrency_limit.value = ac.max_concurrency_limit
    limit.concurrency_update_interval.CopyFrom(
        _duration(ac.concurrency_update_interval_ms or DEFAULT_CONCURRENCY_UPDATE_INTERVAL_MS)
    )
    rtt = gradient.min_rtt_calc_params
    rtt.interval.CopyFrom(_duration(ac.min_rtt_interval_ms or DEFAULT_MIN_RTT_INTERVAL_MS))
    if ac.min_concurrency is not None:
        rtt.min_concurrency.value = ac.min_concurrency
    return adaptive_concurrency_pb2.AdaptiveConcurrency(gradient_controller_config=gradient)


def _adaptive_per_route(dest: Destination | None) -> any_pb2.Any:
    """FilterChainConfigPerRoute{filter_chain{filters[adaptive_concurrency]}} as a TypedStruct (design.md 9 (a))."""
    assert dest is not None
    inner = extension_pb2.TypedExtensionConfig(
        name=ADAPTIVE_CONCURRENCY_FILTER, typed_config=_pack(_adaptive_concurrency(dest))
    )
    value = struct_pb2.Struct()
    value.update({"filter_chain": {"filters": [json_format.MessageToDict(inner, preserving_proto_field_name=True)]}})
    return _pack(typed_struct_pb2.TypedStruct(type_url=FILTER_CHAIN_PER_ROUTE_TYPE, value=value))


# --- the two variants -------------------------------------------------------------------------------------


def _clusters(policy: Policy, kind: str, left: list[LeftOut]) -> list[VersionedResource]:
    out = []
    for i, name in enumerate((policy.vip, *(version_cluster(policy.vip, v) for v in policy.versions()))):
        body, cluster_left = policy_cluster(name, policy, kind)
        if i == 0:
            left.extend(cluster_left)  # version clusters carry the same policy: report once
        out.append(VersionedResource.of(CLUSTER, name, body, variant=kind, refs=eds_refs(name)))
    return out


def _route_refs(policy: Policy, kind: str) -> tuple[tuple[str, str], ...]:
    names = [policy.vip, *(version_cluster(policy.vip, v) for v in policy.versions())]
    routing = policy.routing
    if kind != GRPC_KIND and routing is not None and routing.mirror is not None:
        names.append(str(routing.mirror.vip))  # another VIP's cluster: must be pushed before this vhost
    return cluster_refs(*names)


def compile_envoy(policy: Policy) -> Compiled:
    """The Envoy variant of a VIP's merged policy: its Cluster(s) and, when needed, its VHDS VirtualHost."""
    if policy.mesh_wide:
        raise ValueError("compile the merged policy of a VIP, not the '*' document")
    left: list[LeftOut] = []
    resources = _clusters(policy, ENVOY_KIND, left)
    if needs_virtual_host(policy):
        vhost = _virtual_host(policy, ENVOY_KIND, left)
        resources.append(
            VersionedResource.of(
                VIRTUAL_HOST,
                virtual_host_name(policy.vip),
                _serialize(vhost),
                variant=ENVOY_KIND,
                refs=_route_refs(policy, ENVOY_KIND),
            )
        )
    return Compiled(policy.vip, ENVOY_KIND, tuple(resources), tuple(left))


def compile_grpc(policy: Policy, listener_names: Iterable[str] = ()) -> Compiled:
    """The proxyless gRPC variant: Cluster(s) with the honoured subset, and the api Listener(s) with routes.

    `listener_names` are the names clients asked for (`vip`, `vip:port`); default just `vip`. Every field
    gRPC cannot honour is in `left_out`, never in the resources (one bad value NACKs a whole SotW response).
    """
    if policy.mesh_wide:
        raise ValueError("compile the merged policy of a VIP, not the '*' document")
    left: list[LeftOut] = []
    resources = _clusters(policy, GRPC_KIND, left)
    vhost = _serialize(_virtual_host(policy, GRPC_KIND, left))
    routing = policy.routing
    fault = _serialize(_http_fault(routing.faults)) if routing is not None and routing.faults is not None else None
    refs = _route_refs(policy, GRPC_KIND)
    for name in tuple(listener_names) or (policy.vip,):
        body = grpc_api_listener(name, policy.vip, virtual_host=vhost, fault=fault)
        resources.append(VersionedResource.of(LISTENER, name, body, variant=GRPC_KIND, refs=refs))
    return Compiled(policy.vip, GRPC_KIND, tuple(resources), tuple(dict.fromkeys(left)))


# --- endpoints --------------------------------------------------------------------------------------------


def endpoints_with_version(endpoints: Iterable[Endpoint], version: str) -> tuple[Endpoint, ...]:
    """The endpoints whose instance carries version label `version` (the members of cluster `vip~version`)."""
    return tuple(ep for ep in endpoints if ep.version_label == version)


def load_assignments(
    policy: Policy, endpoints: Iterable[Endpoint], caller_zone: str | None = None
) -> tuple[VersionedResource, ...]:
    """The ClusterLoadAssignments of the VIP's clusters: `vip` with every endpoint, `vip~v` with version v's.

    With `destination.localityFailover` and a `caller_zone` (the proxy's `node.locality.zone`) the caller's zone
    is priority 0 and the others priority 1; such a CLA is per caller zone, not per client kind.
    """
    dest = policy.destination
    prefer = caller_zone if dest is not None and dest.locality_failover else None
    all_endpoints = tuple(endpoints)
    out = [
        VersionedResource.of(
            ENDPOINT, policy.vip, cluster_load_assignment(policy.vip, all_endpoints, prefer_zone=prefer)
        )
    ]
    for version in policy.versions():
        name = version_cluster(policy.vip, version)
        members = endpoints_with_version(all_endpoints, version)
        out.append(VersionedResource.of(ENDPOINT, name, cluster_load_assignment(name, members, prefer_zone=prefer)))
    return tuple(out)


# --- the generic bootstrap's route table -----------------------------------------------------------------


def outbound_route_configuration() -> VersionedResource:
    """The RouteConfiguration every Envoy sidecar's outbound listener asks for over RDS: the bootstrap's one
    definition (catch-all `cluster_header` route plus VHDS), the same bytes for every proxy."""
    config = json_format.ParseDict(outbound_route_config(), route_config_pb2.RouteConfiguration())
    return VersionedResource.of(ROUTE, OUTBOUND_ROUTE_CONFIG, _serialize(config))


__all__ = [
    "ADAPTIVE_CONCURRENCY_FILTER",
    "FILTER_CHAIN_FILTER",
    "VHDS_ROUTE_CONFIG",
    "Compiled",
    "LeftOut",
    "compile_envoy",
    "compile_grpc",
    "endpoints_with_version",
    "load_assignments",
    "needs_virtual_host",
    "outbound_route_configuration",
    "policy_cluster",
    "virtual_host_name",
]
