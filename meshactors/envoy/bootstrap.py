"""Bootstrap generators: the one generic Envoy sidecar bootstrap and gRPC's xDS bootstrap, as plain dicts.

Input is the control plane's xDS addresses and a node id (from the CLI); the output is printed as YAML or
JSON and handed to `envoy -c` or `GRPC_XDS_BOOTSTRAP`. Each piece (node, admin, ADS config, xDS cluster,
outbound listener, route config, HTTP filters) is built by its own small function so later work can add
on-demand virtual hosts (VHDS) and mTLS pieces without touching the rest.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from meshactors.envoy.resources import KNOWN_VIPS_FILTER, KNOWN_VIPS_TYPE
from meshactors.errors import ConfigError

XDS_CLUSTER = "meshactors_xds"
OUTBOUND_LISTENER = "meshactors_outbound"
OUTBOUND_ROUTE_CONFIG = "meshactors_outbound"
DEFAULT_NODE_CLUSTER = "meshactors"

TYPE_PREFIX = "type.googleapis.com/"
HCM_TYPE = TYPE_PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ON_DEMAND_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.on_demand.v3.OnDemand"
ROUTER_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.router.v3.Router"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_PROTOCOL_OPTIONS_TYPE = TYPE_PREFIX + HTTP_PROTOCOL_OPTIONS

# How the sidecar finds a live control-plane server (see xds_cluster): a refused or silent server costs
# at most one short connect timeout, and the ADS stream is re-opened after a short backoff.
XDS_CONNECT_TIMEOUT_S = 0.25
XDS_RETRY_BASE_S = 0.1
XDS_RETRY_MAX_S = 2.0
# Idle 10 s, then 3 probes 2 s apart: a vanished server host is noticed in about 16 s.
XDS_TCP_KEEPALIVE = {"keepalive_time": 10, "keepalive_interval": 2, "keepalive_probes": 3}


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


def node(node_id: str, node_cluster: str = DEFAULT_NODE_CLUSTER) -> dict[str, Any]:
    if not node_id:
        raise ConfigError("node id must not be empty")
    return {"id": node_id, "cluster": node_cluster}


def admin_config(admin: tuple[str, int]) -> dict[str, Any]:
    return {"address": socket_address(_check_address(admin, "admin"))}


def ads_source() -> dict[str, Any]:
    """A ConfigSource meaning "over the ADS stream" (used by on-demand CDS, EDS and later VHDS)."""
    return {"ads": {}, "resource_api_version": "V3"}


def ads_config(cluster: str = XDS_CLUSTER) -> dict[str, Any]:
    """Delta ADS (on-demand CDS and VHDS work only over delta) to the static xDS cluster."""
    return {
        "api_type": "DELTA_GRPC",
        "transport_api_version": "V3",
        "set_node_on_first_message_only": True,
        "grpc_services": [
            {
                "envoy_grpc": {
                    "cluster_name": cluster,
                    # Backoff between attempts to re-open the ADS stream (Envoy's default: 0.5 s .. 30 s).
                    "retry_policy": {
                        "retry_back_off": {
                            "base_interval": duration(XDS_RETRY_BASE_S),
                            "max_interval": duration(XDS_RETRY_MAX_S),
                        }
                    },
                }
            }
        ],
    }


def xds_cluster(
    xds: Sequence[tuple[str, int]],
    *,
    name: str = XDS_CLUSTER,
    connect_timeout_s: float = XDS_CONNECT_TIMEOUT_S,
    h2_keepalive_s: float | None = None,
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


def router_filter() -> dict[str, Any]:
    return {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}


def outbound_http_filters(odcds_timeout_s: float) -> list[dict[str, Any]]:
    return [known_vips_filter(), on_demand_filter(odcds_timeout_s), router_filter()]


def outbound_route_config(name: str = OUTBOUND_ROUTE_CONFIG) -> dict[str, Any]:
    """Any Host goes to the cluster named by the request's authority (its port stripped by the HCM).

    No retry_policy: Envoy does not retry unless a policy says so.
    """
    return {
        "name": name,
        "virtual_hosts": [
            {
                "name": "outbound",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster_header": ":authority"}}],
            }
        ],
    }


def outbound_http_connection_manager(odcds_timeout_s: float) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM_TYPE,
            "stat_prefix": "outbound",
            "codec_type": "AUTO",
            # Without it `Host: myservice:8080` asks for a cluster named "myservice:8080".
            "strip_any_host_port": True,
            "route_config": outbound_route_config(),
            "http_filters": outbound_http_filters(odcds_timeout_s),
        },
    }


def outbound_listener(listen: tuple[str, int], odcds_timeout_s: float) -> dict[str, Any]:
    """The listener apps send plain HTTP (HTTP/1.1 or h2c) to: `http://<vip>/...`."""
    return {
        "name": OUTBOUND_LISTENER,
        "address": socket_address(_check_address(listen, "listen")),
        "filter_chains": [{"filters": [outbound_http_connection_manager(odcds_timeout_s)]}],
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
) -> dict[str, Any]:
    """The generic sidecar bootstrap: identical for every proxy but its node id; it knows no services.

    `xds_h2_keepalive_s` turns on HTTP/2 PINGs to the control plane (see `xds_cluster` for the server
    settings this needs).
    """
    return {
        "node": node(node_id, node_cluster),
        "admin": admin_config(admin),
        "dynamic_resources": {"ads_config": ads_config(XDS_CLUSTER)},
        "static_resources": {
            "listeners": [outbound_listener(listen, odcds_timeout_s)],
            "clusters": [xds_cluster(xds, h2_keepalive_s=xds_h2_keepalive_s)],
        },
    }


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


def grpc_xds_server(addr: tuple[str, int]) -> dict[str, Any]:
    """One `xds_servers` entry: the server URI, its channel credentials and the features it supports."""
    return {
        "server_uri": _server_uri(addr),
        "channel_creds": [{"type": GRPC_CHANNEL_CREDS}],
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
) -> dict[str, Any]:
    """The JSON a proxyless gRPC client reads from `GRPC_XDS_BOOTSTRAP` (SotW ADS, `xds:///<vip>`).

    One file for every gRPC xDS implementation: C-core (grpcio, C++, Ruby, PHP), Java, Go and Node
    (@grpc/grpc-js-xds). Each field, and who needs it:

    - `xds_servers` (A27; required by all): one entry per control-plane server, in priority order; a client
      falls back to a later one only while the earlier ones are unreachable (A71).
      - `server_uri` (required by all): `host:port`, IPv6 hosts in brackets.
      - `channel_creds` (required by all, non-empty): a client uses the first type it supports and rejects the
        file when it supports none; `insecure` is the one type all four implement.
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
      - `metadata`, and client-set fields (`user_agent_name`, `client_features`) are not written: no client
        needs them from us, and older grpc-go parsed `node` strictly.
    - Not written, on purpose: `client_default_listener_resource_name_template` (A47; every implementation
      defaults it to `%s`, so `xds:///myservice` asks for Listener `myservice`), `authorities` (A47;
      federation is unused), `certificate_providers` (A29; no xDS-managed TLS yet) and
      `server_listener_resource_name_template` (A36; for xDS-enabled servers, not clients).
    """
    if not xds:
        raise ConfigError("at least one xDS server address is needed")
    addrs = [_check_address(a, "xds") for a in xds]
    if len(set(addrs)) != len(addrs):
        raise ConfigError("xds: the same server address is listed twice")
    return {
        "xds_servers": [grpc_xds_server(addr) for addr in addrs],
        "node": grpc_node(node_id, node_cluster, locality),
    }
