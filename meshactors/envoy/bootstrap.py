"""Bootstrap generators: the one generic Envoy sidecar bootstrap and gRPC's xDS bootstrap, as plain dicts.

Input is the control plane's xDS addresses and a node id (from the CLI); the output is printed as YAML or
JSON and handed to `envoy -c` or `GRPC_XDS_BOOTSTRAP`. Each piece (node, admin, ADS config, xDS cluster,
outbound listener, route config, HTTP filters; optionally an inbound listener in front of the local app and
OpenTelemetry tracing) is built by its own small function so later work can add on-demand virtual hosts (VHDS)
and mTLS pieces without touching the rest.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshactors.envoy.grpc_tls import DEFAULT_REFRESH_S, certificate_providers, server_listener_template
from meshactors.envoy.resources import (
    FAULT_FILTER,
    FAULT_TYPE,
    FILTER_CHAIN_FILTER,
    FILTER_CHAIN_TYPE,
    INTENTIONS_TYPE,
    KNOWN_VIPS_FILTER,
    KNOWN_VIPS_TYPE,
    intentions_filter_name,
)
from meshactors.envoy.sds import downstream_tls_socket
from meshactors.errors import ConfigError
from meshactors.model.validate import ZONE_RULE, is_valid_vip_name, is_valid_zone
from meshactors.telemetry.golden import CLUSTER_STATS

XDS_CLUSTER = "meshactors_xds"
OUTBOUND_LISTENER = "meshactors_outbound"
OUTBOUND_ROUTE_CONFIG = "meshactors_outbound"
# Static names below cannot collide with a VIP's cluster: VIP names are DNS names, without underscores.
INBOUND_LISTENER = "meshactors_inbound"
INBOUND_ROUTE_CONFIG = "meshactors_inbound"
INBOUND_CLUSTER = "meshactors_inbound_app"
SECURE_INBOUND_LISTENER = "meshactors_inbound_secure"
SECURE_INBOUND_CLUSTER = "meshactors_inbound_secure_app"
OTLP_CLUSTER = "meshactors_otlp"
DEFAULT_NODE_CLUSTER = "meshactors"

TYPE_PREFIX = "type.googleapis.com/"
HCM_TYPE = TYPE_PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ON_DEMAND_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.on_demand.v3.OnDemand"
ROUTER_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.router.v3.Router"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_PROTOCOL_OPTIONS_TYPE = TYPE_PREFIX + HTTP_PROTOCOL_OPTIONS
UPSTREAM_TLS_TYPE = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
METRICS_SERVICE_TYPE = TYPE_PREFIX + "envoy.config.metrics.v3.MetricsServiceConfig"
METRICS_SINK = "envoy.stat_sinks.metrics_service"
DEFAULT_STATS_FLUSH_S = 5.0  # what `meshactors bootstrap` and `sidecar` use unless told otherwise (0: no sink)
# Stats kept beside the golden signals' per-cluster ones (the inclusion list applies to the admin API too): what
# operators and the tests read there (xDS connection state, on-demand CDS, warming, the xDS cluster's TLS, and
# why an SVIP's mTLS handshake failed: a SAN, chain or missing-certificate refusal, per cluster and listener).
OPERATIONAL_STAT_PREFIXES = (
    "server.",
    "cluster_manager.",
    "control_plane.",
    "listener_manager.",
    "cluster.meshactors_xds.ssl.",
    "tracing.",
    "http.inbound_secure.rbac.",  # intentions: allowed / denied (meshactors.intentions.compile)
)
# Intentions' per-rule counters (`http.inbound_secure.rbac.policy.<rule>.denied`): Envoy 1.40 matches them against
# the inclusion list without their scope's prefix (measured: a `prefix` or `^http...` regex pattern drops them, a
# `contains` one keeps them).
OPERATIONAL_STAT_CONTAINS = ("rbac.policy.",)
# The outbound listener's fault aborts: the known-VIPs guard's 503s for names with no registration (junk Hosts), and
# any abort fault a VIP's policy injects. Each proxy's count is shown per session (meshactors.xds.metrics_sink).
OPERATIONAL_STAT_EXACT = ("http.outbound.fault.aborts_injected",)
OPERATIONAL_STAT_SUFFIXES = (
    "warming_state",
    "ssl.fail_verify_san",
    "ssl.fail_verify_error",
    "ssl.fail_verify_no_cert",
    "ssl.connection_error",
    "ssl.handshake",
)
OTEL_TRACER = "envoy.tracers.opentelemetry"
ON_DEMAND_RECREATE_STREAM = "envoy.reloadable_features.on_demand_cluster_no_recreate_stream"
OTEL_CONFIG_TYPE = TYPE_PREFIX + "envoy.config.trace.v3.OpenTelemetryConfig"

# How the sidecar finds a live control-plane server (see xds_cluster): a refused or silent server costs
# at most one short connect timeout, and the ADS stream is re-opened after a short backoff.
XDS_CONNECT_TIMEOUT_S = 0.25
XDS_RETRY_BASE_S = 0.1
XDS_RETRY_MAX_S = 2.0
# Idle 10 s, then 3 probes 2 s apart: a vanished server host is noticed in about 16 s.
XDS_TCP_KEEPALIVE = {"keepalive_time": 10, "keepalive_interval": 2, "keepalive_probes": 3}
# Tracing: every request is sampled unless the user says otherwise (tracing itself is opt-in, see Tracing).
DEFAULT_TRACING_SAMPLING = 100.0
OTLP_CONNECT_TIMEOUT_S = 1.0
OTLP_EXPORT_TIMEOUT_S = 2.0  # one export call; Envoy drops that batch of spans when it runs out


def duration(seconds: float) -> str:
    """A protobuf JSON Duration ("5s", "0.25s") for a positive number of seconds."""
    if seconds <= 0:
        raise ConfigError(f"a duration must be positive, got {seconds!r} s")
    nanos = round(seconds * 1_000_000_000)
    whole, frac = divmod(nanos, 1_000_000_000)
    if frac == 0:
        return f"{whole}s"
    return f"{whole}.{frac:09d}".rstrip("0") + "s"


def _check_address(addr: tuple[str, int], what: str) -> tuple[str, int]:
    host, port = addr
    if not host:
        raise ConfigError(f"{what}: the host must not be empty")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{what}: port {port!r} is out of range 1-65535")
    return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def socket_address(addr: tuple[str, int]) -> dict[str, Any]:
    host, port = addr
    return {"socket_address": {"address": host, "port_value": port}}


def node(node_id: str, node_cluster: str = DEFAULT_NODE_CLUSTER, zone: str = "") -> dict[str, Any]:
    """The bootstrap `node`; `zone` ("" : unknown) becomes `locality.zone`, which locality failover prefers."""
    if not node_id:
        raise ConfigError("node id must not be empty")
    doc: dict[str, Any] = {"id": node_id, "cluster": node_cluster}
    if zone:
        if not is_valid_zone(zone):  # what the registry accepts as an instance's zone, so that it can match one
            raise ConfigError(f"zone: {zone!r} {ZONE_RULE}")
        doc["locality"] = {"zone": zone}
    return doc


def admin_config(admin: tuple[str, int]) -> dict[str, Any]:
    return {"address": socket_address(_check_address(admin, "admin"))}


def ads_source() -> dict[str, Any]:
    """A ConfigSource meaning "over the ADS stream" (on-demand CDS, EDS, RDS, VHDS, ECDS)."""
    return {"ads": {}, "resource_api_version": "V3"}


# How long Envoy's start waits for the first answer on its wildcard CDS subscription. Its listeners' own initial
# fetches (RDS/VHDS/ECDS, 15 s each by default) only begin after the cluster manager's init, so with no control
# plane to answer (down, or the stream refused) the default 15 s here made LIVE wait 30 s instead of 15 s. Nothing
# needs that subscription to start: it only carries pushed mirror clusters, which arrive whenever they are sent.
CDS_INITIAL_FETCH_TIMEOUT_S = 1.0

# Where a proxyless gRPC client's token travels: its bootstrap cannot add gRPC metadata to the ADS stream, so
# the token is a field of the node metadata sent on each stream's first request (Envoy uses initial_metadata).
NODE_TOKEN_KEY = "meshactors_token"


def ads_config(cluster: str = XDS_CLUSTER, token: str = "") -> dict[str, Any]:
    """Delta ADS (on-demand CDS and VHDS work only over delta) to the static xDS cluster; `token` is sent as
    `authorization: Bearer <token>` metadata when each stream opens."""
    auth = {"initial_metadata": [{"key": "authorization", "value": f"Bearer {token}"}]} if token else {}
    return {
        "api_type": "DELTA_GRPC",
        "transport_api_version": "V3",
        "set_node_on_first_message_only": True,
        "grpc_services": [
            {
                **auth,
                "envoy_grpc": {
                    "cluster_name": cluster,
                    # Backoff between attempts to re-open the ADS stream (Envoy's default: 0.5 s .. 30 s).
                    "retry_policy": {
                        "retry_back_off": {
                            "base_interval": duration(XDS_RETRY_BASE_S),
                            "max_interval": duration(XDS_RETRY_MAX_S),
                        }
                    },
                },
            }
        ],
    }


def xds_tls_socket(hosts: Sequence[str], tls_ca: str) -> dict[str, Any]:
    """TLS to the control plane: the server's certificate must chain to the CA file `tls_ca` and name one of the
    hosts the cluster dials (an IP SAN for an address, a DNS SAN for a name); SNI is sent when the servers are
    reached by one name. ALPN h2: a gRPC server expects it."""
    if not tls_ca:
        raise ConfigError("tls_ca: the CA file must not be empty")
    distinct = list(dict.fromkeys(hosts))
    sans = [{"san_type": "IP_ADDRESS" if _is_ip(h) else "DNS", "matcher": {"exact": h}} for h in distinct]
    names = [h for h in distinct if not _is_ip(h)]
    context: dict[str, Any] = {
        "@type": UPSTREAM_TLS_TYPE,
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "validation_context": {"trusted_ca": {"filename": tls_ca}, "match_typed_subject_alt_names": sans},
        },
    }
    if len(names) == 1 and len(distinct) == 1:
        context["sni"] = names[0]
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def xds_cluster(
    xds: Sequence[tuple[str, int]],
    *,
    name: str = XDS_CLUSTER,
    connect_timeout_s: float = XDS_CONNECT_TIMEOUT_S,
    h2_keepalive_s: float | None = None,
    tls_ca: str | None = None,
) -> dict[str, Any]:
    """The static cluster holding every control-plane server, spoken to over HTTP/2.

    Failover: the ADS stream lives on one HTTP/2 connection to one server. When that server goes, Envoy
    re-opens the stream after the retry backoff (ads_config) and the ROUND_ROBIN picker moves on to the
    next server; a dead server costs one refused connect, or at most `connect_timeout_s` when its packets
    vanish. No active health checks: they would cost every server a connection per sidecar per interval.

    A server host that vanishes without closing the connection is found by TCP keepalive (about 16 s).
    A frozen server process is only found by HTTP/2 PINGs (`h2_keepalive_s`), which are off by default:
    a grpc server with default settings answers PINGs on an idle stream with GOAWAY "too_many_pings"
    after three of them, dropping the ADS stream. Turn them on only together with the server options
    `grpc.http2.min_ping_interval_without_data_ms` <= the interval and `grpc.http2.max_ping_strikes` = 0.

    `tls_ca`: the servers serve TLS; their certificate is verified against this CA file (`xds_tls_socket`).
    """
    if not xds:
        raise ConfigError("at least one xDS server address is needed")
    addrs = [_check_address(a, "xds") for a in xds]
    if len(set(addrs)) != len(addrs):
        raise ConfigError("xds: the same server address is listed twice")
    all_ips = all(_is_ip(host) for host, _ in addrs)
    http2_options: dict[str, Any] = {}
    if h2_keepalive_s is not None:
        http2_options["connection_keepalive"] = {
            "interval": duration(h2_keepalive_s),
            "timeout": duration(max(1.0, h2_keepalive_s / 3)),
        }
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if all_ips else "STRICT_DNS",
        "connect_timeout": duration(connect_timeout_s),
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            HTTP_PROTOCOL_OPTIONS: {
                "@type": HTTP_PROTOCOL_OPTIONS_TYPE,
                "explicit_http_config": {"http2_protocol_options": http2_options},
            }
        },
        "upstream_connection_options": {"tcp_keepalive": dict(XDS_TCP_KEEPALIVE)},
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(a)}} for a in addrs]}],
        },
    }
    if not all_ips:
        # "localhost" must not resolve to ::1 only while the control plane listens on 127.0.0.1.
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if tls_ca is not None:
        cluster["transport_socket"] = xds_tls_socket([host for host, _ in addrs], tls_ca)
    return cluster


def on_demand_filter(odcds_timeout_s: float) -> dict[str, Any]:
    """Pauses a request for an unknown cluster, asks for it over delta ADS, resumes when it arrives."""
    return {
        "name": "envoy.filters.http.on_demand",
        "typed_config": {
            "@type": ON_DEMAND_TYPE,
            "odcds": {"source": ads_source(), "timeout": duration(odcds_timeout_s)},
        },
    }


def known_vips_filter() -> dict[str, Any]:
    """The guard before the on-demand filter: its config (the names that exist) comes over ECDS on the ADS stream.

    A Host that is not a known VIP gets a 503 here and never becomes an on-demand CDS subscription, so what a
    proxy holds is bounded by the real VIPs its app uses. The listener warms until the first config arrives."""
    return {
        "name": KNOWN_VIPS_FILTER,
        "config_discovery": {"config_source": ads_source(), "type_urls": [KNOWN_VIPS_TYPE]},
    }


def intentions_filter(svip: str) -> dict[str, Any]:
    """The SVIP's authorization: an RBAC filter whose config (its intentions, meshactors.intentions.compile) comes
    over ECDS on the ADS stream under `meshactors_intentions/<svip>`, changed live without touching the listener.

    No default_config, on purpose: the listener warms until the control plane's first answer (which carries the
    mesh default), and a filter that never got a config fails every request (500), so an SVIP is never open
    because its control plane was unreachable."""
    return {
        "name": intentions_filter_name(svip),
        "config_discovery": {"config_source": ads_source(), "type_urls": [INTENTIONS_TYPE]},
    }


def router_filter() -> dict[str, Any]:
    return {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}


def policy_filters() -> list[dict[str, Any]]:
    """What per-VIP route policies need before the router: an empty fault filter (a VIP's HTTPFault in its
    virtual host's typed_per_filter_config replaces it) and an empty filter_chain filter (a VIP's adaptive
    concurrency chain comes per route). Both do nothing for a VIP without such a policy."""
    return [
        {"name": FAULT_FILTER, "typed_config": {"@type": FAULT_TYPE}},
        {"name": FILTER_CHAIN_FILTER, "typed_config": {"@type": FILTER_CHAIN_TYPE}},
    ]


def outbound_http_filters(odcds_timeout_s: float) -> list[dict[str, Any]]:
    return [known_vips_filter(), on_demand_filter(odcds_timeout_s), *policy_filters(), router_filter()]


def outbound_route_config(name: str = OUTBOUND_ROUTE_CONFIG, *, vhds: bool = True) -> dict[str, Any]:
    """The outbound RouteConfiguration, served over RDS (byte-identical for every proxy, forever): any Host goes
    to the cluster named by its authority (the port stripped by the HCM), and VIPs with route-level policy get
    a virtual host of their own over VHDS, pushed to a proxy with the VIP's Cluster (design.md section 9).

    The catch-all keeps a VIP without policy on the one-round-trip `cluster_header` path; it also means Envoy
    never asks VHDS for a name itself, so the control plane pushes a VIP's virtual host before its Cluster and
    the on-demand filter re-resolves the route once the Cluster arrives (ON_DEMAND_RECREATE_STREAM).
    No retry_policy: Envoy does not retry unless a policy says so. `vhds=False`: the same table without VHDS, for
    a static route_config (floors and config checks without a control plane).
    """
    table: dict[str, Any] = {
        "name": name,
        "virtual_hosts": [
            {
                "name": "outbound",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster_header": ":authority"}}],
            }
        ],
    }
    if vhds:
        table["vhds"] = {"config_source": ads_source()}
    return table


def runtime_layers() -> dict[str, Any]:
    """Envoy 1.40 continues a request paused for on-demand CDS with the route picked before discovery; with
    this flag off it re-creates the stream instead, so the first request to a VIP whose virtual host arrived
    with its Cluster already takes that virtual host's routes (measured: 5 of 5 first requests with it, 0 of
    5 without). A request whose body Envoy has started buffering cannot be re-created and keeps the route."""
    return {"layers": [{"name": "meshactors", "static_layer": {ON_DEMAND_RECREATE_STREAM: False}}]}


def outbound_http_connection_manager(odcds_timeout_s: float, tracing: Tracing | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "@type": HCM_TYPE,
        "stat_prefix": "outbound",
        "codec_type": "AUTO",
        # Without it `Host: myservice:8080` asks for a cluster named "myservice:8080".
        "strip_any_host_port": True,
        "rds": {"route_config_name": OUTBOUND_ROUTE_CONFIG, "config_source": ads_source()},
        "http_filters": outbound_http_filters(odcds_timeout_s),
    }
    if tracing is not None:
        config["tracing"] = tracing_config(tracing)
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def outbound_listener(
    listen: tuple[str, int], odcds_timeout_s: float, *, tracing: Tracing | None = None
) -> dict[str, Any]:
    """The listener apps send plain HTTP (HTTP/1.1 or h2c) to: `http://<vip>/...`.

    With `tracing` the listener says it is OUTBOUND: Envoy names a listener's spans by its traffic direction, and
    the OpenTelemetry tracer makes an outbound span a CLIENT span (unset means inbound: a SERVER span)."""
    listener: dict[str, Any] = {"name": OUTBOUND_LISTENER, "address": socket_address(_check_address(listen, "listen"))}
    if tracing is not None:
        listener["traffic_direction"] = "OUTBOUND"
    listener["filter_chains"] = [{"filters": [outbound_http_connection_manager(odcds_timeout_s, tracing)]}]
    return listener


# --- tracing: Envoy's OpenTelemetry tracer, spans over OTLP gRPC ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Tracing:
    """OpenTelemetry tracing on a sidecar's listeners: spans go over OTLP gRPC to `collector` (HOST:PORT) as
    service `service_name`; `sampling` is the percentage (0-100) of requests a sidecar starts a trace for.

    Sampling is decided once, at the first sidecar a request passes: Envoy writes its decision into the
    `x-request-id` it forwards, and the next sidecar follows it (its own rate only applies to requests that arrive
    without one). The default, 100, traces every request: tracing is off until asked for, and whoever asks wants
    to see the request they send next; lower it for real traffic (Istio's default is 1)."""

    collector: tuple[str, int]
    service_name: str
    sampling: float = DEFAULT_TRACING_SAMPLING

    def __post_init__(self) -> None:
        _check_address(self.collector, "tracing collector")
        if not self.service_name:
            raise ConfigError("tracing service name must not be empty")
        if isinstance(self.sampling, bool) or not isinstance(self.sampling, int | float):
            raise ConfigError(f"tracing sampling must be a number, got {self.sampling!r}")
        if not math.isfinite(self.sampling) or not 0 <= self.sampling <= 100:
            raise ConfigError(f"tracing sampling: {self.sampling!r} is not a percentage (0-100)")


def otlp_cluster(collector: tuple[str, int], name: str = OTLP_CLUSTER) -> dict[str, Any]:
    """The OTLP collector as a static HTTP/2 cluster (OTLP gRPC); a name is resolved by DNS."""
    host, port = _check_address(collector, "tracing collector")
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": duration(OTLP_CONNECT_TIMEOUT_S),
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            HTTP_PROTOCOL_OPTIONS: {
                "@type": HTTP_PROTOCOL_OPTIONS_TYPE,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address((host, port))}}]}],
        },
    }
    if not _is_ip(host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def tracing_config(tracing: Tracing, cluster: str = OTLP_CLUSTER) -> dict[str, Any]:
    """An HTTP connection manager's `tracing`: the OpenTelemetry tracer exporting to `cluster`, and the rate."""
    return {
        "random_sampling": {"value": float(tracing.sampling)},
        "provider": {
            "name": OTEL_TRACER,
            "typed_config": {
                "@type": OTEL_CONFIG_TYPE,
                "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": duration(OTLP_EXPORT_TIMEOUT_S)},
                "service_name": tracing.service_name,
            },
        },
    }


# --- inbound: the listener in front of the local app ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    """The sidecar's inbound listener: it listens on `listen` (the address registered for the VIP) and forwards
    to the app at `app` (usually 127.0.0.1:<the app's port>)."""

    listen: tuple[str, int]
    app: tuple[str, int]

    def __post_init__(self) -> None:
        _check_address(self.listen, "inbound listen")
        _check_address(self.app, "inbound app")
        if self.listen == self.app:
            raise ConfigError(f"inbound: the listener and the app cannot both be {self.listen[0]}:{self.listen[1]}")


def inbound_cluster(app: tuple[str, int], name: str = INBOUND_CLUSTER) -> dict[str, Any]:
    """The local app as a static cluster, spoken to in the protocol the request came in (HTTP/1.1 or h2c)."""
    host, port = _check_address(app, "inbound app")
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": duration(1.0),
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            HTTP_PROTOCOL_OPTIONS: {
                "@type": HTTP_PROTOCOL_OPTIONS_TYPE,
                "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address((host, port))}}]}],
        },
    }
    if not _is_ip(host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def inbound_route_config(cluster: str = INBOUND_CLUSTER, name: str = INBOUND_ROUTE_CONFIG) -> dict[str, Any]:
    """Everything to the local app. No route timeout (Envoy's default is 15 s): the caller's sidecar applies the
    VIP's timeout policy, and a second, different limit here would only surprise."""
    return {
        "name": name,
        "virtual_hosts": [
            {
                "name": "inbound",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}],
            }
        ],
    }


def inbound_listener(
    listen: tuple[str, int],
    *,
    cluster: str = INBOUND_CLUSTER,
    name: str = INBOUND_LISTENER,
    stat_prefix: str = "inbound",
    tracing: Tracing | None = None,
    transport_socket: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A listener (traffic_direction INBOUND: its spans are SERVER spans) in front of the local app `cluster`.

    `transport_socket`: a downstream transport socket for its one filter chain (e.g. TLS); plain TCP without."""
    config: dict[str, Any] = {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "route_config": inbound_route_config(cluster, name),
        "http_filters": [router_filter()],
    }
    if tracing is not None:
        config["tracing"] = tracing_config(tracing)
    chain: dict[str, Any] = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": config}]
    }
    if transport_socket is not None:
        chain["transport_socket"] = dict(transport_socket)
    return {
        "name": name,
        "address": socket_address(_check_address(listen, "inbound listen")),
        "traffic_direction": "INBOUND",
        "filter_chains": [chain],
    }


@dataclass(frozen=True, slots=True)
class SecureInbound:
    """The SVIP listener: mTLS on `listen` (the registered secure port), forwarding to the app at `app`. The
    identity files (meshactors.envoy.sds) are read relative to Envoy's working directory; a client must present a
    certificate of `trust_domain`. `svip`: the SVIP served, whose intentions (RBAC over ECDS) decide which callers
    get through ("": no authorization filter, any mesh identity may call)."""

    listen: tuple[str, int]
    app: tuple[str, int]
    trust_domain: str
    svip: str = ""

    def __post_init__(self) -> None:
        _check_address(self.listen, "secure inbound listen")
        _check_address(self.app, "secure inbound app")
        if self.svip and not is_valid_vip_name(self.svip):
            raise ConfigError(f"secure inbound: {self.svip[:80]!r} is not an SVIP name")
        if self.listen == self.app:
            raise ConfigError(
                f"secure inbound: the listener and the app cannot both be {self.listen[0]}:{self.listen[1]}"
            )


def secure_inbound_listener(secure: SecureInbound, tracing: Tracing | None = None) -> dict[str, Any]:
    """The inbound listener of `secure`: mTLS (a client certificate of the mesh required, see
    meshactors.envoy.sds), and the caller's SPIFFE ID set in x-forwarded-client-cert (whatever the client sent
    in that header is replaced)."""
    listener = inbound_listener(
        secure.listen, cluster=SECURE_INBOUND_CLUSTER, name=SECURE_INBOUND_LISTENER, stat_prefix="inbound_secure",
        tracing=tracing, transport_socket=downstream_tls_socket(secure.trust_domain),
    )  # fmt: skip
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["forward_client_cert_details"] = "SANITIZE_SET"
    hcm["set_current_client_cert_details"] = {"uri": True}
    if secure.svip:
        hcm["http_filters"] = [intentions_filter(secure.svip), *hcm["http_filters"]]
    return listener


def stats_matcher() -> dict[str, Any]:
    """The stats inclusion list: per cluster only what the golden signals need (meshactors.telemetry.golden), plus
    the operational stats above. Envoy keeps and flushes nothing else, which is what keeps a flush small."""
    cluster_stats = "|".join(s.replace(".", "\\.") for s in CLUSTER_STATS)
    patterns: list[dict[str, Any]] = [
        {"safe_regex": {"regex": f"^cluster\\.[^.]+\\.({cluster_stats})$"}},
        *({"prefix": p} for p in OPERATIONAL_STAT_PREFIXES),
        *({"exact": s} for s in OPERATIONAL_STAT_EXACT),
        *({"suffix": s} for s in OPERATIONAL_STAT_SUFFIXES),
        *({"contains": s} for s in OPERATIONAL_STAT_CONTAINS),
    ]
    return {"stats_matcher": {"inclusion_list": {"patterns": patterns}}}


def metrics_sink(cluster: str = XDS_CLUSTER, token: str = "") -> dict[str, Any]:
    """Envoy's metrics service sink to the control plane (the xDS cluster; the token as on the ADS stream):
    counters as deltas and histograms per flush, tags as labels (the cluster name is a label, not in the name)."""
    auth = {"initial_metadata": [{"key": "authorization", "value": f"Bearer {token}"}]} if token else {}
    return {
        "name": METRICS_SINK,
        "typed_config": {
            "@type": METRICS_SERVICE_TYPE,
            "transport_api_version": "V3",
            "report_counters_as_deltas": True,
            "emit_tags_as_labels": True,
            "histogram_emit_mode": "HISTOGRAM",
            "grpc_service": {**auth, "envoy_grpc": {"cluster_name": cluster}},
        },
    }


def envoy_bootstrap(
    xds: Sequence[tuple[str, int]],
    node_id: str,
    listen: tuple[str, int] = ("127.0.0.1", 15001),
    admin: tuple[str, int] = ("127.0.0.1", 15000),
    node_cluster: str = DEFAULT_NODE_CLUSTER,
    odcds_timeout_s: float = 5.0,
    *,
    xds_h2_keepalive_s: float | None = None,
    token: str = "",
    tls_ca: str | None = None,
    stats_flush_s: float | None = None,
    inbound: Inbound | None = None,
    tracing: Tracing | None = None,
    zone: str = "",
    secure_inbound: SecureInbound | None = None,
) -> dict[str, Any]:
    """The generic sidecar bootstrap: identical for every proxy but its node id (and token); it knows no services.

    `xds_h2_keepalive_s` turns on HTTP/2 PINGs to the control plane (see `xds_cluster` for the server
    settings this needs). `token` (a proxy, service or admin token) authenticates the ADS stream. `tls_ca`: ADS
    over TLS, the servers verified against this CA file. `stats_flush_s`: send the golden-signal statistics to
    the control plane every that many seconds (the metrics sink and the stats inclusion list); None: no sink
    (the CLI turns it on by default, DEFAULT_STATS_FLUSH_S). `node_cluster` names the caller VIP in them.
    `inbound`: also a listener in front of the local app (calls to the app's VIP then pass this sidecar too).
    `tracing`: OpenTelemetry spans from every listener. `zone`: the proxy's `node.locality.zone` (locality
    failover prefers endpoints there). `secure_inbound`: the SVIP's mTLS listener in front of the app. Without the
    last five the output is the plain generic bootstrap.
    """
    listeners = [outbound_listener(listen, odcds_timeout_s, tracing=tracing)]
    clusters = [xds_cluster(xds, h2_keepalive_s=xds_h2_keepalive_s, tls_ca=tls_ca)]
    if inbound is not None:
        if inbound.listen in (listen, admin):
            raise ConfigError(f"inbound listen {inbound.listen[0]}:{inbound.listen[1]} is taken by another listener")
        listeners.append(inbound_listener(inbound.listen, tracing=tracing))
        clusters.append(inbound_cluster(inbound.app))
    if secure_inbound is not None:
        if secure_inbound.listen in (listen, admin) or (
            inbound is not None and secure_inbound.listen == inbound.listen
        ):
            raise ConfigError(f"secure inbound listen {secure_inbound.listen[0]}:{secure_inbound.listen[1]} is taken")
        listeners.append(secure_inbound_listener(secure_inbound, tracing))
        clusters.append(inbound_cluster(secure_inbound.app, SECURE_INBOUND_CLUSTER))
    if tracing is not None:
        clusters.append(otlp_cluster(tracing.collector))
    doc: dict[str, Any] = {
        "node": node(node_id, node_cluster, zone),
        "admin": admin_config(admin),
        # `cds_config`: a wildcard CDS subscription next to the on-demand one, on which the control plane pushes the
        # clusters Envoy never asks for (a route's mirror cluster); it answers it at once (startup waits for that,
        # but only CDS_INITIAL_FETCH_TIMEOUT_S when nobody answers: see there)
        "dynamic_resources": {
            "ads_config": ads_config(XDS_CLUSTER, token),
            "cds_config": {**ads_source(), "initial_fetch_timeout": duration(CDS_INITIAL_FETCH_TIMEOUT_S)},
        },
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "layered_runtime": runtime_layers(),
    }
    if stats_flush_s is not None:
        doc["stats_flush_interval"] = duration(stats_flush_s)
        doc["stats_config"] = stats_matcher()
        doc["stats_sinks"] = [metrics_sink(XDS_CLUSTER, token)]
    return doc


def _server_uri(addr: tuple[str, int]) -> str:
    host, port = _check_address(addr, "xds")
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


# gRPC xDS bootstrap (gRFC A27, with A30 server_features, A47 defaults). Only fields every implementation
# (C-core/grpcio, Java, Go, Node) reads the same way; see grpc_bootstrap for why each one is there.
GRPC_CHANNEL_CREDS = "insecure"  # the one channel credential type all four implementations support
GRPC_SERVER_FEATURES = ("xds_v3",)
LOCALITY_KEYS = ("region", "zone", "sub_zone")
DEFAULT_IDENTITY_REFRESH_S = DEFAULT_REFRESH_S


def grpc_channel_creds(tls_ca: str | None = None) -> list[dict[str, Any]]:
    """`channel_creds`: plaintext, or TLS verifying the server against the CA file `tls_ca` (gRFC A65 `tls`)."""
    if tls_ca is None:
        return [{"type": GRPC_CHANNEL_CREDS}]
    if not tls_ca:
        raise ConfigError("tls_ca: the CA file must not be empty")
    return [{"type": "tls", "config": {"ca_certificate_file": tls_ca}}]


def grpc_xds_server(addr: tuple[str, int], tls_ca: str | None = None) -> dict[str, Any]:
    """One `xds_servers` entry: the server URI, its channel credentials and the features it supports."""
    return {
        "server_uri": _server_uri(addr),
        "channel_creds": grpc_channel_creds(tls_ca),
        "server_features": list(GRPC_SERVER_FEATURES),
    }


def grpc_node(
    node_id: str, node_cluster: str = DEFAULT_NODE_CLUSTER, locality: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The bootstrap `node`: id, cluster and locality (always present, `{}` when unknown)."""
    if not node_id:
        raise ConfigError("node id must not be empty")
    if not node_cluster:
        raise ConfigError("node cluster must not be empty")
    where = dict(locality or {})
    unknown = sorted(set(where) - set(LOCALITY_KEYS))
    if unknown:
        raise ConfigError(f"locality: unknown keys {unknown} (only {', '.join(LOCALITY_KEYS)})")
    for key, value in where.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"locality.{key} must be a non-empty string, got {value!r}")
    return {"id": node_id, "cluster": node_cluster, "locality": {k: where[k] for k in LOCALITY_KEYS if k in where}}


def grpc_bootstrap(
    xds: Sequence[tuple[str, int]],
    node_id: str,
    *,
    node_cluster: str = DEFAULT_NODE_CLUSTER,
    locality: Mapping[str, str] | None = None,
    token: str = "",
    tls_ca: str | None = None,
    identity_dir: str | None = None,
    identity_refresh_s: int = DEFAULT_IDENTITY_REFRESH_S,
) -> dict[str, Any]:
    """The JSON a proxyless gRPC client reads from `GRPC_XDS_BOOTSTRAP` (SotW ADS, `xds:///<vip>`).

    One file for every gRPC xDS implementation: C-core (grpcio, C++, Ruby, PHP), Java, Go and Node
    (@grpc/grpc-js-xds). Each field, and who needs it:

    - `xds_servers` (A27; required by all): one entry per control-plane server, in priority order; a client
      falls back to a later one only while the earlier ones are unreachable (A71).
      - `server_uri` (required by all): `host:port`, IPv6 hosts in brackets.
      - `channel_creds` (required by all, non-empty): a client uses the first type it supports and rejects the
        file when it supports none; `insecure` is the one type all four implement. When the control plane serves
        TLS (`tls_ca`), the one entry is `tls` (gRFC A65) with `ca_certificate_file`; the server's certificate is
        then checked for the host of `server_uri`. C-core, Java and Go implement it.
      - `server_features` (A30): `xds_v3`. Current clients speak only v3 and ignore it, but older C-core, Java
        and Go releases use the v2 transport without it. `ignore_resource_deletion` (A53) is deliberately
        absent: the control plane deletes a VIP's Listener by omitting it from a SotW LDS response, and
        clients must honour that.
    - `node` (A27): what the client sends as the xDS `Node` on the first request of each stream.
      - `id` (grpc-js rejects the file without it; C-core, Java, Go send "" otherwise): names the client in the
        control plane's logs.
      - `cluster` (optional everywhere): the client's service cluster, `meshactors` by default.
      - `locality` (grpc-js rejects the file without it: "locality field missing in node element"; the others
        accept it): `region`, `zone`, `sub_zone` strings, each only when known, `{}` otherwise. It must be an
        object: grpc-js reads its keys with `in`.
      - `metadata`: only `meshactors_token` (NODE_TOKEN_KEY), the client's token, when one is given: no
        bootstrap field of any implementation adds metadata to the ADS stream itself. Client-set fields
        (`user_agent_name`, `client_features`) are not written: older grpc-go parsed `node` strictly.
    - With `identity_dir` (a directory the identity agent keeps, `meshactors identity --dir D`; SVIP mTLS):
      - `certificate_providers` (A29; C-core, Java, Go and grpc-js read it): one instance, `meshactors`, that
        every TLS context the control plane sends names (meshactors.envoy.grpc_tls.CERT_PROVIDER), with
        - `plugin_name`: `file_watcher`, the one provider plugin all four implement;
        - `config.certificate_file`, `config.private_key_file`: `D/cert.pem` and `D/key.pem`, the leaf and its
          key (absolute paths: a relative one is resolved against the app's working directory);
        - `config.ca_certificate_file`: `D/bundle.pem`, the mesh's roots a peer's certificate must chain to;
        - `config.refresh_interval`: how often the files are re-read (`identity_refresh_s`, default 10 s; the
          implementations' own default is 10 min), so a renewed leaf or a rotated bundle is used within it.
        A channel or server uses them only with xDS credentials (`grpc.xds_channel_credentials`,
        `grpc.xds_server_credentials`); with insecure credentials the TLS contexts are ignored.
      - `server_listener_resource_name_template` (A36; required for `grpc.server(..., xds=True)`, which refuses
        to start without it): `grpc/server?xds.resource.listening_address=%s`, `%s` the address the server
        listens on (`127.0.0.1:50051`); the control plane answers that name with an mTLS Listener of that address.
    - Not written, on purpose: `client_default_listener_resource_name_template` (A47; every implementation
      defaults it to `%s`, so `xds:///myservice` asks for Listener `myservice`), `authorities` (A47;
      federation is unused), and without `identity_dir` `certificate_providers` and
      `server_listener_resource_name_template` (no identity, so no SVIP mTLS and no xDS-enabled server).
    """
    if not xds:
        raise ConfigError("at least one xDS server address is needed")
    addrs = [_check_address(a, "xds") for a in xds]
    if len(set(addrs)) != len(addrs):
        raise ConfigError("xds: the same server address is listed twice")
    node_doc = grpc_node(node_id, node_cluster, locality)
    if token:
        node_doc["metadata"] = {NODE_TOKEN_KEY: token}
    doc: dict[str, Any] = {"xds_servers": [grpc_xds_server(addr, tls_ca) for addr in addrs], "node": node_doc}
    if identity_dir is not None:
        doc["certificate_providers"] = certificate_providers(identity_dir, identity_refresh_s)
        doc["server_listener_resource_name_template"] = server_listener_template()
    return doc
