"""The SotW ADS state machine (meshactors.xds.sotw) fed with plain requests and a dict-backed view."""

from __future__ import annotations

import dataclasses

import pytest

from meshactors.errors import InvalidArgument, ResourceExhausted
from meshactors.xds.sotw import SotwStream, sotw_version_info
from meshactors.xds.types import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ErrorDetail,
    Limits,
    SotwRequest,
    SotwResponse,
    VersionedResource,
)
from meshactors.xds.view import DictView


def res(type_url: str, name: str, body: bytes | None = b"v1") -> VersionedResource:
    return VersionedResource.of(type_url, name, body)


def names(resp: SotwResponse) -> list[str]:
    return [r.name for r in resp.resources]


def req(type_url: str, *resource_names: str, nonce: str = "", error: str | None = None) -> SotwRequest:
    return SotwRequest(
        type_url=type_url,
        resource_names=resource_names,
        response_nonce=nonce,
        error_detail=ErrorDetail(3, error) if error is not None else None,
    )


def ack(stream: SotwStream, resp: SotwResponse, *resource_names: str) -> None:
    out = stream.on_request(
        SotwRequest(
            type_url=resp.type_url,
            version_info=resp.version_info,
            resource_names=resource_names,
            response_nonce=resp.nonce,
        )
    )
    assert out.ack and out.responses == (), "an ACK alone is never answered"


@pytest.fixture
def view() -> DictView:
    return DictView(
        [res(LISTENER, "l1"), res(LISTENER, "l2"), res(CLUSTER, "a"), res(CLUSTER, "b"), res(ENDPOINT, "a")]
    )


def test_first_request_is_answered_with_requested_names_and_a_content_version(view: DictView) -> None:
    stream = SotwStream(view)
    out = stream.on_request(req(CLUSTER, "a", "b"))
    [resp] = out.responses
    assert names(resp) == ["a", "b"]
    assert resp.nonce
    assert resp.version_info == sotw_version_info(resp.resources)
    assert out.interest_added == ((CLUSTER, "a"), (CLUSTER, "b"))


def test_version_info_is_deterministic_over_name_version_pairs(view: DictView) -> None:
    one = SotwStream(view).on_request(req(CLUSTER, "b", "a")).responses[0]
    two = SotwStream(view).on_request(req(CLUSTER, "a", "b")).responses[0]
    assert one.version_info == two.version_info
    assert one.nonce != two.nonce
    only_a = SotwStream(view).on_request(req(CLUSTER, "a")).responses[0]
    assert only_a.version_info != one.version_info


def test_ack_is_not_answered_and_updates_are_pushed(view: DictView) -> None:
    stream = SotwStream(view)
    [resp] = stream.on_request(req(CLUSTER, "a", "b")).responses
    ack(stream, resp, "a", "b")
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and stats.acked_version_info == resp.version_info and stats.unacked == ()
    [update] = stream.on_update(view.put(res(CLUSTER, "b", b"v2")))
    assert names(update) == ["a", "b"]  # CDS carries the full set
    assert update.version_info != resp.version_info
    assert stream.on_update([(CLUSTER, "b")]) == []  # nothing changed


def test_stale_nonce_is_ignored(view: DictView) -> None:
    stream = SotwStream(view)
    [first] = stream.on_request(req(CLUSTER, "a")).responses
    [second] = stream.on_update(view.put(res(CLUSTER, "a", b"v2")))
    out = stream.on_request(req(CLUSTER, "a", "b", nonce=first.nonce))
    assert out.stale and out.responses == () and out.interest_added == ()
    stats = stream.statistics()
    assert stats.stale_requests == 1
    cluster_stats = stats.for_type(CLUSTER)
    assert cluster_stats is not None and cluster_stats.names == ("a",) and cluster_stats.acked == ()
    # The latest nonce is honoured.
    out = stream.on_request(req(CLUSTER, "a", "b", nonce=second.nonce))
    assert out.ack and [names(r) for r in out.responses] == [["a", "b"]]


def test_legacy_wildcard_stays_wildcard_while_lists_stay_empty(view: DictView) -> None:
    stream = SotwStream(view)
    out = stream.on_request(req(LISTENER))
    assert out.interest_added == ((LISTENER, "*"),)
    [resp] = out.responses
    assert names(resp) == ["l1", "l2"]
    ack(stream, resp)
    [pushed] = stream.on_update(view.put(res(LISTENER, "l3")))
    assert names(pushed) == ["l1", "l2", "l3"]


def test_star_is_wildcard_and_wildcard_gets_a_first_response_even_when_empty() -> None:
    stream = SotwStream(DictView())
    [resp] = stream.on_request(req(CLUSTER, "*")).responses
    assert resp.resources == ()


def test_empty_list_after_names_means_nothing(view: DictView) -> None:
    stream = SotwStream(view)
    [resp] = stream.on_request(req(CLUSTER, "a")).responses
    out = stream.on_request(req(CLUSTER, nonce=resp.nonce))
    assert out.responses == ()  # only an unsubscription: the client drops "a" itself
    assert out.interest_removed == ((CLUSTER, "a"),)
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and not stats.wildcard and stats.names == ()
    assert stream.on_update(view.put(res(CLUSTER, "z"))) == []
    # Subscribing again gets "a" again.
    [again] = stream.on_request(req(CLUSTER, "a", nonce=resp.nonce)).responses
    assert names(again) == ["a"]


def test_lds_omission_is_deletion(view: DictView) -> None:
    stream = SotwStream(view)
    [resp] = stream.on_request(req(LISTENER, "l1", "l2")).responses
    ack(stream, resp, "l1", "l2")
    [update] = stream.on_update(view.delete(LISTENER, "l2"))
    assert names(update) == ["l1"]


def test_eds_carries_requested_names_that_exist_and_unknown_ones_follow(view: DictView) -> None:
    stream = SotwStream(view)
    [resp] = stream.on_request(req(ENDPOINT, "a", "later")).responses
    assert names(resp) == ["a"]
    ack(stream, resp, "a", "later")
    [update] = stream.on_update(view.put(res(ENDPOINT, "later")))
    assert names(update) == ["a", "later"]


def test_nothing_existing_stays_silent_until_it_appears(view: DictView) -> None:
    stream = SotwStream(view)
    out = stream.on_request(req(LISTENER, "unknown"))
    assert out.responses == () and out.interest_added == ((LISTENER, "unknown"),)
    [resp] = stream.on_update(view.put(res(LISTENER, "unknown")))
    assert names(resp) == ["unknown"]


def test_nack_keeps_last_good_never_resends_rejected_and_sends_new_content() -> None:
    view = DictView([res(CLUSTER, "a", b"good"), res(CLUSTER, "b", b"b1")])
    stream = SotwStream(view, clock=lambda: 42.0)
    [first] = stream.on_request(req(CLUSTER, "a", "b")).responses
    ack(stream, first, "a", "b")
    good_a = view.get(CLUSTER, "a")

    [bad] = stream.on_update(view.put(res(CLUSTER, "a", b"bad")))
    bad_a = view.get(CLUSTER, "a")
    assert bad_a is not None and good_a is not None
    out = stream.on_request(req(CLUSTER, "a", "b", nonce=bad.nonce, error="xDS response validation errors"))
    assert out.nack is not None and out.responses == ()
    assert out.nack.rejected == (("a", bad_a.version),)
    assert out.nack.version_info == bad.version_info
    assert out.nack.at == 42.0
    stats = stream.statistics().for_type(CLUSTER)
    assert stats is not None and stats.acked_version_info == first.version_info
    assert stats.last_nack == out.nack

    assert stream.on_update([(CLUSTER, "a")]) == []  # the rejected content is not sent again
    # Another resource changes: the full set goes out with the last good "a", never the rejected one.
    [other] = stream.on_update(view.put(res(CLUSTER, "b", b"b2")))
    by_name = {r.name: r for r in other.resources}
    assert by_name["a"] is good_a
    ack(stream, other, "a", "b")
    # New content for "a" is sent.
    [fixed] = stream.on_update(view.put(res(CLUSTER, "a", b"fixed")))
    assert {r.name: r.body for r in fixed.resources}["a"] == b"fixed"


def test_nack_of_a_deletion_is_not_resent(view: DictView) -> None:
    stream = SotwStream(view)
    [first] = stream.on_request(req(LISTENER, "l1", "l2")).responses
    ack(stream, first, "l1", "l2")
    [deletion] = stream.on_update(view.delete(LISTENER, "l2"))
    out = stream.on_request(req(LISTENER, "l1", "l2", nonce=deletion.nonce, error="cannot drain"))
    assert out.nack is not None and out.nack.rejected == ()  # nothing new; the omission was refused
    assert out.responses == ()
    assert stream.on_update([(LISTENER, "l2")]) == []
    [later] = stream.on_update(view.put(res(LISTENER, "l1", b"v2")))
    assert names(later) == ["l1"]


def test_names_over_the_bound_or_invalid_are_not_stored(view: DictView) -> None:
    stream = SotwStream(
        view,
        limits=Limits(max_names_per_type=1, max_name_length=5),
        name_validator=lambda t, n: "upper case" if n != n.lower() else None,
    )
    out = stream.on_request(req(CLUSTER, "a", "b", "TOOLONG", "B"))
    assert {r.name: r.reason for r in out.rejected} == {
        "b": "more than 1 names subscribed for this type URL",
        "TOOLONG": "longer than 5 characters",
        "B": "upper case",
    }
    assert out.interest_added == ((CLUSTER, "a"),)
    assert [names(r) for r in out.responses] == [["a"]]


def test_type_url_bound_and_empty_type_url(view: DictView) -> None:
    stream = SotwStream(view, limits=Limits(max_type_urls=1))
    stream.on_request(req(CLUSTER, "a"))
    with pytest.raises(ResourceExhausted):
        stream.on_request(req(ENDPOINT, "a"))
    with pytest.raises(InvalidArgument):
        stream.on_request(req(""))


def test_update_order_cds_before_eds_and_cluster_removal_last(view: DictView) -> None:
    stream = SotwStream(view)
    for type_url, requested in ((CLUSTER, ("a", "b")), (ENDPOINT, ("a",))):
        [resp] = stream.on_request(req(type_url, *requested)).responses
        ack(stream, resp, *requested)
    added = view.put(res(ENDPOINT, "a", b"e2")) + view.put(res(CLUSTER, "a", b"c2"))
    assert [r.type_url for r in stream.on_update(added)] == [CLUSTER, ENDPOINT]
    removal = view.put(res(ENDPOINT, "a", b"e3")) + view.delete(CLUSTER, "b")
    responses = stream.on_update(removal)
    assert [(r.type_url, names(r)) for r in responses] == [(ENDPOINT, ["a"]), (CLUSTER, ["a"])]


def test_bodyless_resources_are_left_out() -> None:
    stream = SotwStream(DictView([res(CLUSTER, "a"), res(CLUSTER, "none", None)]))
    [resp] = stream.on_request(req(CLUSTER, "a", "none")).responses
    assert names(resp) == ["a"]


def test_nonces_are_fresh_and_names_unique(view: DictView) -> None:
    stream = SotwStream(view)
    nonces = []
    [resp] = stream.on_request(req(CLUSTER, "a", "a", "b")).responses
    assert names(resp) == ["a", "b"]
    nonces.append(resp.nonce)
    for i in range(10):
        [update] = stream.on_update(view.put(res(CLUSTER, "a", f"v{i}".encode())))
        nonces.append(update.nonce)
    assert len(set(nonces)) == 11


def test_statistics_are_frozen(view: DictView) -> None:
    stream = SotwStream(view, stream_id="grpc-1")
    [resp] = stream.on_request(req(CLUSTER, "a")).responses
    stats = stream.statistics()
    assert stats.stream_id == "grpc-1" and stats.responses == 1
    cluster_stats = stats.for_type(CLUSTER)
    assert cluster_stats is not None and cluster_stats.last_nonce == resp.nonce
    assert cluster_stats.unacked_version_info == resp.version_info
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.responses = 0  # type: ignore[misc]


def test_an_overlong_type_url_is_refused_before_the_stream_keeps_it(view: DictView) -> None:
    stream = SotwStream(view)
    with pytest.raises(InvalidArgument, match="at most 256"):
        stream.on_request(req("type.googleapis.com/" + "x" * 1_000_000, "a"))
    assert stream.statistics().types == ()
