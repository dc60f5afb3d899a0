"""The delta ADS state machine (meshactors.xds.delta) fed with plain requests and a dict-backed view."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from meshactors.errors import InvalidArgument, ResourceExhausted
from meshactors.xds.delta import DeltaStream, Generations
from meshactors.xds.types import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    VIRTUAL_HOST,
    DeltaRequest,
    DeltaResponse,
    ErrorDetail,
    Limits,
    Outcome,
    VersionedResource,
)
from meshactors.xds.view import DictView


def res(type_url: str, name: str, body: bytes | None = b"v1") -> VersionedResource:
    return VersionedResource.of(type_url, name, body)


def names(resp: DeltaResponse) -> list[str]:
    return [r.name for r in resp.resources]


def sub(type_url: str, *subscribe: str, nonce: str = "") -> DeltaRequest:
    return DeltaRequest(type_url=type_url, subscribe=subscribe, response_nonce=nonce)


def ack(stream: DeltaStream, resp: DeltaResponse) -> None:
    out = stream.on_request(DeltaRequest(type_url=resp.type_url, response_nonce=resp.nonce))
    assert out.ack and not out.responses


def nack(stream: DeltaStream, resp: DeltaResponse, message: str = "bad") -> None:
    out = stream.on_request(
        DeltaRequest(type_url=resp.type_url, response_nonce=resp.nonce, error_detail=ErrorDetail(3, message))
    )
    assert out.nack is not None and not out.responses


@pytest.fixture
def view() -> DictView:
    return DictView([res(CLUSTER, "a"), res(CLUSTER, "b"), res(ENDPOINT, "a"), res(ENDPOINT, "b")])


def test_subscribe_sends_existing_name_with_a_nonce_and_reports_interest(view: DictView) -> None:
    stream = DeltaStream(view, stream_id="s1")
    out = stream.on_request(sub(CLUSTER, "a"))
    assert [names(r) for r in out.responses] == [["a"]]
    assert out.responses[0].nonce
    assert out.interest_added == ((CLUSTER, "a"),)
    assert out.responses[0].resources[0] is view.get(CLUSTER, "a")


def test_unknown_name_is_remembered_and_pushed_when_it_appears(view: DictView) -> None:
    stream = DeltaStream(view)
    out = stream.on_request(sub(CLUSTER, "later"))
    assert out.responses == ()
    assert out.interest_added == ((CLUSTER, "later"),)
    assert stream.on_update(view.put(res(CLUSTER, "other"))) == []  # not subscribed
    [resp] = stream.on_update(view.put(res(CLUSTER, "later")))
    assert names(resp) == ["later"]


def test_legacy_wildcard_first_request_without_names(view: DictView) -> None:
    stream = DeltaStream(view)
    out = stream.on_request(DeltaRequest(type_url=CLUSTER))
    assert out.interest_added == ((CLUSTER, "*"),)
    assert [names(r) for r in out.responses] == [["a", "b"]]
    [added] = stream.on_update(view.put(res(CLUSTER, "c")))
    assert names(added) == ["c"]
    [gone] = stream.on_update(view.delete(CLUSTER, "a"))
    assert gone.removed == ("a",) and gone.resources == ()
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and stats.wildcard


def test_star_wildcard_after_explicit_names(view: DictView) -> None:
    stream = DeltaStream(view)
    [first] = stream.on_request(sub(CLUSTER, "a")).responses
    ack(stream, first)
    out = stream.on_request(sub(CLUSTER, "*"))
    assert out.interest_added == ((CLUSTER, "*"),)
    assert [names(r) for r in out.responses] == [["b"]]  # "a" is already held


def test_empty_request_after_names_is_not_wildcard(view: DictView) -> None:
    stream = DeltaStream(view)
    [first] = stream.on_request(sub(CLUSTER, "a")).responses
    out = stream.on_request(DeltaRequest(type_url=CLUSTER, response_nonce=first.nonce))
    assert out.responses == () and out.interest_added == ()
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and not stats.wildcard
    assert stream.on_update(view.put(res(CLUSTER, "new"))) == []


def test_ack_moves_versions_from_unacked_to_acked(view: DictView) -> None:
    stream = DeltaStream(view)
    [resp] = stream.on_request(sub(CLUSTER, "a")).responses
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None
    assert stats.unacked == (("a", view.get(CLUSTER, "a").version),)  # type: ignore[union-attr]
    assert stats.pending_nonces == (resp.nonce,)
    ack(stream, resp)
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None
    assert stats.acked == (("a", resp.resources[0].version),)
    assert stats.unacked == () and stats.pending_nonces == ()
    assert stream.statistics().acks == 1


def test_nack_keeps_last_good_and_never_resends_the_rejected_version() -> None:
    times = iter([10.0, 100.0, 150.0, 200.0, 300.0])  # the push, its ACK, the next push, its NACK, the fix
    view = DictView([res(CLUSTER, "a", b"good")])
    stream = DeltaStream(view, clock=lambda: next(times))
    [first] = stream.on_request(sub(CLUSTER, "a")).responses
    ack(stream, first)
    good = first.resources[0].version

    [bad] = stream.on_update(view.put(res(CLUSTER, "a", b"bad")))
    bad_version = bad.resources[0].version
    nack(stream, bad, "xDS response validation errors")
    stats = stream.statistics()
    assert stats.last_nack is not None
    assert stats.last_nack.nonce == bad.nonce
    assert stats.last_nack.message == "xDS response validation errors"
    assert stats.last_nack.rejected == (("a", bad_version),)
    assert stats.last_nack.at == 200.0
    cluster_stats = stats.for_type(CLUSTER)
    assert cluster_stats is not None and cluster_stats.acked == (("a", good),)
    assert cluster_stats.last_ack_at == 100.0 and cluster_stats.last_request_nacked

    # The same bad content again (any number of times): nothing is sent.
    assert stream.on_update([(CLUSTER, "a")]) == []
    assert stream.on_update(view.put(res(CLUSTER, "a", b"bad"))) == []
    # A re-subscribe does not resend it either.
    assert stream.on_request(sub(CLUSTER, "a")).responses == ()
    # New content is sent.
    [fixed] = stream.on_update(view.put(res(CLUSTER, "a", b"fixed")))
    assert fixed.resources[0].body == b"fixed"
    assert fixed.nonce not in (first.nonce, bad.nonce)


def test_nack_of_first_response_sends_nothing_until_content_changes() -> None:
    view = DictView([res(CLUSTER, "a", b"bad")])
    stream = DeltaStream(view)
    [bad] = stream.on_request(sub(CLUSTER, "a")).responses
    nack(stream, bad)
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and stats.acked == () and stats.unacked == ()
    assert stream.on_update([(CLUSTER, "a")]) == []
    [resp] = stream.on_update(view.put(res(CLUSTER, "a", b"good")))
    assert resp.resources[0].body == b"good"


def test_nack_is_detected_by_error_detail_not_by_version(view: DictView) -> None:
    stream = DeltaStream(view)
    [resp] = stream.on_request(sub(CLUSTER, "a")).responses
    out = stream.on_request(
        DeltaRequest(type_url=CLUSTER, response_nonce=resp.nonce, error_detail=ErrorDetail(13, "boom"))
    )
    assert out.nack is not None and not out.ack
    assert stream.statistics().nacks == 1


def test_stale_nonce_still_applies_subscriptions(view: DictView) -> None:
    stream = DeltaStream(view)
    [first] = stream.on_request(sub(CLUSTER, "a")).responses
    out = stream.on_request(sub(CLUSTER, "b", nonce="not-a-nonce-of-this-stream"))
    assert out.stale and not out.ack
    assert [names(r) for r in out.responses] == [["b"]]
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and stats.acked == ()  # the stale nonce ACKed nothing
    assert first.nonce in stats.pending_nonces
    assert stream.statistics().unknown_nonces == 1


def test_nonce_from_a_previous_stream_is_not_valid(view: DictView) -> None:
    old = DeltaStream(view)
    [resp] = old.on_request(sub(CLUSTER, "a")).responses
    new = DeltaStream(view)
    out = new.on_request(sub(CLUSTER, "a", nonce=resp.nonce))
    assert out.stale
    assert out.responses[0].nonce != resp.nonce


def test_fresh_nonces_and_no_duplicate_names(view: DictView) -> None:
    stream = DeltaStream(view)
    seen: list[str] = []
    for r in stream.on_request(sub(CLUSTER, "a", "b", "a")).responses:
        seen.append(r.nonce)
        assert sorted(names(r)) == ["a", "b"]
    for i in range(20):
        changed = view.put(res(CLUSTER, "a", f"v{i}".encode()))
        [resp] = stream.on_update(changed + changed)  # the same name twice in one update
        assert names(resp) == ["a"]
        seen.append(resp.nonce)
    assert len(set(seen)) == len(seen) == 21
    assert stream.on_update([(CLUSTER, "a")]) == []  # nothing changed, nothing sent


def test_reconnect_sends_only_differing_and_removes_vanished_wildcard_names(view: DictView) -> None:
    stream = DeltaStream(view)
    a, b = view.get(CLUSTER, "a"), view.get(CLUSTER, "b")
    assert a is not None and b is not None
    out = stream.on_request(
        DeltaRequest(
            type_url=CLUSTER,
            subscribe=("*",),
            initial_resource_versions={"a": a.version, "b": "old", "vanished": "x"},
        )
    )
    [resp, removal] = out.responses  # cluster removals go in a response of their own, last
    assert names(resp) == ["b"] and resp.removed == ()
    assert removal.removed == ("vanished",) and removal.resources == ()
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and ("a", a.version) in stats.acked


def test_reconnect_with_explicit_names_waits_for_the_host_before_removing(view: DictView) -> None:
    stream = DeltaStream(view)
    a = view.get(ENDPOINT, "a")
    assert a is not None
    out = stream.on_request(
        DeltaRequest(
            type_url=ENDPOINT,
            subscribe=("a", "b", "unloaded"),
            initial_resource_versions={"a": a.version, "b": "old", "unloaded": "v0"},
        )
    )
    assert [names(r) for r in out.responses] == [["b"]]
    assert out.responses[0].removed == ()  # "unloaded" may still be loading: the client keeps it
    # The host fetched it: it does not exist. Now it is removed.
    [gone] = stream.on_update([(ENDPOINT, "unloaded")])
    assert gone.removed == ("unloaded",) and gone.resources == ()


def test_unsubscribe_forgets_and_resubscribe_sends_again(view: DictView) -> None:
    stream = DeltaStream(view)
    [resp] = stream.on_request(sub(CLUSTER, "a", "b")).responses
    ack(stream, resp)
    out = stream.on_request(DeltaRequest(type_url=CLUSTER, unsubscribe=("a",)))
    assert out.responses == ()
    assert out.interest_removed == ((CLUSTER, "a"),)
    assert stream.on_update(view.put(res(CLUSTER, "a", b"v2"))) == []
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and stats.subscribed == ("b",) and [n for n, _ in stats.acked] == ["b"]
    [again] = stream.on_request(sub(CLUSTER, "a")).responses
    assert names(again) == ["a"]


def test_unsubscribe_wildcard_forgets_names_held_only_through_it(view: DictView) -> None:
    stream = DeltaStream(view)
    [resp] = stream.on_request(sub(CLUSTER, "*", "a")).responses
    assert names(resp) == ["a", "b"]
    out = stream.on_request(DeltaRequest(type_url=CLUSTER, response_nonce=resp.nonce, unsubscribe=("*",)))
    assert out.interest_removed == ((CLUSTER, "*"),)
    assert stream.on_update(view.put(res(CLUSTER, "b", b"v2"))) == []
    [still] = stream.on_update(view.put(res(CLUSTER, "a", b"v2")))
    assert names(still) == ["a"]


def test_names_over_the_bound_are_not_stored_and_answered_as_removed(view: DictView) -> None:
    stream = DeltaStream(view, limits=Limits(max_names_per_type=2))
    out = stream.on_request(sub(CLUSTER, "a", "b", "c"))
    assert [(r.name, "more than 2" in r.reason) for r in out.rejected] == [("c", True)]
    [resp] = out.responses
    assert names(resp) == ["a", "b"] and resp.removed == ("c",)
    assert out.interest_added == ((CLUSTER, "a"), (CLUSTER, "b"))
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and stats.subscribed == ("a", "b")
    assert stream.on_update(view.put(res(CLUSTER, "c"))) == []


def test_invalid_names_are_rejected_with_the_reason(view: DictView) -> None:
    def validator(type_url: str, name: str) -> str | None:
        return None if name.islower() else "not a lowercase DNS name"

    stream = DeltaStream(view, limits=Limits(max_name_length=10), name_validator=validator)
    out = stream.on_request(sub(CLUSTER, "*", "a", "BAD", "x" * 11))
    reasons = {r.name: r.reason for r in out.rejected}
    assert reasons == {"BAD": "not a lowercase DNS name", "x" * 11: "longer than 10 characters"}
    [resp] = out.responses
    assert sorted(resp.removed) == sorted(["BAD", "x" * 11])
    assert names(resp) == ["a", "b"]  # "*" is not a name to validate
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and stats.subscribed == ("a",) and stats.wildcard


def test_type_url_bound_and_empty_type_url(view: DictView) -> None:
    stream = DeltaStream(view, limits=Limits(max_type_urls=1))
    stream.on_request(sub(CLUSTER, "a"))
    with pytest.raises(ResourceExhausted):
        stream.on_request(sub(ENDPOINT, "a"))
    with pytest.raises(InvalidArgument):
        stream.on_request(DeltaRequest(type_url=""))


def test_cds_before_eds_in_one_update(view: DictView) -> None:
    stream = DeltaStream(view)
    for resp in stream.on_request(sub(CLUSTER, "a")).responses:
        ack(stream, resp)
    for resp in stream.on_request(sub(ENDPOINT, "a")).responses:
        ack(stream, resp)
    changed = view.put(res(ENDPOINT, "a", b"e2")) + view.put(res(LISTENER, "l")) + view.put(res(CLUSTER, "a", b"c2"))
    assert [r.type_url for r in stream.on_update(changed)] == [CLUSTER, ENDPOINT]


def test_eds_waits_for_its_cluster_on_the_same_stream(view: DictView) -> None:
    stream = DeltaStream(view)
    assert stream.on_request(sub(CLUSTER, "svc")).responses == ()  # cluster not there yet
    view.put(res(ENDPOINT, "svc"))
    assert stream.on_request(sub(ENDPOINT, "svc")).responses == ()  # held back: its cluster is missing
    responses = stream.on_update(view.put(res(CLUSTER, "svc")))
    assert [(r.type_url, names(r)) for r in responses] == [(CLUSTER, ["svc"]), (ENDPOINT, ["svc"])]


def test_cluster_removals_go_last(view: DictView) -> None:
    stream = DeltaStream(view)
    for type_url in (CLUSTER, ENDPOINT):
        for resp in stream.on_request(sub(type_url, "a", "b")).responses:
            ack(stream, resp)
    changed = view.delete(CLUSTER, "a") + view.put(res(CLUSTER, "b", b"v2")) + view.put(res(ENDPOINT, "b", b"v2"))
    responses = stream.on_update(changed)
    assert [(r.type_url, names(r), r.removed) for r in responses] == [
        (CLUSTER, ["b"], ()),
        (ENDPOINT, ["b"], ()),
        (CLUSTER, [], ("a",)),
    ]
    assert len({r.nonce for r in responses}) == 3
    ack(stream, responses[-1])
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and [n for n, _ in stats.acked] == ["b"]


def test_bodyless_resource_is_sent_as_does_not_exist() -> None:
    view = DictView([VersionedResource.of(VIRTUAL_HOST, "routes/ghost", None, aliases=("routes/ghost",))])
    stream = DeltaStream(view)
    [resp] = stream.on_request(sub(VIRTUAL_HOST, "routes/ghost")).responses
    assert resp.resources[0].body is None and resp.resources[0].aliases == ("routes/ghost",)


def test_statistics_are_frozen(view: DictView) -> None:
    stream = DeltaStream(view, stream_id="node-1")
    stream.on_request(sub(CLUSTER, "a"))
    stats = stream.statistics()
    assert stats.stream_id == "node-1" and stats.requests == 1 and stats.responses == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.requests = 5  # type: ignore[misc]


def test_reconnect_initial_versions_are_bounded_and_ignored_when_not_of_interest(view: DictView) -> None:
    stream = DeltaStream(view, limits=Limits(max_names_per_type=2))
    held = {f"gone-{i}": "v" for i in range(5)}
    out = stream.on_request(DeltaRequest(type_url=LISTENER, subscribe=("*",), initial_resource_versions=held))
    [removal] = out.responses
    assert len(removal.removed) == 2 and set(removal.removed) <= set(held)
    explicit = DeltaStream(view)
    out = explicit.on_request(
        DeltaRequest(type_url=CLUSTER, subscribe=("a",), initial_resource_versions={"not-subscribed": "v"})
    )
    stats = explicit.statistics().for_type(CLUSTER)
    assert stats is not None and [n for n, _ in stats.unacked] == ["a"] and stats.acked == ()


def test_an_updated_eds_cluster_gets_its_unchanged_assignment_again(view: DictView) -> None:
    """Envoy warms an updated EDS cluster until its ClusterLoadAssignment comes again (measured with Envoy 1.40:
    otherwise the new cluster stays warming and the old one keeps serving), so it is resent with the Cluster."""
    stream = DeltaStream(view)
    [cds] = stream.on_request(sub(CLUSTER, "a")).responses
    [eds] = stream.on_request(sub(ENDPOINT, "a", nonce=cds.nonce)).responses
    ack(stream, eds)
    cla = view.get(ENDPOINT, "a")
    # only the Cluster changes (e.g. a traffic policy's circuit breaker)
    cluster_update, endpoint_resend = stream.on_update(view.put(res(CLUSTER, "a", b"v2")))
    assert cluster_update.type_url == CLUSTER and names(cluster_update) == ["a"]
    assert endpoint_resend.type_url == ENDPOINT and endpoint_resend.resources == (cla,)
    ack(stream, cluster_update)
    ack(stream, endpoint_resend)
    # an endpoint change alone sends only the assignment, as before
    [only] = stream.on_update(view.put(res(ENDPOINT, "a", b"v2")))
    assert only.type_url == ENDPOINT


def test_an_overlong_type_url_is_refused_before_the_stream_keeps_it(view: DictView) -> None:
    stream = DeltaStream(view)
    with pytest.raises(InvalidArgument, match="at most 256"):
        stream.on_request(sub("type.googleapis.com/" + "x" * 1_000_000, "a"))
    assert stream.statistics().types == ()


def test_statistics_tell_new_changed_and_unchanged_sends_apart(view: DictView) -> None:
    """A reconnect's sends, by what the client reported holding: the e2e test tells a resend of what the proxy
    already had from a resource that changed while it was away."""
    stream = DeltaStream(view)
    a = view.get(CLUSTER, "a")
    assert a is not None
    [cds] = stream.on_request(
        DeltaRequest(type_url=CLUSTER, subscribe=("a", "b"), initial_resource_versions={"a": a.version, "b": "old"})
    ).responses
    assert names(cds) == ["b"]  # "a" the client has: not sent
    ea = view.get(ENDPOINT, "a")
    assert ea is not None
    [eds] = stream.on_request(
        DeltaRequest(type_url=ENDPOINT, subscribe=("a", "b"), initial_resource_versions={"a": ea.version})
    ).responses
    assert names(eds) == ["b"]
    c = stream.statistics().for_type(CLUSTER)
    e = stream.statistics().for_type(ENDPOINT)
    assert c is not None and (c.sent_new, c.sent_changed, c.sent_unchanged) == (0, 1, 0)
    assert e is not None and (e.sent_new, e.sent_changed, e.sent_unchanged) == (1, 0, 0)
    assert c.last_sent == ("b", view.get(CLUSTER, "b").version)  # type: ignore[union-attr]
    ack(stream, cds)
    ack(stream, eds)
    # a changed cluster brings its unchanged assignment again: the one unchanged send there is
    stream.on_update(view.put(res(CLUSTER, "a", b"v2")))
    e = stream.statistics().for_type(ENDPOINT)
    assert e is not None and (e.sent_new, e.sent_changed, e.sent_unchanged) == (1, 0, 1)


# --- companions: a VIP's virtual host goes to the proxies that asked for its Cluster, ahead of it -------------


UNSERVED = "routes/-"


def _vhost(cluster: str) -> tuple[tuple[str, str], ...]:
    return ((VIRTUAL_HOST, f"routes/{cluster}"),)


def _companions(type_url: str, name: str) -> tuple[tuple[str, str], ...]:
    return _vhost(name) if type_url == CLUSTER else ()


def _vhds_stream(view: DictView) -> DeltaStream:
    stream = DeltaStream(view, companions=_companions, companion_types={VIRTUAL_HOST: UNSERVED})
    out = stream.on_request(DeltaRequest(type_url=VIRTUAL_HOST))  # Envoy's VHDS opens as a legacy wildcard
    # nothing is brought yet, whatever the view holds; the answer removes only the placeholder (a name in the
    # namespace Envoy's VHDS watches), which lets Envoy's listener start serving
    [empty] = out.responses
    assert empty.type_url == VIRTUAL_HOST and empty.resources == () and empty.removed == (UNSERVED,)
    ack(stream, empty)
    return stream


def test_a_companion_goes_ahead_of_the_cluster_that_brings_it_and_only_to_that_stream(view: DictView) -> None:
    view.put(res(VIRTUAL_HOST, "routes/a"), res(VIRTUAL_HOST, "routes/b"))
    stream = _vhds_stream(view)
    out = stream.on_request(sub(CLUSTER, "a"))
    assert [(r.type_url, names(r)) for r in out.responses] == [(VIRTUAL_HOST, ["routes/a"]), (CLUSTER, ["a"])]
    for resp in out.responses:
        ack(stream, resp)
    # another stream's VIP changing reaches nobody here; this stream's does
    assert stream.on_update(view.put(res(VIRTUAL_HOST, "routes/b", b"v2"))) == []
    [resp] = stream.on_update(view.put(res(VIRTUAL_HOST, "routes/a", b"v2")))
    assert names(resp) == ["routes/a"]
    ack(stream, resp)
    # the policy goes away: removed from the client (an update knows it is gone)
    [gone] = stream.on_update(view.delete(VIRTUAL_HOST, "routes/a"))
    assert gone.removed == ("routes/a",) and gone.type_url == VIRTUAL_HOST


def test_a_companion_is_not_removed_because_the_host_has_not_loaded_it_yet(view: DictView) -> None:
    stream = DeltaStream(view, companions=_companions, companion_types={VIRTUAL_HOST: UNSERVED})
    # reconnect: the client holds a virtual host the host does not hold (yet)
    out = stream.on_request(DeltaRequest(type_url=VIRTUAL_HOST, initial_resource_versions={"routes/later": "x"}))
    [empty] = out.responses  # answered, and nothing the client holds is removed
    assert empty.resources == () and empty.removed == (UNSERVED,)
    ack(stream, empty)
    out = stream.on_request(sub(CLUSTER, "later"))
    assert out.responses == ()  # absence seen on a request removes nothing
    vhost_and_cluster = stream.on_update(
        [*view.put(res(VIRTUAL_HOST, "routes/later")), *view.put(res(CLUSTER, "later"))]
    )
    assert [(r.type_url, names(r)) for r in vhost_and_cluster] == [
        (VIRTUAL_HOST, ["routes/later"]), (CLUSTER, ["later"]),
    ]  # fmt: skip


def test_without_a_vhds_stream_a_cluster_brings_nothing(view: DictView) -> None:
    view.put(res(VIRTUAL_HOST, "routes/a"))
    stream = DeltaStream(view, companions=_companions, companion_types={VIRTUAL_HOST: UNSERVED})
    out = stream.on_request(sub(CLUSTER, "a"))
    assert [r.type_url for r in out.responses] == [CLUSTER]


# --- pushed refs: a virtual host's mirror cluster, which Envoy never asks for, goes ahead of it unasked -------------


def _mirror_vhost(vip: str, mirror: str | None, body: bytes = b"v1") -> VersionedResource:
    refs = ((CLUSTER, vip),) + (((CLUSTER, mirror),) if mirror else ())
    return VersionedResource.of(VIRTUAL_HOST, f"routes/{vip}", body, refs=refs)


def _pushed_refs(resource: VersionedResource) -> tuple[tuple[str, str], ...]:
    """As the VIP source: a virtual host pushes the clusters of other VIPs it names (its mirror)."""
    vip = resource.name.removeprefix("routes/")
    return (
        tuple(r for r in resource.refs if r[0] == CLUSTER and r[1] != vip) if resource.type_url == VIRTUAL_HOST else ()
    )


def _mirror_stream(view: DictView, *, cds_wildcard: bool = True) -> DeltaStream:
    stream = DeltaStream(
        view, companions=_companions, companion_types={VIRTUAL_HOST: UNSERVED},
        pushed_refs=_pushed_refs, pushed_types={CLUSTER: ""},
    )  # fmt: skip
    if cds_wildcard:
        # Envoy's bootstrap `cds_config` opens CDS as a legacy wildcard: answered at once, with nothing (measured
        # with Envoy 1.40: no answer holds /ready for the 15 s initial fetch timeout), whatever the view holds
        [empty] = stream.on_request(DeltaRequest(type_url=CLUSTER)).responses
        assert empty.type_url == CLUSTER and empty.resources == () and empty.removed == ()
        ack(stream, empty)
    [vhds] = stream.on_request(DeltaRequest(type_url=VIRTUAL_HOST)).responses
    ack(stream, vhds)
    return stream


def _sent(responses: object) -> list[tuple[str, list[str], list[str]]]:
    return [(r.type_url, names(r), list(r.removed)) for r in responses]  # type: ignore[attr-defined]


def test_a_mirror_cluster_goes_ahead_of_the_virtual_host_naming_it_and_its_assignment_follows(view: DictView) -> None:
    view.put(_mirror_vhost("a", "m"), res(CLUSTER, "m"), res(ENDPOINT, "m"))
    stream = _mirror_stream(view)
    out = stream.on_request(sub(CLUSTER, "a"))
    # the mirror cluster, then the virtual host that names it, then the Cluster asked for (which brought it)
    assert _sent(out.responses) == [(CLUSTER, ["m"], []), (VIRTUAL_HOST, ["routes/a"], []), (CLUSTER, ["a"], [])]
    assert stream.take_pushed() == ([(CLUSTER, "m")], [])  # the host fetches what holds it
    assert stream.take_pushed() == ([], [])
    for resp in out.responses:
        ack(stream, resp)
    # Envoy asks for the assignments of both clusters as it warms them
    assert _sent(stream.on_request(sub(ENDPOINT, "m", "a")).responses) == [(ENDPOINT, ["a", "m"], [])]
    # the mirror cluster changing reaches this stream (its wildcard covers what is pushed to it)
    [changed, eds] = stream.on_update(view.put(res(CLUSTER, "m", b"v2")))
    assert _sent([changed, eds]) == [(CLUSTER, ["m"], []), (ENDPOINT, ["m"], [])]


def test_the_wildcard_of_a_pushed_type_covers_only_what_is_pushed(view: DictView) -> None:
    view.put(res(CLUSTER, "m"))
    stream = _mirror_stream(view)  # "a", "b" and "m" are in the view: none is sent on the wildcard
    assert stream.on_update(view.put(res(CLUSTER, "b", b"v2"), res(CLUSTER, "m", b"v2"))) == []


def test_a_virtual_host_waits_for_a_mirror_cluster_the_host_has_not_loaded(view: DictView) -> None:
    view.put(_mirror_vhost("a", "m"))
    stream = _mirror_stream(view)
    out = stream.on_request(sub(CLUSTER, "a"))
    assert _sent(out.responses) == [(CLUSTER, ["a"], [])]  # the virtual host is held back
    assert stream.take_pushed() == ([(CLUSTER, "m")], [])
    ack(stream, out.responses[0])
    # the host fetched what holds the mirror: it goes out, then the virtual host
    assert _sent(stream.on_update(view.put(res(CLUSTER, "m")))) == [
        (CLUSTER, ["m"], []),
        (VIRTUAL_HOST, ["routes/a"], []),
    ]


def test_a_mirror_cluster_no_longer_named_is_removed_after_the_virtual_host(view: DictView) -> None:
    view.put(_mirror_vhost("a", "m"), res(CLUSTER, "m"))
    stream = _mirror_stream(view)
    for resp in stream.on_request(sub(CLUSTER, "a")).responses:
        ack(stream, resp)
    stream.take_pushed()
    # the mirror is taken out of the policy: the virtual host first, the cluster it named last
    out = stream.on_update(view.put(_mirror_vhost("a", None, b"v2")))
    assert _sent(out) == [(VIRTUAL_HOST, ["routes/a"], []), (CLUSTER, [], ["m"])]
    assert stream.take_pushed() == ([], [(CLUSTER, "m")])
    assert stream.on_update(view.put(res(CLUSTER, "m", b"v2"))) == []  # no longer of interest
    # named again: pushed again
    out = stream.on_update(view.put(_mirror_vhost("a", "m", b"v3")))
    assert _sent(out) == [(CLUSTER, ["m"], []), (VIRTUAL_HOST, ["routes/a"], [])]


def test_a_mirror_cluster_the_client_also_asked_for_is_never_removed_with_the_mirror(view: DictView) -> None:
    view.put(_mirror_vhost("a", "m"), res(CLUSTER, "m"))
    stream = _mirror_stream(view)
    for resp in stream.on_request(sub(CLUSTER, "m")).responses:
        ack(stream, resp)
    out = stream.on_request(sub(CLUSTER, "a"))
    assert _sent(out.responses) == [(VIRTUAL_HOST, ["routes/a"], []), (CLUSTER, ["a"], [])]  # "m" is held already
    assert stream.take_pushed() == ([], [])  # subscribed: the host already holds it for this stream
    for resp in out.responses:
        ack(stream, resp)
    assert _sent(stream.on_update(view.put(_mirror_vhost("a", None, b"v2")))) == [(VIRTUAL_HOST, ["routes/a"], [])]
    assert stream.take_pushed() == ([], [])


def test_removing_the_virtual_host_removes_its_mirror_cluster_last(view: DictView) -> None:
    view.put(_mirror_vhost("a", "m"), res(CLUSTER, "m"))
    stream = _mirror_stream(view)
    for resp in stream.on_request(sub(CLUSTER, "a")).responses:
        ack(stream, resp)
    out = stream.on_update(view.delete(VIRTUAL_HOST, "routes/a"))
    assert _sent(out) == [(VIRTUAL_HOST, [], ["routes/a"]), (CLUSTER, [], ["m"])]


def test_without_a_wildcard_cds_subscription_nothing_is_pushed_or_held_back(view: DictView) -> None:
    view.put(_mirror_vhost("a", "m"), res(CLUSTER, "m"))
    stream = _mirror_stream(view, cds_wildcard=False)
    out = stream.on_request(sub(CLUSTER, "a"))
    assert _sent(out.responses) == [(VIRTUAL_HOST, ["routes/a"], []), (CLUSTER, ["a"], [])]
    assert stream.take_pushed() == ([], [])


def test_a_virtual_host_without_a_mirror_goes_as_before(view: DictView) -> None:
    view.put(_mirror_vhost("a", None))
    stream = _mirror_stream(view)
    out = stream.on_request(sub(CLUSTER, "a"))
    assert _sent(out.responses) == [(VIRTUAL_HOST, ["routes/a"], []), (CLUSTER, ["a"], [])]
    assert stream.take_pushed() == ([], [])


def test_reconnect_pushes_again_what_the_virtual_host_the_client_holds_names(view: DictView) -> None:
    vhost = _mirror_vhost("a", "m")
    view.put(vhost, res(CLUSTER, "m"))
    stream = DeltaStream(
        view, companions=_companions, companion_types={VIRTUAL_HOST: UNSERVED},
        pushed_refs=_pushed_refs, pushed_types={CLUSTER: ""},
    )  # fmt: skip
    held = {"a": view.get(CLUSTER, "a").version, "m": view.get(CLUSTER, "m").version}  # type: ignore[union-attr]
    # Envoy's CDS reopens as the wildcard and the names it asked for, with what it holds
    out = stream.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("*", "a"), initial_resource_versions=held))
    [empty] = out.responses  # the client has both: only the answer Envoy waits for
    assert empty.resources == () and empty.removed == ()
    out = stream.on_request(DeltaRequest(type_url=VIRTUAL_HOST, initial_resource_versions={vhost.name: vhost.version}))
    assert [r.type_url for r in out.responses] == [VIRTUAL_HOST]  # only the answer Envoy waits for
    assert stream.take_pushed() == ([(CLUSTER, "m")], [])  # of interest again: its changes reach the client
    [changed] = stream.on_update(view.put(res(CLUSTER, "m", b"v2")))
    assert _sent([changed]) == [(CLUSTER, ["m"], [])]


# --- collection: a VIP's clusters are removed and the stream is routed to their next generation ---------------


def _vip_of(name: str) -> str:
    return name.partition("@")[0].partition("~")[0]


def _generation_resource(type_url: str, name: str, base: VersionedResource | None, g: int) -> VersionedResource:
    return VersionedResource.of(type_url, name, f"gen{g}:".encode() + (base.body or b"" if base else b""))


def _gen_companions(type_url: str, name: str) -> tuple[tuple[str, str], ...]:
    return _vhost(_vip_of(name)) if type_url == CLUSTER and "~" not in name else ()


GENERATIONS = Generations(vip_of=_vip_of, virtual_host=lambda vip: f"routes/{vip}", resource=_generation_resource)


def _collecting_stream(view: DictView, *clusters: str) -> DeltaStream:
    stream = DeltaStream(
        view, companions=_gen_companions, companion_types={VIRTUAL_HOST: UNSERVED}, generations=GENERATIONS
    )
    [empty] = stream.on_request(DeltaRequest(type_url=VIRTUAL_HOST)).responses
    ack(stream, empty)
    for resp in stream.on_request(sub(CLUSTER, *clusters)).responses:
        ack(stream, resp)
    return stream


def test_collect_routes_the_vip_to_its_next_generation_before_removing_its_cluster(view: DictView) -> None:
    view.put(res(CLUSTER, "a@1"))  # what the source derives for the new name
    stream = _collecting_stream(view, "a", "b")
    assert stream.collectable() == ["a", "b"]
    vhost, removal = stream.collect("a")
    assert (vhost.type_url, names(vhost)) == (VIRTUAL_HOST, ["routes/a"])
    assert vhost.resources[0].body == b"gen1:"  # no vhost of its own: the generation's one route
    assert (removal.type_url, removal.removed, removal.resources) == (CLUSTER, ("a",), ())
    ack(stream, vhost)
    ack(stream, removal)
    assert stream.collectable() == ["b"]
    # the retired name is never sent again, though the client stays subscribed to it
    assert stream.on_update(view.put(res(CLUSTER, "a", b"v2"))) == []
    assert stream.on_request(sub(CLUSTER, "a")).responses == ()
    # the next request asks for the new name: sent like any new cluster; its vhost already went out
    [cluster] = stream.on_request(sub(CLUSTER, "a@1")).responses
    assert names(cluster) == ["a@1"]
    ack(stream, cluster)
    assert stream.collectable() == ["a", "b"]
    stats = stream.statistics()
    assert (stats.clusters_collected, stats.names_retired) == (1, 1)
    # a retired name is not what the client is meant to hold: not "subscribed" in sync status or lag
    assert stream.retired(CLUSTER, "a") and not stream.retired(CLUSTER, "a@1")
    cds = stats.for_type(CLUSTER)
    assert cds is not None and "a" not in cds.subscribed and "a@1" in cds.subscribed


def test_an_assignment_of_a_collected_cluster_is_not_held_back_for_it(view: DictView) -> None:
    view.put(res(CLUSTER, "a@1"))
    stream = _collecting_stream(view, "a")
    for resp in stream.collect("a"):
        ack(stream, resp)
    for resp in stream.on_request(sub(CLUSTER, "a@1")).responses:
        ack(stream, resp)
    # the generation's cluster reads the VIP's own assignment (EDS service name "a")
    [cla] = stream.on_request(sub(ENDPOINT, "a")).responses
    assert (cla.type_url, names(cla)) == (ENDPOINT, ["a"])


def test_what_is_not_collected(view: DictView) -> None:
    # not ACKed yet
    stream = DeltaStream(
        view, companions=_gen_companions, companion_types={VIRTUAL_HOST: UNSERVED}, generations=GENERATIONS
    )
    ack(stream, stream.on_request(DeltaRequest(type_url=VIRTUAL_HOST)).responses[0])
    stream.on_request(sub(CLUSTER, "a"))
    assert stream.collectable() == [] and stream.collect("a") == []
    # a client that never opened VHDS cannot be routed to a new name
    plain = DeltaStream(
        view, companions=_gen_companions, companion_types={VIRTUAL_HOST: UNSERVED}, generations=GENERATIONS
    )
    for resp in plain.on_request(sub(CLUSTER, "a")).responses:
        ack(plain, resp)
    assert plain.collectable() == []
    # without Generations nothing is collected
    bare = _vhds_stream(view)
    for resp in bare.on_request(sub(CLUSTER, "a")).responses:
        ack(bare, resp)
    assert bare.collectable() == [] and bare.collect("a") == []


def test_generations_run_out(view: DictView) -> None:
    from meshactors.resources.types import MAX_GENERATIONS

    stream = _collecting_stream(view, "a")
    for g in range(1, MAX_GENERATIONS + 1):
        view.put(res(CLUSTER, f"a@{g}"))
        for resp in stream.collect("a"):
            ack(stream, resp)
        for resp in stream.on_request(sub(CLUSTER, f"a@{g}")).responses:
            ack(stream, resp)
    assert stream.collectable() == [] and stream.collect("a") == []
    assert stream.statistics().names_retired == MAX_GENERATIONS


def test_a_reconnect_follows_the_newest_generation_the_client_names(view: DictView) -> None:
    view.put(res(CLUSTER, "a@1"), res(CLUSTER, "a@2"))
    stream = DeltaStream(
        view, companions=_gen_companions, companion_types={VIRTUAL_HOST: UNSERVED}, generations=GENERATIONS
    )
    ack(stream, stream.on_request(DeltaRequest(type_url=VIRTUAL_HOST)).responses[0])
    # a new server: Envoy re-sends every name it ever asked for on demand
    out = stream.on_request(sub(CLUSTER, "a", "a@1", "a@2", "b"))
    assert [(r.type_url, names(r)) for r in out.responses] == [
        (VIRTUAL_HOST, ["routes/a"]),
        (CLUSTER, ["a@2", "b"]),
    ]
    assert out.responses[0].resources[0].body == b"gen2:"
    assert stream.statistics().names_retired == 2


def test_retired_names_do_not_count_against_the_bound_of_names(view: DictView) -> None:
    view.put(res(CLUSTER, "a@1"))
    stream = DeltaStream(
        view, Limits(max_names_per_type=2), companions=_gen_companions, companion_types={VIRTUAL_HOST: UNSERVED},
        generations=GENERATIONS,
    )  # fmt: skip
    ack(stream, stream.on_request(DeltaRequest(type_url=VIRTUAL_HOST)).responses[0])
    for resp in stream.on_request(sub(CLUSTER, "a", "b")).responses:
        ack(stream, resp)
    for resp in stream.collect("a"):
        ack(stream, resp)
    out = stream.on_request(sub(CLUSTER, "a@1"))
    assert out.rejected == () and [names(r) for r in out.responses if r.type_url == CLUSTER] == [["a@1"]]


Feed = Callable[[DeltaStream, DeltaRequest], "Outcome[DeltaResponse] | None"]


def _acks_script(stream: DeltaStream, view: DictView, feed: Feed) -> list[bool]:
    """ACKs, stale and unknown nonces, an empty request, a NACK and a new type; which requests `feed` took fast."""
    taken: list[bool] = []

    def send(req: DeltaRequest) -> tuple[DeltaResponse, ...]:
        out = feed(stream, req)
        taken.append(out is None)
        return () if out is None else out.responses

    [cds] = send(sub(CLUSTER, "a"))
    send(DeltaRequest(type_url=CLUSTER, response_nonce=cds.nonce))  # ACK
    [eds] = send(sub(ENDPOINT, "a"))
    [u1] = stream.on_update(view.put(res(ENDPOINT, "a", b"v2")))
    [u2] = stream.on_update(view.put(res(ENDPOINT, "a", b"v3")))
    send(DeltaRequest(type_url=ENDPOINT, response_nonce=u1.nonce))  # ACKs eds and u1, in order
    send(DeltaRequest(type_url=ENDPOINT, response_nonce=u1.nonce))  # stale now
    send(DeltaRequest(type_url=ENDPOINT, response_nonce="no-such-nonce"))
    send(DeltaRequest(type_url=ENDPOINT))  # nothing at all, on an opened type
    send(DeltaRequest(type_url=ENDPOINT, response_nonce=u2.nonce, error_detail=ErrorDetail(3, "bad")))
    [u3] = stream.on_update(view.put(res(ENDPOINT, "a", b"v4")))
    send(DeltaRequest(type_url=LISTENER, response_nonce="x"))  # a type not opened yet: on_request's
    send(DeltaRequest(type_url=ENDPOINT, response_nonce=u3.nonce))
    assert eds.nonce != u1.nonce
    return taken


def test_plain_ack_fast_path_keeps_the_same_books_as_on_request() -> None:
    """`on_plain_ack` takes only what `on_request` would answer with nothing (an ACK, a stale or unknown nonce, an
    empty request of an opened type) and leaves the stream exactly as `on_request` would."""

    def full(stream: DeltaStream, req: DeltaRequest) -> Outcome[DeltaResponse] | None:
        return stream.on_request(req)

    def fast(stream: DeltaStream, req: DeltaRequest) -> Outcome[DeltaResponse] | None:
        return None if stream.on_plain_ack(req) else stream.on_request(req)

    runs = []
    for feed in (full, fast):
        view = DictView([res(CLUSTER, "a"), res(ENDPOINT, "a")])
        stream = DeltaStream(view, stream_id="s", clock=lambda: 7.0)
        stream._nonces._prefix = "n"  # the same nonces in both runs, to compare their books
        runs.append((stream, _acks_script(stream, view, feed)))
    (slow, slow_taken), (quick, quick_taken) = runs
    assert not any(slow_taken)
    assert quick_taken == [False, True, False, True, True, True, True, False, False, True]
    assert quick.statistics() == slow.statistics()
    assert quick.statistics().acks == 3 and quick.statistics().unknown_nonces == 3
