"""Tests of the policy compiler: golden resources per feature for Envoy and gRPC, what gRPC leaves out, and the
real Envoy 1.40 accepting every compiled Cluster and VirtualHost (`envoy --mode validate`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.adaptive_concurrency.v3 import adaptive_concurrency_pb2  # noqa: F401
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format
from xds.type.v3 import typed_struct_pb2  # noqa: F401

from meshactors.envoy import policy as compiler
from meshactors.envoy import resources
from meshactors.envoy.bootstrap import envoy_bootstrap, outbound_route_config
from meshactors.envoy.resources import Endpoint
from meshactors.policy.load import load, merge
from meshactors.policy.model import Policy, version_cluster
from meshactors.policy.problems import version_problems
from meshactors.resources import types
from meshactors.resources.snapshot import Snapshot
from tests.unit.test_envoy_resources import check_golden, envoy_binary

DECODERS = {
    types.CLUSTER: cluster_pb2.Cluster,
    types.VIRTUAL_HOST: route_components_pb2.VirtualHost,
    types.LISTENER: listener_pb2.Listener,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}

# One document per feature (the VIP is `reviews` in each); "full" holds every knob at once.
FEATURES: dict[str, str] = {
    "none": "{}",
    "least_request": "destination: {loadBalancer: LEAST_REQUEST}",
    "random": "destination: {loadBalancer: RANDOM, connectTimeout: 250ms}",
    "ring_hash_header": "destination: {consistentHash: {header: x-user, minimumRingSize: 1024}}",
    "ring_hash_cookie": "destination: {loadBalancer: RING_HASH, consistentHash: {cookie: session, cookieTtl: 1h}}",
    "maglev_source_ip": "destination: {loadBalancer: MAGLEV, consistentHash: {sourceIp: true}}",
    "circuit_breaker": (
        "destination: {circuitBreaker: {maxConnections: 100, maxPendingRequests: 50, maxRequests: 200,"
        " maxRetries: 3, retryBudgetPercent: 20, retryBudgetMinConcurrency: 5}}"
    ),
    "outlier_consecutive": (
        "destination: {outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s,"
        " maxEjectionPercent: 50}}"
    ),
    "outlier_success_rate": (
        "destination: {outlierDetection: {interval: 5s, successRate: {minimumHosts: 3, requestVolume: 20,"
        " stdevFactor: 1.9}, failurePercentage: {threshold: 80, minimumHosts: 2}, maxEjectionTime: 5m}}"
    ),
    "adaptive_concurrency": (
        "destination: {adaptiveConcurrency: {enabled: true, minRttInterval: 60s, maxConcurrencyLimit: 1000,"
        " samplePercentile: 90, minConcurrency: 2}}"
    ),
    "split": "routing: {split: [{version: v1, weight: 90}, {version: v2, weight: 10}]}",
    "split_zero": "routing: {split: [{version: v1, weight: 100}, {version: v2, weight: 0}]}",
    "header_route": (
        "routing: {routes: [{match: {headers: {x-canary: 'true'}}, version: v2},"
        " {match: {prefix: /admin, headers: {x-team: ops}}, version: v1}]}"
    ),
    "mirror": "routing: {mirror: {vip: reviews-shadow, percent: 10}}",
    "timeout_retries": (
        "routing: {timeout: 2s, retries: {attempts: 3, perTryTimeout: 500ms, retryOn: [5xx, reset, connect-failure],"
        " retriableStatusCodes: [503]}}"
    ),
    "grpc_retries": (
        "routing: {timeout: 1500ms, retries: {attempts: 6, retryOn: [unavailable, deadline-exceeded],"
        " backoff: {baseInterval: 25ms, maxInterval: 250ms}}}"
    ),
    "hedging": "routing: {retries: {perTryTimeout: 100ms}, hedging: {onPerTryTimeout: true}}",
    "faults": (
        "routing: {faults: {delay: {fixed: 100ms, percent: 5}, abort: {httpStatus: 503, percent: 1.5},"
        " headers: {x-fault: 'on'}, maxActive: 10}}"
    ),
    "faults_grpc_status": "routing: {faults: {abort: {grpcStatus: 14}}}",
    "full": """
destination:
  loadBalancer: RING_HASH
  consistentHash: {header: x-user}
  localityFailover: true
  circuitBreaker: {maxConnections: 100, maxPendingRequests: 50, maxRequests: 200, maxRetries: 3, retryBudgetPercent: 20}
  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  adaptiveConcurrency: {enabled: true, minRttInterval: 60s, maxConcurrencyLimit: 1000}
routing:
  split: [{version: v1, weight: 90}, {version: v2, weight: 10}]
  routes: [{match: {headers: {x-canary: "true"}}, version: v2}]
  mirror: {vip: reviews-shadow, percent: 10}
  timeout: 2s
  retries: {attempts: 3, perTryTimeout: 500ms, retryOn: [5xx, reset, connect-failure], retriableStatusCodes: [503]}
  hedging: {onPerTryTimeout: true}
  faults: {delay: {fixed: 100ms, percent: 5}, abort: {httpStatus: 503, percent: 1}, headers: {x-fault: "on"}}
""",
}


def policy_of(feature: str) -> Policy:
    text = FEATURES[feature]
    body = text if text.lstrip().startswith(("destination", "routing")) else ""
    doc = "vip: reviews\n" + (body or "")
    return merge(None, load(doc)[0])


def decode(res: types.VersionedResource) -> dict[str, Any]:
    assert res.body is not None
    return json_format.MessageToDict(DECODERS[res.type_url].FromString(res.body))


def render(compiled: compiler.Compiled) -> str:
    out = {
        "left_out": [[lo.field, lo.reason] for lo in compiled.left_out],
        "resources": [
            {
                "type": r.type_url.rsplit(".", 1)[-1],
                "name": r.name,
                "variant": r.variant,
                "version": r.version,
                "refs": [[t.rsplit(".", 1)[-1], n] for t, n in r.refs],
                "body": decode(r),
            }
            for r in compiled.resources
        ],
    }
    return json.dumps(out, indent=2, sort_keys=True) + "\n"


# --- golden -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_golden_envoy(feature: str) -> None:
    check_golden(f"policy_{feature}_envoy.json", render(compiler.compile_envoy(policy_of(feature))))


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_golden_grpc(feature: str) -> None:
    check_golden(f"policy_{feature}_grpc.json", render(compiler.compile_grpc(policy_of(feature))))


ENDPOINTS = [
    Endpoint("10.0.0.1", 8080, "zone-a", 1, "i-1", "v1"),
    Endpoint("10.0.0.2", 8080, "zone-a", 1, "i-2", "v2"),
    Endpoint("10.0.1.1", 8080, "zone-b", 2, "i-3", "v1"),
    Endpoint("10.0.1.2", 8080, "zone-b", 1, "i-4", ""),
]


def render_assignments(assignments: tuple[types.VersionedResource, ...]) -> str:
    return json.dumps({r.name: decode(r) for r in assignments}, indent=2, sort_keys=True) + "\n"


def test_golden_load_assignments_by_version() -> None:
    check_golden(
        "policy_split_load_assignments.json",
        render_assignments(compiler.load_assignments(policy_of("split"), ENDPOINTS)),
    )


def test_golden_locality_failover() -> None:
    policy = merge(None, load("vip: reviews\ndestination: {localityFailover: true}")[0])
    check_golden(
        "policy_locality_failover_load_assignments.json",
        render_assignments(compiler.load_assignments(policy, ENDPOINTS, caller_zone="zone-b")),
    )


# --- shape ------------------------------------------------------------------------------------------------


def test_no_policy_compiles_to_todays_cluster_and_listener() -> None:
    policy = Policy("reviews")
    envoy = compiler.compile_envoy(policy)
    assert [r.type_url for r in envoy.resources] == [types.CLUSTER]
    assert envoy.resources[0].body == resources.eds_cluster("reviews")
    assert envoy.resources[0].variant == types.ENVOY_KIND
    assert not compiler.needs_virtual_host(policy)
    grpc = compiler.compile_grpc(policy)
    assert grpc.get(types.CLUSTER, "reviews").body == resources.eds_cluster("reviews")
    listener = listener_pb2.Listener.FromString(grpc.get(types.LISTENER, "reviews").body)
    assert listener.name == "reviews"
    assert envoy.left_out == grpc.left_out == ()


def test_destination_only_policy_needs_no_virtual_host() -> None:
    for feature in ("least_request", "ring_hash_header", "circuit_breaker", "outlier_consecutive"):
        compiled = compiler.compile_envoy(policy_of(feature))
        assert compiled.names(types.VIRTUAL_HOST) == [], feature
    # adaptive concurrency acts through the route (filter_chain per-filter config), so it needs one
    assert compiler.compile_envoy(policy_of("adaptive_concurrency")).names(types.VIRTUAL_HOST) == [
        "meshactors_outbound/reviews"
    ]


def test_version_clusters_and_refs_are_consistent() -> None:
    policy = policy_of("full")
    compiled = compiler.compile_envoy(policy)
    assert compiled.names(types.CLUSTER) == ["reviews", "reviews~v1", "reviews~v2"]
    assignments = compiler.load_assignments(policy, ENDPOINTS)
    snapshot = Snapshot.of("reviews", (*compiled.resources, *assignments))
    # only the mirror VIP's cluster is outside this VIP's snapshot: delivery must push it first
    missing = [(i.referrer[1], i.missing[1]) for i in snapshot.consistent()]
    assert missing == [("meshactors_outbound/reviews", "reviews-shadow")]
    assert snapshot.consistent(available=[(types.CLUSTER, "reviews-shadow")]) == []
    grpc = compiler.compile_grpc(policy, ["reviews", "reviews:50051"])
    assert grpc.names(types.LISTENER) == ["reviews", "reviews:50051"]
    assert Snapshot.of("reviews", (*grpc.resources, *assignments)).consistent() == []
    assert all(r.variant == types.GRPC_KIND for r in grpc.resources)


def test_split_weights_and_zero_weight_versions() -> None:
    vhost = route_components_pb2.VirtualHost.FromString(
        compiler.compile_envoy(policy_of("split")).get(types.VIRTUAL_HOST, "meshactors_outbound/reviews").body
    )
    assert list(vhost.domains) == ["reviews", "reviews:*"]
    weighted = vhost.routes[-1].route.weighted_clusters.clusters
    assert [(c.name, c.weight.value) for c in weighted] == [("reviews~v1", 90), ("reviews~v2", 10)]
    # a version at weight 0 gets no cluster and no traffic; the one left takes the route directly
    zero = compiler.compile_envoy(policy_of("split_zero"))
    assert zero.names(types.CLUSTER) == ["reviews", "reviews~v1"]
    vhost = route_components_pb2.VirtualHost.FromString(
        zero.get(types.VIRTUAL_HOST, "meshactors_outbound/reviews").body
    )
    assert vhost.routes[-1].route.cluster == "reviews~v1"


def test_grpc_leaves_out_what_it_cannot_honour() -> None:
    left = {lo.field for lo in compiler.compile_grpc(policy_of("full")).left_out}
    assert left == {
        "destination.circuitBreaker.maxConnections",
        "destination.circuitBreaker.maxPendingRequests",
        "destination.circuitBreaker.maxRetries",
        "destination.circuitBreaker.retryBudgetPercent",
        "destination.outlierDetection.consecutive5xxErrors",
        "destination.outlierDetection",
        "destination.adaptiveConcurrency",
        "routing.retries.retryOn",
        "routing.retries",  # no gRPC condition left: the whole retry policy (perTryTimeout, codes) is out
        "routing.hedging",
        "routing.mirror",
    }
    compiled = compiler.compile_grpc(policy_of("full"))
    cluster = cluster_pb2.Cluster.FromString(compiled.get(types.CLUSTER, "reviews").body)
    assert not cluster.HasField("outlier_detection")
    assert not cluster.typed_extension_protocol_options  # no HttpProtocolOptions for gRPC
    assert [t.max_requests.value for t in cluster.circuit_breakers.thresholds] == [200]
    assert not cluster.circuit_breakers.thresholds[0].HasField("max_connections")
    listener = listener_pb2.Listener.FromString(compiled.get(types.LISTENER, "reviews").body)
    manager = hcm_pb2.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(manager)
    assert [f.name for f in manager.http_filters] == ["envoy.filters.http.fault", "envoy.filters.http.router"]
    route = manager.route_config.virtual_hosts[0].routes[-1].route
    assert not route.HasField("retry_policy") and not route.HasField("hedge_policy")
    assert not route.request_mirror_policies and not route.HasField("timeout")
    assert route.max_stream_duration.max_stream_duration.seconds == 2
    assert route.hash_policy[0].header.header_name == "x-user"


@pytest.mark.parametrize(
    ("feature", "lb"),
    [("least_request", "ROUND_ROBIN"), ("random", "ROUND_ROBIN"), ("maglev_source_ip", "ROUND_ROBIN")],
)
def test_grpc_lb_fallbacks(feature: str, lb: str) -> None:
    compiled = compiler.compile_grpc(policy_of(feature))
    cluster = cluster_pb2.Cluster.FromString(compiled.get(types.CLUSTER, "reviews").body)
    assert cluster_pb2.Cluster.LbPolicy.Name(cluster.lb_policy) == lb
    assert compiled.left_out


def test_grpc_maglev_on_a_header_becomes_ring_hash() -> None:
    policy = merge(None, load("vip: reviews\ndestination: {loadBalancer: MAGLEV, consistentHash: {header: x-u}}")[0])
    compiled = compiler.compile_grpc(policy)
    cluster = cluster_pb2.Cluster.FromString(compiled.get(types.CLUSTER, "reviews").body)
    assert cluster.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert [lo.field for lo in compiled.left_out] == ["destination.loadBalancer"]


def test_same_policy_same_bytes() -> None:
    a = compiler.compile_envoy(policy_of("full"))
    b = compiler.compile_envoy(policy_of("full"))
    assert [r.version for r in a.resources] == [r.version for r in b.resources]


def test_endpoints_with_version() -> None:
    assert [ep.instance_id for ep in compiler.endpoints_with_version(ENDPOINTS, "v1")] == ["i-1", "i-3"]
    assert compiler.endpoints_with_version(ENDPOINTS, "v9") == ()
    assert version_cluster("reviews", "v1") == "reviews~v1"


def test_mesh_wide_document_is_not_compiled() -> None:
    with pytest.raises(ValueError):
        compiler.compile_envoy(Policy("*"))


def test_version_problems() -> None:
    policy = merge(
        None,
        load(
            "vip: reviews\nrouting: {split: [{version: v1, weight: 80}, {version: v3, weight: 20}],"
            " routes: [{match: {prefix: /x}, version: v4}]}"
        )[0],
    )
    problems = version_problems("reviews", policy, ["v1", "v1", ""])
    assert [p for p, _ in problems] == ["routing.split[1].version", "routing.routes[0].version", "routing.split"]
    assert "split names version v3 with no UP instance" in problems[0][1]
    assert version_problems("reviews", policy, ["v1", "v3", "v4"]) == []


# --- the real Envoy 1.40 accepts them ---------------------------------------------------------------------


def _validate(config: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _mirror_cluster(policy: Policy) -> list[dict[str, Any]]:
    routing = policy.routing
    if routing is None or routing.mirror is None:
        return []
    return [{"name": routing.mirror.vip, "type": "STATIC", "load_assignment": {"cluster_name": routing.mirror.vip}}]


def test_real_envoy_accepts_the_envoy_variant(tmp_path: Path) -> None:
    """Every feature at once, each VIP under its own name: the policy Clusters as static clusters (EDS over
    ADS), every VirtualHost in the outbound listener's static route config, with the listener filters the
    generic bootstrap has for them (fault, filter_chain) before the router."""
    config = envoy_bootstrap([("127.0.0.1", 18000)], "validate-policy")
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    # the virtual hosts go into a static copy of the outbound route table (VHDS needs an RDS one)
    del manager["rds"]
    manager["route_config"] = outbound_route_config(vhds=False)
    hosts = manager["route_config"]["virtual_hosts"]
    clusters = config["static_resources"]["clusters"]
    mirrors: dict[str, dict[str, Any]] = {}
    for feature in sorted(FEATURES):
        vip = f"{feature.replace('_', '-')}"
        policy = policy_of(feature)
        policy = Policy(vip, policy.destination, policy.routing)
        compiled = compiler.compile_envoy(policy)
        for res in compiled.resources:
            if res.type_url == types.CLUSTER:
                clusters.append(decode(res))
            else:
                hosts.insert(0, decode(res))
        mirrors.update({m["name"]: m for m in _mirror_cluster(policy)})
    clusters.extend(mirrors.values())
    _validate(config, tmp_path)


def test_real_envoy_accepts_the_grpc_variant(tmp_path: Path) -> None:
    """Envoy has no api_listener in server mode: each gRPC Listener's HttpConnectionManager (inline routes,
    fault filter) goes into a plain listener of its own, the gRPC Clusters in as static clusters. Envoy being
    stricter than grpcio on field shapes, this catches malformed fields, not what grpcio would NACK."""
    config = envoy_bootstrap([("127.0.0.1", 18000)], "validate-policy-grpc")
    for port, feature in enumerate(sorted(FEATURES), start=21000):
        vip = f"{feature.replace('_', '-')}"
        policy = policy_of(feature)
        policy = Policy(vip, policy.destination, policy.routing)
        for res in compiler.compile_grpc(policy).resources:
            if res.type_url == types.CLUSTER:
                config["static_resources"]["clusters"].append(decode(res))
                continue
            api = decode(res)["apiListener"]["apiListener"]
            api["codecType"] = "AUTO"
            config["static_resources"]["listeners"].append(
                {
                    "name": res.name,
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": api}]}
                    ],
                }
            )
    _validate(config, tmp_path)
