"""The traffic policy document of one VIP (or the mesh-wide `*` defaults) as frozen dataclasses.

Every field is optional (None: not set, so a per-VIP document overrides the `*` document field by field) but
`Policy.vip`. Each field carries a `Spec` in its metadata: its camelCase name in the document and the kind of
value it holds; the loader validates against it, `to_document` and `merge` walk it. Durations are whole
milliseconds, percentages numbers 0-100, header matchers sorted (name, exact value) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

MESH_WIDE = "*"

ROUND_ROBIN = "ROUND_ROBIN"
LEAST_REQUEST = "LEAST_REQUEST"
RANDOM = "RANDOM"
RING_HASH = "RING_HASH"
MAGLEV = "MAGLEV"
LB_POLICIES = (ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV)
HASH_LB_POLICIES = (RING_HASH, MAGLEV)

# Envoy's HTTP retry conditions (x-envoy-retry-on) and its gRPC ones (x-envoy-retry-grpc-on, the only ones
# proxyless gRPC honours, gRFC A44).
RETRY_ON_HTTP = (
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
)
RETRY_ON_GRPC = ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")
RETRY_ON = RETRY_ON_HTTP + RETRY_ON_GRPC

# Bounds: a policy travels to every proxy that uses its VIP and every VHDS update rebuilds a route table.
MAX_SPLIT = 16
MAX_ROUTES = 32
MAX_HEADER_MATCHERS = 8
MAX_RETRY_ON = len(RETRY_ON)
MAX_STATUS_CODES = 16
MAX_COUNT = 1_000_000_000
MAX_DURATION_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Spec:
    """How one field looks in the document.

    kind: bool | int | percent | duration | enum | header | token | prefix | vip | version | headers | object | list.
    `lo`/`hi` bound ints, percentages and durations (ms); `choices` an enum; `item` is the dataclass of an
    object, or the Spec of a list's elements; `max_items` bounds lists and header maps; `required` fields must
    be given whenever their object is.
    """

    doc: str
    kind: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    item: Any = None
    max_items: int = 0
    required: bool = False


def spec(doc: str, kind: str, **kwargs: Any) -> Any:
    """A dataclass field defaulting to None (not set) described by a Spec."""
    return field(default=None, metadata={"spec": Spec(doc, kind, **kwargs)})


def spec_of(f: Any) -> Spec:
    return f.metadata["spec"]


def specs(cls: type) -> list[tuple[str, Spec]]:
    """(python name, Spec) of every documented field of a policy dataclass, in declaration order."""
    return [(f.name, spec_of(f)) for f in fields(cls) if "spec" in f.metadata]


class _Node:
    """Marker base of the policy dataclasses. ATOMIC ones are replaced as a whole by a merge, never mixed."""

    __slots__ = ()
    ATOMIC: ClassVar[bool] = False


# --- destination: how instances are chosen ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsistentHash(_Node):
    """The hash key of RING_HASH / MAGLEV: exactly one of a header, a cookie, the source IP, a query parameter."""

    ATOMIC: ClassVar[bool] = True
    header: str | None = spec("header", "header")
    cookie: str | None = spec("cookie", "token")
    source_ip: bool | None = spec("sourceIp", "bool")
    query_parameter: str | None = spec("queryParameter", "token")
    cookie_ttl_ms: int | None = spec("cookieTtl", "duration", lo=1, hi=MAX_DURATION_MS)
    minimum_ring_size: int | None = spec("minimumRingSize", "int", lo=1, hi=8_388_608)


@dataclass(frozen=True, slots=True)
class CircuitBreaker(_Node):
    max_connections: int | None = spec("maxConnections", "int", lo=0, hi=MAX_COUNT)
    max_pending_requests: int | None = spec("maxPendingRequests", "int", lo=0, hi=MAX_COUNT)
    max_requests: int | None = spec("maxRequests", "int", lo=0, hi=MAX_COUNT)
    max_retries: int | None = spec("maxRetries", "int", lo=0, hi=MAX_COUNT)
    retry_budget_percent: float | None = spec("retryBudgetPercent", "percent", lo=0, hi=100)
    retry_budget_min_concurrency: int | None = spec("retryBudgetMinConcurrency", "int", lo=0, hi=MAX_COUNT)


@dataclass(frozen=True, slots=True)
class SuccessRate(_Node):
    """Eject hosts whose success rate is `stdevFactor` standard deviations below the mean."""

    ATOMIC: ClassVar[bool] = True
    minimum_hosts: int | None = spec("minimumHosts", "int", lo=1, hi=10_000)
    request_volume: int | None = spec("requestVolume", "int", lo=1, hi=MAX_COUNT)
    stdev_factor: float | None = spec("stdevFactor", "percent", lo=0.001, hi=100)


@dataclass(frozen=True, slots=True)
class FailurePercentage(_Node):
    """Eject hosts whose failure percentage is at or above `threshold`."""

    ATOMIC: ClassVar[bool] = True
    threshold: int | None = spec("threshold", "int", lo=0, hi=100, required=True)
    minimum_hosts: int | None = spec("minimumHosts", "int", lo=1, hi=10_000)
    request_volume: int | None = spec("requestVolume", "int", lo=1, hi=MAX_COUNT)


@dataclass(frozen=True, slots=True)
class OutlierDetection(_Node):
    """Only the detectors named here enforce (Envoy's default success-rate ejection is turned off otherwise)."""

    consecutive_5xx_errors: int | None = spec("consecutive5xxErrors", "int", lo=1, hi=MAX_COUNT)
    consecutive_gateway_errors: int | None = spec("consecutiveGatewayErrors", "int", lo=1, hi=MAX_COUNT)
    interval_ms: int | None = spec("interval", "duration", lo=1, hi=MAX_DURATION_MS)
    base_ejection_time_ms: int | None = spec("baseEjectionTime", "duration", lo=1, hi=MAX_DURATION_MS)
    max_ejection_time_ms: int | None = spec("maxEjectionTime", "duration", lo=1, hi=MAX_DURATION_MS)
    max_ejection_percent: int | None = spec("maxEjectionPercent", "int", lo=0, hi=100)
    success_rate: SuccessRate | None = spec("successRate", "object", item=SuccessRate)
    failure_percentage: FailurePercentage | None = spec("failurePercentage", "object", item=FailurePercentage)


@dataclass(frozen=True, slots=True)
class AdaptiveConcurrency(_Node):
    """Envoy's gradient controller; present means enabled unless `enabled: false`."""

    enabled: bool | None = spec("enabled", "bool")
    min_rtt_interval_ms: int | None = spec("minRttInterval", "duration", lo=1, hi=MAX_DURATION_MS)
    max_concurrency_limit: int | None = spec("maxConcurrencyLimit", "int", lo=1, hi=MAX_COUNT)
    concurrency_update_interval_ms: int | None = spec("concurrencyUpdateInterval", "duration", lo=1, hi=3_600_000)
    sample_percentile: float | None = spec("samplePercentile", "percent", lo=0, hi=100)
    min_concurrency: int | None = spec("minConcurrency", "int", lo=1, hi=MAX_COUNT)


@dataclass(frozen=True, slots=True)
class Destination(_Node):
    load_balancer: str | None = spec("loadBalancer", "enum", choices=LB_POLICIES)
    consistent_hash: ConsistentHash | None = spec("consistentHash", "object", item=ConsistentHash)
    locality_failover: bool | None = spec("localityFailover", "bool")
    connect_timeout_ms: int | None = spec("connectTimeout", "duration", lo=1, hi=3_600_000)
    circuit_breaker: CircuitBreaker | None = spec("circuitBreaker", "object", item=CircuitBreaker)
    outlier_detection: OutlierDetection | None = spec("outlierDetection", "object", item=OutlierDetection)
    adaptive_concurrency: AdaptiveConcurrency | None = spec("adaptiveConcurrency", "object", item=AdaptiveConcurrency)


# --- routing: how requests are handled --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeightedVersion(_Node):
    ATOMIC: ClassVar[bool] = True
    version: str | None = spec("version", "version", required=True)
    weight: int | None = spec("weight", "int", lo=0, hi=100, required=True)


@dataclass(frozen=True, slots=True)
class RouteMatch(_Node):
    """All given conditions must hold: every header equals its value, the path starts with `prefix`."""

    ATOMIC: ClassVar[bool] = True
    headers: tuple[tuple[str, str], ...] | None = spec("headers", "headers", max_items=MAX_HEADER_MATCHERS)
    prefix: str | None = spec("prefix", "prefix")


@dataclass(frozen=True, slots=True)
class Route(_Node):
    ATOMIC: ClassVar[bool] = True
    match: RouteMatch | None = spec("match", "object", item=RouteMatch, required=True)
    version: str | None = spec("version", "version", required=True)


@dataclass(frozen=True, slots=True)
class Mirror(_Node):
    """Copy `percent` of the requests (default 100) to another VIP; its answers are dropped."""

    ATOMIC: ClassVar[bool] = True
    vip: str | None = spec("vip", "vip", required=True)
    percent: float | None = spec("percent", "percent", lo=0, hi=100)


@dataclass(frozen=True, slots=True)
class Backoff(_Node):
    ATOMIC: ClassVar[bool] = True
    base_interval_ms: int | None = spec("baseInterval", "duration", lo=1, hi=3_600_000, required=True)
    max_interval_ms: int | None = spec("maxInterval", "duration", lo=1, hi=3_600_000)


@dataclass(frozen=True, slots=True)
class Retries(_Node):
    attempts: int | None = spec("attempts", "int", lo=0, hi=10)
    per_try_timeout_ms: int | None = spec("perTryTimeout", "duration", lo=1, hi=MAX_DURATION_MS)
    retry_on: tuple[str, ...] | None = spec(
        "retryOn", "list", item=Spec("retryOn", "enum", choices=RETRY_ON), max_items=MAX_RETRY_ON
    )
    retriable_status_codes: tuple[int, ...] | None = spec(
        "retriableStatusCodes",
        "list",
        item=Spec("retriableStatusCodes", "int", lo=100, hi=599),
        max_items=MAX_STATUS_CODES,
    )
    backoff: Backoff | None = spec("backoff", "object", item=Backoff)


@dataclass(frozen=True, slots=True)
class Hedging(_Node):
    on_per_try_timeout: bool | None = spec("onPerTryTimeout", "bool")


@dataclass(frozen=True, slots=True)
class FaultDelay(_Node):
    ATOMIC: ClassVar[bool] = True
    fixed_ms: int | None = spec("fixed", "duration", lo=1, hi=3_600_000, required=True)
    percent: float | None = spec("percent", "percent", lo=0, hi=100)


@dataclass(frozen=True, slots=True)
class FaultAbort(_Node):
    """Answer with `httpStatus` (Envoy; gRPC maps it to a status) or `grpcStatus` instead of forwarding."""

    ATOMIC: ClassVar[bool] = True
    http_status: int | None = spec("httpStatus", "int", lo=200, hi=599)
    grpc_status: int | None = spec("grpcStatus", "int", lo=0, hi=16)
    percent: float | None = spec("percent", "percent", lo=0, hi=100)


@dataclass(frozen=True, slots=True)
class Faults(_Node):
    """Injected into requests that match every header of `headers` (all requests without it)."""

    delay: FaultDelay | None = spec("delay", "object", item=FaultDelay)
    abort: FaultAbort | None = spec("abort", "object", item=FaultAbort)
    headers: tuple[tuple[str, str], ...] | None = spec("headers", "headers", max_items=MAX_HEADER_MATCHERS)
    max_active: int | None = spec("maxActive", "int", lo=1, hi=MAX_COUNT)


@dataclass(frozen=True, slots=True)
class Routing(_Node):
    split: tuple[WeightedVersion, ...] | None = spec(
        "split", "list", item=Spec("split", "object", item=WeightedVersion), max_items=MAX_SPLIT
    )
    routes: tuple[Route, ...] | None = spec(
        "routes", "list", item=Spec("routes", "object", item=Route), max_items=MAX_ROUTES
    )
    mirror: Mirror | None = spec("mirror", "object", item=Mirror)
    timeout_ms: int | None = spec("timeout", "duration", lo=1, hi=MAX_DURATION_MS)
    retries: Retries | None = spec("retries", "object", item=Retries)
    hedging: Hedging | None = spec("hedging", "object", item=Hedging)
    faults: Faults | None = spec("faults", "object", item=Faults)


@dataclass(frozen=True, slots=True)
class Policy(_Node):
    """One policy document: `vip` names the VIP it applies to, or `*` for the mesh-wide defaults."""

    vip: str = field(default=MESH_WIDE, metadata={"spec": Spec("vip", "vip", required=True)})
    destination: Destination | None = spec("destination", "object", item=Destination)
    routing: Routing | None = spec("routing", "object", item=Routing)

    @property
    def mesh_wide(self) -> bool:
        return self.vip == MESH_WIDE

    def effective_lb(self) -> str:
        """The load balancer the compiled clusters use: RING_HASH when only a hash key is given."""
        dest = self.destination
        if dest is None:
            return ROUND_ROBIN
        if dest.load_balancer is not None:
            return dest.load_balancer
        return RING_HASH if dest.consistent_hash is not None else ROUND_ROBIN

    def versions(self) -> tuple[str, ...]:
        """The version labels the routing sends traffic to (split weights > 0, then routes), each once."""
        routing = self.routing
        if routing is None:
            return ()
        named = [w.version for w in routing.split or () if w.weight and w.version]
        named += [r.version for r in routing.routes or () if r.version]
        return tuple(dict.fromkeys(v for v in named if v is not None))


def is_empty(node: _Node | None) -> bool:
    """True when nothing of `node` is set (a Policy counts only its destination and routing)."""
    if node is None:
        return True
    return all(getattr(node, name) is None for name, _ in specs(type(node)) if name != "vip")


def version_cluster(vip: str, version: str) -> str:
    """The name of the EDS cluster (and its ClusterLoadAssignment) holding `vip`'s instances of `version`.

    `~` is not allowed in a VIP name nor in a version label, so the name cannot collide with a VIP.
    """
    return f"{vip}~{version}"


def format_percent(value: float) -> str:
    """10.0 -> "10", 0.5 -> "0.5" (for messages)."""
    return str(int(value)) if float(value).is_integer() else str(value)
