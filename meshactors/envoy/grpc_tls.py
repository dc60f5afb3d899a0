"""SVIP mTLS for proxyless gRPC (gRFC A29, A36): the bootstrap's file-watcher certificate provider, an SVIP
Cluster's UpstreamTlsContext and an xDS-enabled server's Listener with its DownstreamTlsContext.

gRPC does no SDS: a TLS context names a certificate provider instance of the client's bootstrap
(`certificate_providers`), here one `file_watcher` instance (CERT_PROVIDER) reading the PEM files the identity
agent keeps (meshactors.identity_agent: `cert.pem`, `key.pem`, `bundle.pem`). The same instance gives the identity
(`tls_certificate_provider_instance`) and the roots (`validation_context.ca_certificate_provider_instance`), so
every resource here names only the instance: byte-identical for every client, each reading its own files.

What gRPC accepts (read from C-core's, grpc-go's, grpc-java's and grpc-js's parsers; these resources measured
with grpcio 1.85 in tests/integration/test_proxyless_mtls.py): `tls_params` is NACKed ("feature unsupported"), as
are SDS secret configs, so the handshake is whatever the implementation defaults to (TLS 1.3 with grpcio); SAN
checks are read from
`match_subject_alt_names` only (not the `match_typed_subject_alt_names` Envoy's contexts use) and are NACKed on
the server side ("match_subject_alt_names not supported on servers"). So the client checks the server's SPIFFE ID
exactly, and the server requires a client certificate chaining to the mesh's roots (every leaf of that CA is a
`spiffe://<trust domain>/svc/...` identity; who may call is for RBAC).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from meshactors.envoy import sds
from meshactors.errors import ConfigError
from meshactors.resources.server_listener import SERVER_LISTENER_TEMPLATE, join_address, server_listener_name

CERT_PROVIDER = "meshactors"  # the bootstrap's certificate provider instance every gRPC TLS context names
FILE_WATCHER = "file_watcher"
DEFAULT_REFRESH_S = 10  # how often gRPC's file watcher re-reads the files (a renewal is picked up within this)
HCM_FILTER = "envoy.filters.network.http_connection_manager"
ROUTER_FILTER = "envoy.filters.http.router"
SERVER_ROUTE_CONFIG = "meshactors_inbound"


def certificate_providers(identity_dir: str, refresh_s: int = DEFAULT_REFRESH_S) -> dict[str, Any]:
    """The bootstrap's `certificate_providers`: one file_watcher instance over the identity agent's PEM files in
    `identity_dir` (an absolute path: gRPC resolves a relative one against the process's working directory)."""
    if not identity_dir.startswith("/"):
        raise ConfigError(f"identity_dir: {identity_dir!r} must be an absolute path")
    if not 1 <= refresh_s <= 3600:
        raise ConfigError(f"identity refresh_interval: {refresh_s} s is out of range 1-3600")
    base = identity_dir.rstrip("/") or "/"
    config = {
        "certificate_file": f"{base}/{sds.CERT_PEM}",
        "private_key_file": f"{base}/{sds.KEY_PEM}",
        "ca_certificate_file": f"{base}/{sds.BUNDLE_PEM}",
        "refresh_interval": f"{refresh_s}s",
    }
    return {CERT_PROVIDER: {"plugin_name": FILE_WATCHER, "config": config}}


def server_listener_template() -> str:
    """The bootstrap's `server_listener_resource_name_template` (A36)."""
    return SERVER_LISTENER_TEMPLATE


def _common(context: common_pb2.CommonTlsContext) -> common_pb2.CertificateValidationContext:
    context.tls_certificate_provider_instance.instance_name = CERT_PROVIDER
    validation = context.validation_context
    validation.ca_certificate_provider_instance.instance_name = CERT_PROVIDER
    return validation


def grpc_upstream_tls_context(server_ids: Iterable[str]) -> tls_pb2.UpstreamTlsContext:
    """The client side to an SVIP: present this client's identity, accept only a server certificate of the
    bundle whose SAN is exactly one of `server_ids` (SPIFFE IDs)."""
    ids = sorted(set(server_ids))
    if not ids:
        raise ValueError("an SVIP cluster needs the identities of its servers")
    context = tls_pb2.UpstreamTlsContext()
    validation = _common(context.common_tls_context)
    for spiffe_id in ids:
        validation.match_subject_alt_names.add(exact=spiffe_id)
    return context


def with_grpc_upstream_tls(cluster_body: bytes, server_ids: Iterable[str]) -> bytes:
    """A serialized Cluster with the gRPC variant of the SVIP transport socket added (deterministic bytes)."""
    cluster = cluster_pb2.Cluster.FromString(cluster_body)
    cluster.transport_socket.name = sds.TLS_SOCKET
    cluster.transport_socket.typed_config.Pack(grpc_upstream_tls_context(server_ids), deterministic=True)
    return cluster.SerializeToString(deterministic=True)


def grpc_downstream_tls_context() -> tls_pb2.DownstreamTlsContext:
    """The server side: present the server's identity, require a client certificate chaining to the bundle."""
    context = tls_pb2.DownstreamTlsContext()
    _common(context.common_tls_context)
    context.require_client_certificate.value = True
    return context


@lru_cache(maxsize=1024)
def grpc_server_listener(host: str, port: int) -> bytes:
    """The Listener an xDS-enabled gRPC server listening on `host:port` asks for (A36), named as it asks.

    Its address is `host:port` (gRPC refuses a Listener of another address); one filter chain, matching every
    connection, with an HttpConnectionManager (an inline route config: every request goes on to the server's own
    handlers, `non_forwarding_action`; the router as the only, last HTTP filter) and the DownstreamTlsContext of
    `grpc_downstream_tls_context`. A server given `grpc.xds_server_credentials` serves mTLS only then; until the
    Listener arrives it serves nothing.
    """
    name = server_listener_name(host, port)
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=SERVER_ROUTE_CONFIG)
    route_config = manager.route_config
    route_config.name = SERVER_ROUTE_CONFIG
    virtual_host = route_config.virtual_hosts.add(name=SERVER_ROUTE_CONFIG, domains=["*"])
    route = virtual_host.routes.add()
    route.match.prefix = ""  # a oneof member: set even though empty
    route.non_forwarding_action.SetInParent()
    router = manager.http_filters.add(name=ROUTER_FILTER)
    router.typed_config.Pack(router_pb2.Router(), deterministic=True)
    listener = listener_pb2.Listener(name=name)
    socket_address = listener.address.socket_address
    socket_address.address = host
    socket_address.port_value = port
    chain = listener.filter_chains.add(name=join_address(host, port))
    hcm = chain.filters.add(name=HCM_FILTER)
    hcm.typed_config.Pack(manager, deterministic=True)
    chain.transport_socket.name = sds.TLS_SOCKET
    chain.transport_socket.typed_config.Pack(grpc_downstream_tls_context(), deterministic=True)
    return listener.SerializeToString(deterministic=True)
