"""Proxyless gRPC over SVIP mTLS, the pure parts: the bootstrap's certificate provider and server template, an SVIP
Cluster's gRPC variant, the xDS-enabled server's Listener and how the VIP source reads and refuses its names."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401  (registers the Any type)
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from meshactors.cli import bootstrap_text, build_parser
from meshactors.envoy import grpc_tls
from meshactors.envoy.bootstrap import grpc_bootstrap
from meshactors.errors import ConfigError
from meshactors.model.instance import Instance
from meshactors.policy.load import load
from meshactors.resources.server_listener import (
    SERVER_LISTENER_PREFIX,
    parse_server_listener,
    server_key,
    server_key_name,
    server_listener_name,
)
from meshactors.resources.types import CLUSTER, DEFAULT_KIND, GRPC_KIND, LISTENER
from meshactors.snapshot.builder import build_vip
from meshactors.snapshot.source import VipSource, VipSourceSettings, validate_name
from tests.unit.test_envoy_bootstrap import as_json
from tests.unit.test_known_vips import _Transport
from tests.unit.test_snapshot_builder import check_golden

TD = "meshactors.local"
SERVER_ID = f"spiffe://{TD}/svc/orders"


def _svip_fleet(svip: str = "orders-secure") -> list[Instance]:
    return [
        Instance(instance_id="o-1", app="orders", svip=svip, host="10.0.0.1", secure_port=8443,
                 registered_by="service:orders"),
        Instance(instance_id="o-2", app="orders", svip=svip, host="10.0.0.2", secure_port=8443,
                 registered_by="service:orders"),
    ]  # fmt: skip


def _cluster(body: bytes | None) -> cluster_pb2.Cluster:
    assert body is not None
    return cluster_pb2.Cluster.FromString(body)


def _upstream(cluster: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    context = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(context)
    return context


# --- the bootstrap ---------------------------------------------------------------------------------------------


def test_the_grpc_bootstrap_with_an_identity_dir_golden() -> None:
    doc = grpc_bootstrap([("127.0.0.1", 18000)], "grpc-server-1", identity_dir="/var/lib/orders/identity")
    check_golden("grpc_bootstrap_identity.json", as_json(doc))
    provider = doc["certificate_providers"][grpc_tls.CERT_PROVIDER]
    assert provider == {
        "plugin_name": "file_watcher",
        "config": {
            "certificate_file": "/var/lib/orders/identity/cert.pem",
            "private_key_file": "/var/lib/orders/identity/key.pem",
            "ca_certificate_file": "/var/lib/orders/identity/bundle.pem",
            "refresh_interval": "10s",
        },
    }
    assert doc["server_listener_resource_name_template"] == "grpc/server?xds.resource.listening_address=%s"
    # without it the bootstrap is exactly the plain one
    plain = grpc_bootstrap([("127.0.0.1", 18000)], "grpc-server-1")
    assert "certificate_providers" not in plain and "server_listener_resource_name_template" not in plain


def test_the_identity_dir_must_be_absolute_and_the_refresh_in_range() -> None:
    with pytest.raises(ConfigError, match="identity_dir: 'rel/dir' must be an absolute path"):
        grpc_bootstrap([("127.0.0.1", 18000)], "c", identity_dir="rel/dir")
    with pytest.raises(ConfigError, match="refresh_interval"):
        grpc_bootstrap([("127.0.0.1", 18000)], "c", identity_dir="/d", identity_refresh_s=0)


def test_bootstrap_identity_dir_flag_resolves_the_path_and_needs_grpc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["bootstrap", "--xds", "127.0.0.1:18000", "--node-id", "c1", "--token", "t"]
    doc = json.loads(bootstrap_text(build_parser().parse_args([*base, "--grpc", "--identity-dir", "id"])))
    assert doc["certificate_providers"]["meshactors"]["config"]["certificate_file"] == str(tmp_path / "id/cert.pem")
    with pytest.raises(ConfigError, match="--identity-dir: only with --grpc"):
        bootstrap_text(build_parser().parse_args([*base, "--identity-dir", "id"]))


def test_identity_command_flags() -> None:
    args = build_parser().parse_args(["identity", "--dir", "d", "--token", "t", "--once"])
    assert (args.dir, args.token, args.once, args.bundle_check_interval) == ("d", "t", True, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["identity", "--token", "t"])  # --dir is required


# --- the client side: an SVIP Cluster's gRPC variant --------------------------------------------------------------


def test_an_svip_cluster_has_a_grpc_variant_with_provider_instances_and_the_servers_san() -> None:
    snap = build_vip("orders-secure", _svip_fleet())
    envoy, grpc = snap.get(CLUSTER, "orders-secure"), snap.get(CLUSTER, "orders-secure", GRPC_KIND)
    assert envoy is not None and grpc is not None
    assert (envoy.variant, grpc.variant) == (DEFAULT_KIND, GRPC_KIND)
    context = _upstream(_cluster(grpc.body))
    common = context.common_tls_context
    assert common.tls_certificate_provider_instance.instance_name == grpc_tls.CERT_PROVIDER
    assert common.validation_context.ca_certificate_provider_instance.instance_name == grpc_tls.CERT_PROVIDER
    assert [m.exact for m in common.validation_context.match_subject_alt_names] == [SERVER_ID]
    # nothing gRPC NACKs: no tls_params, no SDS, no typed SAN matchers
    assert not common.HasField("tls_params") and not common.tls_certificate_sds_secret_configs
    assert not common.validation_context.match_typed_subject_alt_names
    # Envoy's variant keeps its file-based SDS
    envoy_common = _upstream(_cluster(envoy.body)).common_tls_context
    assert envoy_common.tls_certificate_sds_secret_configs[0].name == "meshactors_identity"
    # the rest of the Cluster is the same
    plain_grpc, plain_envoy = _cluster(grpc.body), _cluster(envoy.body)
    plain_grpc.ClearField("transport_socket")
    plain_envoy.ClearField("transport_socket")
    assert plain_grpc == plain_envoy


def test_a_plain_vip_gets_no_grpc_variant_and_an_svip_with_a_policy_secures_its_own() -> None:
    plain = build_vip("orders", [Instance(instance_id="p", app="orders", vip="orders", host="10.0.0.3", port=80)])
    assert all(r.variant == DEFAULT_KIND for r in plain.resources)
    assert not _cluster(plain.get(CLUSTER, "orders").body).HasField("transport_socket")  # type: ignore[union-attr]

    (policy,) = load("vip: orders-secure\ndestination: {loadBalancer: LEAST_REQUEST}\n")
    snap = build_vip("orders-secure", _svip_fleet(), policy)
    grpc = [r for r in snap.resources if r.type_url == CLUSTER and r.variant == GRPC_KIND]
    assert len(grpc) == 1
    cluster = _cluster(grpc[0].body)
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN  # gRPC's compiled variant, not a copy of Envoy's
    assert [m.exact for m in _upstream(cluster).common_tls_context.validation_context.match_subject_alt_names] == [
        SERVER_ID
    ]


# --- the server side: the xDS-enabled server's Listener ---------------------------------------------------------


def test_the_server_listener_golden_and_shape() -> None:
    body = grpc_tls.grpc_server_listener("127.0.0.1", 50051)
    listener = listener_pb2.Listener.FromString(body)
    check_golden("grpc_server_listener.json", json_format.MessageToJson(listener, sort_keys=True) + "\n")
    assert listener.name == "grpc/server?xds.resource.listening_address=127.0.0.1:50051"
    assert (listener.address.socket_address.address, listener.address.socket_address.port_value) == (
        "127.0.0.1",
        50051,
    )
    (chain,) = listener.filter_chains
    (hcm,) = chain.filters
    manager = hcm_pb2.HttpConnectionManager()
    assert hcm.typed_config.Unpack(manager)
    (route,) = manager.route_config.virtual_hosts[0].routes
    assert route.HasField("non_forwarding_action")
    assert [f.name for f in manager.http_filters] == ["envoy.filters.http.router"]
    context = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value is True
    common = context.common_tls_context
    assert common.tls_certificate_provider_instance.instance_name == grpc_tls.CERT_PROVIDER
    assert common.validation_context.ca_certificate_provider_instance.instance_name == grpc_tls.CERT_PROVIDER
    assert not common.validation_context.match_subject_alt_names  # NACKed on servers
    assert not common.HasField("tls_params")


def test_an_ipv6_server_listener_carries_the_bare_address() -> None:
    listener = listener_pb2.Listener.FromString(grpc_tls.grpc_server_listener("::1", 443))
    assert listener.name == SERVER_LISTENER_PREFIX + "[::1]:443"
    assert listener.address.socket_address.address == "::1"


@pytest.mark.parametrize(
    ("name", "host", "port"),
    [
        (SERVER_LISTENER_PREFIX + "127.0.0.1:50051", "127.0.0.1", 50051),
        (SERVER_LISTENER_PREFIX + "0.0.0.0:1", "0.0.0.0", 1),
        (SERVER_LISTENER_PREFIX + "[::1]:65535", "::1", 65535),
        (SERVER_LISTENER_PREFIX + "[::]:8443", "::", 8443),
    ],
)
def test_server_listener_names_parse(name: str, host: str, port: int) -> None:
    assert parse_server_listener(name) == (host, port)
    assert server_listener_name(host, port) == name
    assert server_key_name(server_key(name)) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("grpc/server?other=1.2.3.4:5", "a server listener is"),
        (SERVER_LISTENER_PREFIX, "IP:PORT"),
        (SERVER_LISTENER_PREFIX + "127.0.0.1", "IP:PORT"),
        (SERVER_LISTENER_PREFIX + "127.0.0.1:0", "port must be a number 1-65535"),
        (SERVER_LISTENER_PREFIX + "127.0.0.1:65536", "port must be a number 1-65535"),
        (SERVER_LISTENER_PREFIX + "127.0.0.1:\uff18\uff10", "port must be a number 1-65535"),
        (SERVER_LISTENER_PREFIX + "localhost:80", "is not an IP address"),
        (SERVER_LISTENER_PREFIX + "::1:80", "IPv6 address goes in brackets"),
        (SERVER_LISTENER_PREFIX + "[127.0.0.1]:80", "IPv6 address goes in brackets"),
        (SERVER_LISTENER_PREFIX + "[0:0::1]:80", "write the address as gRPC does (::1)"),
        (SERVER_LISTENER_PREFIX + "1" * 5000 + ":80", "too long"),
    ],
)
def test_malformed_server_listener_names_are_refused_with_the_reason(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_server_listener(name)
    if name.startswith(SERVER_LISTENER_PREFIX):
        reason = validate_name(LISTENER, name)
        assert reason is not None and why in reason and len(reason) < 300


def test_the_vip_source_answers_server_listeners_itself_outside_the_unknown_vip_budget() -> None:
    transport = _Transport()
    source = VipSource(transport, VipSourceSettings(max_unknown_vips=1))
    name = server_listener_name("127.0.0.1", 50051)
    assert source.validate(LISTENER, name) is None
    key = source.key_of(LISTENER, name)
    assert key == "@grpc-server/127.0.0.1:50051"
    provisional = source.provisional(key)
    assert provisional is not None
    found = source.resolve(provisional, LISTENER, name, GRPC_KIND)
    assert found is not None and found.body == grpc_tls.grpc_server_listener("127.0.0.1", 50051)
    (fetched,) = asyncio.run(source.fetch([key]))  # never asks a builder
    assert fetched.get(LISTENER, name) == found
    for port in range(2, 10):  # many servers hold no VIP budget
        assert source.validate(LISTENER, server_listener_name("127.0.0.1", port)) is None
    assert source.statistics().vip_keys_held == 0
    assert "write the address as gRPC does" in (source.validate(LISTENER, SERVER_LISTENER_PREFIX + "[0::1]:1") or "")
    assert source.provisional("@grpc-server/not-an-address") is None
