"""Tests of the policy loader: every kind of bad document rejected with its field path, all-or-nothing applies,
the `*` defaults merged field by field, and round trips through to_document and the storage codec."""

from __future__ import annotations

import json
import pickle

import msgpack
import pytest

from meshactors.errors import CodecError, InvalidArgument
from meshactors.policy import codec
from meshactors.policy.load import (
    InvalidPolicy,
    errors_of,
    format_duration,
    from_document,
    load,
    merge,
    parse_duration,
    to_document,
)
from meshactors.policy.model import MAX_ROUTES, Policy

EXAMPLE = """
vip: reviews
destination:
  loadBalancer: LEAST_REQUEST
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
"""


def errors(text: str, **kwargs: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidPolicy) as info:
        load(text, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, InvalidArgument)
    return errors_of(info.value)


def fields(text: str) -> list[str]:
    return [f for f, _ in errors(text)]


# --- the example of the issue -----------------------------------------------------------------------------


def test_issue_example_loads() -> None:
    (policy,) = load(EXAMPLE)
    assert policy.vip == "reviews"
    assert policy.destination is not None and policy.routing is not None
    assert policy.destination.load_balancer == "LEAST_REQUEST"
    assert policy.destination.circuit_breaker is not None
    assert policy.destination.circuit_breaker.retry_budget_percent == 20
    assert policy.routing.timeout_ms == 2000
    assert policy.routing.retries is not None and policy.routing.retries.per_try_timeout_ms == 500
    assert policy.routing.routes is not None and policy.routing.routes[0].match is not None
    assert policy.routing.routes[0].match.headers == (("x-canary", "true"),)
    assert policy.routing.faults is not None and policy.routing.faults.headers == (("x-fault", "on"),)
    assert policy.versions() == ("v1", "v2")
    assert merge(None, policy) == policy


def test_json_loads_like_yaml() -> None:
    (from_yaml,) = load(EXAMPLE)
    assert load(json.dumps(to_document(from_yaml))) == [from_yaml]
    # a JSON array holds several documents
    assert load(json.dumps([{"vip": "a"}, {"vip": "b"}])) == [Policy("a"), Policy("b")]


# --- rejected, with the field path ------------------------------------------------------------------------


def test_split_weights_must_add_up() -> None:
    text = "vip: reviews\nrouting: {split: [{version: v1, weight: 90}, {version: v2, weight: 20}]}"
    assert errors(text) == [("routing.split[1].weight", "weights must add up to 100, got 110")]
    with pytest.raises(InvalidArgument, match=r"^routing.split\[1\].weight: weights must add up to 100, got 110$"):
        load(text)


@pytest.mark.parametrize(
    ("doc", "field", "reason"),
    [
        ("routing: {timout: 2s}", "routing.timout", "unknown field"),
        ("destination: {loadBalancer: FASTEST}", "destination.loadBalancer", "unknown value 'FASTEST'"),
        ("routing: {timeout: 2}", "routing.timeout", "must be a duration"),
        ("routing: {timeout: 2 s}", "routing.timeout", "is not a duration"),
        ("routing: {timeout: 0.5ms}", "routing.timeout", "whole number of milliseconds"),
        ("routing: {timeout: 0s}", "routing.timeout", "must be longer than 0"),
        ("routing: {timeout: 2d}", "routing.timeout", "is not a duration"),
        ("routing: {timeout: 25h}", "routing.timeout", "out of range"),
        ("routing: {mirror: {vip: Shadow}}", "routing.mirror.vip", "not a lowercase DNS name"),
        ("routing: {mirror: {percent: 10}}", "routing.mirror.vip", "is required"),
        ("routing: {mirror: {vip: s, percent: 101}}", "routing.mirror.percent", "out of range 0-100"),
        ("routing: {mirror: {vip: s, percent: '10%'}}", "routing.mirror.percent", "must be a percentage"),
        ("routing: {faults: {abort: {httpStatus: 503, percent: -1}}}", "routing.faults.abort.percent", "out of range"),
        ("routing: {faults: {abort: {percent: 5}}}", "routing.faults.abort", "exactly one of httpStatus, grpcStatus"),
        ("routing: {faults: {abort: {httpStatus: 99}}}", "routing.faults.abort.httpStatus", "out of range 200-599"),
        ("routing: {faults: {delay: {percent: 5}}}", "routing.faults.delay.fixed", "is required"),
        (
            "routing: {faults: {abort: {httpStatus: 503}, headers: {x-f: on}}}",
            "routing.faults.headers['x-f']",
            "value must be a string (quote it)",
        ),
        (
            "routing: {split: [{version: v1, weight: 50}, {version: v1, weight: 50}]}",
            "routing.split[1].version",
            "already split[0]",
        ),
        ("routing: {split: [{version: v1}]}", "routing.split[0].weight", "is required"),
        ("routing: {split: [{version: v1, weight: 100.0}]}", "routing.split[0].weight", "whole number"),
        ("routing: {split: [{version: 'v 1', weight: 100}]}", "routing.split[0].version", "not a version label"),
        ("routing: {split: []}", "routing.split", "must not be empty"),
        ("routing: {split: {version: v1}}", "routing.split", "must be a list"),
        ("routing: {routes: [{version: v2}]}", "routing.routes[0].match", "is required"),
        ("routing: {routes: [{match: {}, version: v2}]}", "routing.routes[0].match", "needs headers or a prefix"),
        (
            "routing: {routes: [{match: {prefix: api}, version: v2}]}",
            "routing.routes[0].match.prefix",
            "not a path prefix",
        ),
        (
            "routing: {routes: [{match: {headers: {X-Canary: 'true'}}, version: v2}]}",
            "routing.routes[0].match.headers['X-Canary']",
            "lowercase HTTP header name",
        ),
        ("routing: {retries: {retryOn: [5xx, sometimes]}}", "routing.retries.retryOn[1]", "unknown value"),
        ("routing: {retries: {retryOn: [5xx, 5xx]}}", "routing.retries.retryOn[1]", "listed twice"),
        ("routing: {retries: {attempts: 11}}", "routing.retries.attempts", "out of range 0-10"),
        ("routing: {retries: {attempts: true}}", "routing.retries.attempts", "must be a whole number"),
        (
            "routing: {retries: {retriableStatusCodes: [700]}}",
            "routing.retries.retriableStatusCodes[0]",
            "out of range",
        ),
        (
            "routing: {retries: {backoff: {baseInterval: 1s, maxInterval: 10ms}}}",
            "routing.retries.backoff.maxInterval",
            "must not be shorter",
        ),
        ("routing: {hedging: {onPerTryTimeout: yes please}}", "routing.hedging.onPerTryTimeout", "true or false"),
        ("routing: {timeout: }", "routing.timeout", "has no value"),
        ("destination: {consistentHash: {header: x-a, cookie: c}}", "destination.consistentHash", "exactly one"),
        ("destination: {consistentHash: {sourceIp: false}}", "destination.consistentHash.sourceIp", "set it to true"),
        (
            "destination: {consistentHash: {header: x-a, cookieTtl: 1h}}",
            "destination.consistentHash.cookieTtl",
            "only to a cookie",
        ),
        ("destination: {circuitBreaker: {maxRequests: -1}}", "destination.circuitBreaker.maxRequests", "out of range"),
        (
            "destination: {outlierDetection: {maxEjectionPercent: 50.5}}",
            "destination.outlierDetection.maxEjectionPercent",
            "whole number",
        ),
        (
            "destination: {outlierDetection: {failurePercentage: {minimumHosts: 3}}}",
            "destination.outlierDetection.failurePercentage.threshold",
            "is required",
        ),
        ("destination: 3", "destination", "must be a map"),
    ],
)
def test_bad_field_rejected_with_its_path(doc: str, field: str, reason: str) -> None:
    found = errors("vip: reviews\n" + doc)
    assert found[0][0] == field, found
    assert reason in found[0][1], found


def test_bounded_sizes() -> None:
    routes = ", ".join(f"{{match: {{prefix: /p{i}}}, version: v1}}" for i in range(MAX_ROUTES + 1))
    assert errors(f"vip: a\nrouting: {{routes: [{routes}]}}") == [
        ("routing.routes", f"{MAX_ROUTES + 1} entries, at most {MAX_ROUTES} allowed")
    ]
    headers = ", ".join(f"x-h{i}: v" for i in range(9))
    assert fields(f"vip: a\nrouting: {{routes: [{{match: {{headers: {{{headers}}}}}, version: v1}}]}}") == [
        "routing.routes[0].match.headers"
    ]
    assert fields(f"vip: {'a' * 254}") == ["vip"]
    assert fields(f"vip: a\ndestination: {{consistentHash: {{header: x-{'a' * 200}}}}}") == [
        "destination.consistentHash.header"
    ]
    assert fields("vip: a\n" + "#" * (1 << 20)) == ["document"]


def test_document_level_errors() -> None:
    assert fields("routing: {timeout: 1s}") == ["vip"]
    assert fields("vip: Reviews") == ["vip"]
    assert fields("- 1\n- 2") == ["document", "document"]
    assert fields("") == ["document"]
    assert "not valid YAML" in errors("vip: [unclosed")[0][1]
    assert "found the key 'vip' twice" in errors("vip: a\nvip: b")[0][1]
    assert fields("vip: a\nrouting: {timeout: 1s, timeout: 2s}") == ["document"]


def test_every_error_is_reported_not_just_the_first() -> None:
    text = """
vip: reviews
destination: {loadBalancer: FAST, consistentHash: {header: X}}
routing:
  split: [{version: v1, weight: 90}, {version: v2, weight: 20}]
  bogus: 1
  faults: {delay: {fixed: 100ms, percent: 500}}
"""
    assert fields(text) == [
        "destination.loadBalancer",
        "destination.consistentHash.header",
        "routing.bogus",
        "routing.faults.delay.percent",
        "routing.split[1].weight",
    ]


def test_mesh_wide_document_cannot_name_versions_or_vips() -> None:
    assert fields("vip: '*'\nrouting: {split: [{version: v1, weight: 100}], mirror: {vip: x}}") == [
        "routing.split",
        "routing.mirror",
    ]


def test_effective_policy_rules() -> None:
    assert errors("vip: a\ndestination: {loadBalancer: ROUND_ROBIN, consistentHash: {header: x-u}}") == [
        ("destination.consistentHash", "needs loadBalancer RING_HASH or MAGLEV, got ROUND_ROBIN")
    ]
    assert fields("vip: a\ndestination: {loadBalancer: MAGLEV}") == ["destination.loadBalancer"]
    assert fields("vip: a\nrouting: {hedging: {onPerTryTimeout: true}}") == ["routing.hedging.onPerTryTimeout"]
    assert fields("vip: a\nrouting: {timeout: 1s, retries: {perTryTimeout: 1s}}") == ["routing.retries.perTryTimeout"]
    assert fields("vip: a\nrouting: {faults: {headers: {x-f: '1'}}}") == ["routing.faults"]
    assert fields("vip: a\nrouting: {mirror: {vip: a}}") == ["routing.mirror.vip"]
    # a hash key alone means RING_HASH
    (policy,) = load("vip: a\ndestination: {consistentHash: {header: x-u}}")
    assert policy.effective_lb() == "RING_HASH"


# --- several documents: all or nothing --------------------------------------------------------------------


def test_multi_document_all_or_nothing() -> None:
    good = "vip: a\nrouting: {timeout: 1s}\n---\nvip: b\ndestination: {loadBalancer: RANDOM}\n"
    assert [p.vip for p in load(good)] == ["a", "b"]
    bad = good + "---\nvip: c\nrouting: {timeout: forever}\n---\nvip: d\nrouting: {retries: {attempts: 99}}\n"
    with pytest.raises(InvalidPolicy) as info:
        load(bad)
    assert [(e.document, e.vip, e.field) for e in info.value.errors] == [
        (3, "c", "routing.timeout"),
        (4, "d", "routing.retries.attempts"),
    ]
    assert str(info.value).startswith("document 3 (vip 'c'): routing.timeout: ")
    assert info.value.field == "routing.timeout"  # the first error's, for callers that show one


def test_duplicate_vips_in_one_apply() -> None:
    with pytest.raises(InvalidPolicy) as info:
        load("vip: a\n---\nvip: b\n---\nvip: a\nrouting: {timeout: 1s}\n")
    (err,) = info.value.errors
    assert (err.document, err.field) == (3, "vip")
    assert "also document 1" in err.reason


def test_empty_documents_between_separators_are_skipped() -> None:
    assert [p.vip for p in load("---\nvip: a\n---\n---\nvip: b\n---\n")] == ["a", "b"]


def test_effective_rules_use_the_defaults_of_the_same_apply_or_the_given_ones() -> None:
    vip_doc = "vip: a\nrouting: {hedging: {onPerTryTimeout: true}}\n"
    defaults_doc = "vip: '*'\nrouting: {retries: {perTryTimeout: 100ms}}\n"
    assert [p.vip for p in load(defaults_doc + "---\n" + vip_doc)] == ["*", "a"]
    (defaults,) = load(defaults_doc)
    assert [p.vip for p in load(vip_doc, defaults=defaults)] == ["a"]
    assert fields(vip_doc) == ["routing.hedging.onPerTryTimeout"]


# --- merge: mesh-wide defaults overridden field by field --------------------------------------------------


def test_merge_field_by_field() -> None:
    defaults, vip = load(
        """
vip: '*'
destination:
  circuitBreaker: {maxConnections: 1000, maxRequests: 1000}
  outlierDetection: {consecutive5xxErrors: 5, interval: 10s}
routing:
  timeout: 5s
  retries: {attempts: 2, retryOn: [connect-failure]}
  faults: {delay: {fixed: 1s}, headers: {x-chaos: 'on'}}
---
vip: reviews
destination:
  circuitBreaker: {maxRequests: 50}
routing:
  timeout: 2s
  retries: {perTryTimeout: 500ms}
  faults: {abort: {httpStatus: 503, percent: 10}}
"""
    )
    merged = merge(defaults, vip)
    assert merged.vip == "reviews"
    doc = to_document(merged)
    assert doc == {
        "vip": "reviews",
        "destination": {
            "circuitBreaker": {"maxConnections": 1000, "maxRequests": 50},
            "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s"},
        },
        "routing": {
            "timeout": "2s",
            "retries": {"attempts": 2, "perTryTimeout": "500ms", "retryOn": ["connect-failure"]},
            "faults": {
                "delay": {"fixed": "1s"},
                "abort": {"httpStatus": 503, "percent": 10},
                "headers": {"x-chaos": "on"},
            },
        },
    }
    # a VIP without a document of its own gets the defaults
    assert to_document(merge(defaults, Policy("other")))["routing"]["timeout"] == "5s"


def test_merge_replaces_atomic_objects_whole() -> None:
    defaults, vip = load(
        "vip: '*'\ndestination: {consistentHash: {cookie: s, cookieTtl: 1h}}\n---\n"
        "vip: a\ndestination: {consistentHash: {header: x-u}}\n"
    )
    merged = merge(defaults, vip)
    assert to_document(merged)["destination"] == {"consistentHash": {"header": "x-u"}}


def test_merge_checks_the_effective_policy() -> None:
    (defaults,) = load("vip: '*'\ndestination: {loadBalancer: LEAST_REQUEST}")
    (vip,) = load("vip: a\ndestination: {consistentHash: {header: x-u}}")
    with pytest.raises(InvalidPolicy) as info:
        merge(defaults, vip)
    assert info.value.field == "destination.consistentHash"
    with pytest.raises(InvalidArgument):
        merge(vip, vip)  # the defaults must be the '*' document


# --- round trips ------------------------------------------------------------------------------------------


def test_to_document_round_trip() -> None:
    (policy,) = load(EXAMPLE)
    doc = to_document(policy)
    assert doc["routing"]["split"] == [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}]
    assert doc["destination"]["adaptiveConcurrency"]["minRttInterval"] == "1m"
    assert from_document(doc) == policy
    assert from_document(json.loads(json.dumps(doc))) == policy


def test_codec_round_trip_and_refusals() -> None:
    (policy,) = load(EXAMPLE)
    data = codec.encode(policy)
    assert codec.decode(data) == policy
    assert codec.encode(codec.decode(data)) == data
    assert codec.decode(codec.encode(Policy("*"))) == Policy("*")
    with pytest.raises(CodecError, match="schema version"):
        codec.decode(msgpack.packb([2, "policy", {"vip": "a"}]))
    with pytest.raises(CodecError, match="expected 'policy'"):
        codec.decode(msgpack.packb([1, "instance", {"vip": "a"}]))
    with pytest.raises(CodecError, match="no longer validates"):
        codec.decode(msgpack.packb([1, "policy", {"vip": "a", "routing": {"timeout": "x"}}]))
    with pytest.raises(CodecError):
        codec.decode(b"\xc1")


def test_durations() -> None:
    assert [parse_duration(t) for t in ("100ms", "2s", "1.5s", "1m", "1h", "0.25s")] == [
        100,
        2000,
        1500,
        60_000,
        3_600_000,
        250,
    ]
    assert [format_duration(ms) for ms in (100, 2000, 1500, 60_000, 90_000, 3_600_000)] == [
        "100ms",
        "2s",
        "1500ms",
        "1m",
        "90s",
        "1h",
    ]
    for bad in ("1", "1.2.3s", "-1s", "1 s", "1sec", "0.1ms"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_errors_survive_pickling() -> None:
    with pytest.raises(InvalidPolicy) as info:
        load("vip: a\n---\nvip: a\n")
    again = pickle.loads(pickle.dumps(info.value))
    assert again.field == "vip" and again.errors[0].document == 2
    assert str(again) == str(info.value)


def test_a_trailing_newline_is_not_a_duration() -> None:
    # Python's `$` matches before a final "\n"; the duration pattern must match the whole text.
    with pytest.raises(ValueError):
        parse_duration("2s\n")
