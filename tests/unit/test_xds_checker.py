"""The xDS invariant checkers (meshactors.testing.xds_client) catch each kind of bad response."""

from __future__ import annotations

import pytest

from meshactors.testing.xds_client import (
    ANSWERED_ACK,
    DUPLICATE_NAME,
    EDS_BEFORE_CDS,
    NONCE_EMPTY,
    NONCE_REUSED,
    NOT_SUBSCRIBED,
    RESENT_REJECTED,
    RESENT_UNCHANGED,
    WRONG_TYPE_URL,
    DeltaInvariantChecker,
    InvariantViolation,
    SotwInvariantChecker,
)
from meshactors.xds.delta import DeltaStream
from meshactors.xds.sotw import SotwStream
from meshactors.xds.types import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    VIRTUAL_HOST,
    DeltaRequest,
    DeltaResponse,
    ErrorDetail,
    SotwRequest,
    SotwResponse,
    VersionedResource,
)
from meshactors.xds.view import DictView


def res(type_url: str, name: str, body: bytes | None = b"v1", aliases: tuple[str, ...] = ()) -> VersionedResource:
    return VersionedResource.of(type_url, name, body, aliases)


def delta(type_url: str, nonce: str, *resources: VersionedResource, removed: tuple[str, ...] = ()) -> DeltaResponse:
    return DeltaResponse(type_url=type_url, nonce=nonce, resources=resources, removed=removed)


def sotw(type_url: str, nonce: str, *resources: VersionedResource) -> SotwResponse:
    return SotwResponse(type_url=type_url, version_info=f"v-{nonce}", nonce=nonce, resources=resources)


def violation_kind(checker: DeltaInvariantChecker | SotwInvariantChecker, resp: object) -> str:
    """The one kind of violation `resp` breaks (the checker raises the first and records all)."""
    before = len(checker.violations)
    with pytest.raises(InvariantViolation) as info:
        checker.on_response(resp)  # type: ignore[arg-type]
    assert isinstance(info.value, AssertionError)
    assert checker.violations[before] is info.value
    assert {v.kind for v in checker.violations[before:]} == {info.value.kind}
    return info.value.kind


# --------------------------------------------------------------------------------------------- delta


def subscribed_delta(*names: str, type_url: str = CLUSTER) -> DeltaInvariantChecker:
    checker = DeltaInvariantChecker()
    checker.on_request(DeltaRequest(type_url=type_url, subscribe=names))
    return checker


def test_delta_good_sequence_has_no_violation() -> None:
    checker = subscribed_delta("a")
    checker.on_response(delta(CLUSTER, "n1", res(CLUSTER, "a")))
    checker.on_request(DeltaRequest(type_url=CLUSTER, response_nonce="n1"))
    checker.on_response(delta(CLUSTER, "n2", res(CLUSTER, "a", b"v2")))
    checker.on_response(delta(CLUSTER, "n3", removed=("a",)))
    checker.on_response(delta(CLUSTER, "n4", res(CLUSTER, "a", b"v2")))  # re-added after removal
    assert checker.violations == []


def test_delta_empty_nonce() -> None:
    assert violation_kind(subscribed_delta("a"), delta(CLUSTER, "", res(CLUSTER, "a"))) == NONCE_EMPTY


def test_nonce_reused_across_streams() -> None:
    checker = subscribed_delta("a")
    checker.on_response(delta(CLUSTER, "n1", res(CLUSTER, "a")))
    checker.start_stream()
    checker.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",)))
    assert violation_kind(checker, delta(CLUSTER, "n1", res(CLUSTER, "a", b"v2"))) == NONCE_REUSED


def test_delta_name_twice_in_one_response() -> None:
    checker = subscribed_delta("a", "b")
    assert violation_kind(checker, delta(CLUSTER, "n1", res(CLUSTER, "a"), res(CLUSTER, "a", b"x"))) == DUPLICATE_NAME
    assert violation_kind(checker, delta(CLUSTER, "n2", res(CLUSTER, "b"), removed=("b",))) == DUPLICATE_NAME


def test_delta_resource_of_another_type_url() -> None:
    checker = subscribed_delta("a")
    assert violation_kind(checker, delta(CLUSTER, "n1", res(ENDPOINT, "a"))) == WRONG_TYPE_URL


def test_delta_resource_never_subscribed() -> None:
    checker = subscribed_delta("a")
    assert violation_kind(checker, delta(CLUSTER, "n1", res(CLUSTER, "b"))) == NOT_SUBSCRIBED
    wildcard = DeltaInvariantChecker()
    wildcard.on_request(DeltaRequest(type_url=CLUSTER))  # legacy wildcard
    wildcard.on_response(delta(CLUSTER, "n2", res(CLUSTER, "anything")))
    vhds = subscribed_delta("routes/host", type_url=VIRTUAL_HOST)
    vhds.on_response(delta(VIRTUAL_HOST, "n3", res(VIRTUAL_HOST, "routes/vh", aliases=("routes/host",))))
    assert wildcard.violations == [] and vhds.violations == []


def test_delta_resend_of_a_version_the_client_has() -> None:
    checker = subscribed_delta("a")
    checker.on_response(delta(CLUSTER, "n1", res(CLUSTER, "a")))
    checker.on_request(DeltaRequest(type_url=CLUSTER, response_nonce="n1"))
    assert violation_kind(checker, delta(CLUSTER, "n2", res(CLUSTER, "a"))) == RESENT_UNCHANGED


def test_delta_resend_after_reconnect_of_what_initial_versions_said() -> None:
    checker = DeltaInvariantChecker()
    have = res(CLUSTER, "a")
    checker.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",), initial_resource_versions={"a": have.version}))
    assert violation_kind(checker, delta(CLUSTER, "n1", have)) == RESENT_UNCHANGED


def test_delta_resend_of_a_nacked_version() -> None:
    checker = subscribed_delta("a")
    checker.on_response(delta(CLUSTER, "n1", res(CLUSTER, "a")))
    checker.on_request(DeltaRequest(type_url=CLUSTER, response_nonce="n1"))
    checker.on_response(delta(CLUSTER, "n2", res(CLUSTER, "a", b"bad")))
    checker.on_request(DeltaRequest(type_url=CLUSTER, response_nonce="n2", error_detail=ErrorDetail(3, "no")))
    assert violation_kind(checker, delta(CLUSTER, "n3", res(CLUSTER, "a", b"bad"))) == RESENT_REJECTED
    checker.on_response(delta(CLUSTER, "n4", res(CLUSTER, "a", b"fixed")))
    assert [v.kind for v in checker.violations] == [RESENT_REJECTED]


def test_delta_eds_before_its_subscribed_cluster() -> None:
    checker = subscribed_delta("svc")
    checker.on_request(DeltaRequest(type_url=ENDPOINT, subscribe=("svc",)))
    assert violation_kind(checker, delta(ENDPOINT, "n1", res(ENDPOINT, "svc"))) == EDS_BEFORE_CDS
    checker.on_response(delta(CLUSTER, "n2", res(CLUSTER, "svc")))
    checker.on_response(delta(ENDPOINT, "n3", res(ENDPOINT, "svc", b"v2")))
    assert len(checker.violations) == 1


def test_checker_can_record_without_raising() -> None:
    checker = DeltaInvariantChecker(raise_on_violation=False)
    checker.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",)))
    checker.on_response(delta(CLUSTER, "", res(CLUSTER, "b"), res(CLUSTER, "b")))
    assert {v.kind for v in checker.violations} == {NONCE_EMPTY, DUPLICATE_NAME, NOT_SUBSCRIBED}


def test_delta_state_machine_passes_the_checker() -> None:
    view = DictView([res(CLUSTER, "a"), res(ENDPOINT, "a"), res(CLUSTER, "b"), res(ENDPOINT, "later")])
    stream = DeltaStream(view)
    checker = DeltaInvariantChecker()

    def send(req: DeltaRequest) -> list[DeltaResponse]:
        checker.on_request(req)
        out = list(stream.on_request(req).responses)
        for r in out:
            checker.on_response(r)
        return out

    def push(changed: list[tuple[str, str]]) -> list[DeltaResponse]:
        out = stream.on_update(changed)
        for r in out:
            checker.on_response(r)
        return out

    def acked(responses: list[DeltaResponse]) -> None:
        for r in responses:
            send(DeltaRequest(type_url=r.type_url, response_nonce=r.nonce))

    acked(send(DeltaRequest(type_url=CLUSTER, subscribe=("a", "b", "later"))))
    eds = send(DeltaRequest(type_url=ENDPOINT, subscribe=("a", "later")))
    assert [r.name for r in eds[0].resources] == ["a"]  # "later" waits for its cluster
    acked(eds)
    acked(push(view.put(res(CLUSTER, "a", b"v2"), res(ENDPOINT, "a", b"v2"))))
    bad = push(view.put(res(CLUSTER, "b", b"bad")))
    send(DeltaRequest(type_url=CLUSTER, response_nonce=bad[0].nonce, error_detail=ErrorDetail(3, "bad")))
    assert push([(CLUSTER, "b")]) == []
    final = push(view.put(res(CLUSTER, "later")) + view.delete(CLUSTER, "a"))
    assert [(r.type_url, bool(r.removed)) for r in final] == [(CLUSTER, False), (ENDPOINT, False), (CLUSTER, True)]
    acked(final)
    assert checker.violations == []


# ---------------------------------------------------------------------------------------------- SotW


def requested_sotw(*names: str, type_url: str = CLUSTER) -> SotwInvariantChecker:
    checker = SotwInvariantChecker()
    checker.on_request(SotwRequest(type_url=type_url, resource_names=names))
    return checker


def sotw_ack(checker: SotwInvariantChecker, resp: SotwResponse, *names: str, error: str | None = None) -> None:
    checker.on_request(
        SotwRequest(
            type_url=resp.type_url,
            version_info=resp.version_info,
            resource_names=names,
            response_nonce=resp.nonce,
            error_detail=ErrorDetail(3, error) if error else None,
        )
    )


def test_sotw_answering_a_pure_ack_with_unchanged_content() -> None:
    checker = requested_sotw("a")
    first = sotw(CLUSTER, "n1", res(CLUSTER, "a"))
    checker.on_response(first)
    sotw_ack(checker, first, "a")
    assert violation_kind(checker, sotw(CLUSTER, "n2", res(CLUSTER, "a"))) == ANSWERED_ACK


def test_sotw_same_content_after_a_name_change_is_fine() -> None:
    checker = requested_sotw("a", "missing", type_url=ENDPOINT)
    first = sotw(ENDPOINT, "n1", res(ENDPOINT, "a"))
    checker.on_response(first)
    sotw_ack(checker, first, "a", "missing", "other")
    checker.on_response(sotw(ENDPOINT, "n2", res(ENDPOINT, "a")))
    assert checker.violations == []


def test_sotw_resend_of_nacked_content() -> None:
    checker = requested_sotw("a")
    first = sotw(CLUSTER, "n1", res(CLUSTER, "a"))
    checker.on_response(first)
    sotw_ack(checker, first, "a")
    bad = sotw(CLUSTER, "n2", res(CLUSTER, "a", b"bad"))
    checker.on_response(bad)
    sotw_ack(checker, bad, "a", error="validation failed")
    assert violation_kind(checker, sotw(CLUSTER, "n3", res(CLUSTER, "a", b"bad"))) == RESENT_REJECTED


def test_sotw_not_requested_wrong_type_duplicate_and_nonce() -> None:
    checker = requested_sotw("a")
    assert violation_kind(checker, sotw(CLUSTER, "n1", res(CLUSTER, "b"))) == NOT_SUBSCRIBED
    assert violation_kind(checker, sotw(CLUSTER, "n2", res(LISTENER, "a"))) == WRONG_TYPE_URL
    twice = sotw(CLUSTER, "n3", res(CLUSTER, "a", b"1"), res(CLUSTER, "a", b"2"))
    assert violation_kind(checker, twice) == DUPLICATE_NAME
    assert violation_kind(checker, sotw(CLUSTER, "n3", res(CLUSTER, "a", b"x"))) == NONCE_REUSED
    assert violation_kind(checker, sotw(CLUSTER, "", res(CLUSTER, "a", b"y"))) == NONCE_EMPTY


def test_sotw_eds_before_cds() -> None:
    checker = requested_sotw("svc")
    checker.on_request(SotwRequest(type_url=ENDPOINT, resource_names=("svc",)))
    assert violation_kind(checker, sotw(ENDPOINT, "n1", res(ENDPOINT, "svc"))) == EDS_BEFORE_CDS


def test_sotw_wildcard_accepts_any_name() -> None:
    checker = SotwInvariantChecker()
    checker.on_request(SotwRequest(type_url=LISTENER))
    resp = sotw(LISTENER, "n1", res(LISTENER, "x"), res(LISTENER, "y"))
    checker.on_response(resp)
    sotw_ack(checker, resp)  # still wildcard: an empty list after a legacy wildcard
    checker.on_response(sotw(LISTENER, "n2", res(LISTENER, "z")))
    assert checker.violations == []


def test_sotw_state_machine_passes_the_checker() -> None:
    view = DictView([res(LISTENER, "l"), res(CLUSTER, "c"), res(ENDPOINT, "c")])
    stream = SotwStream(view)
    checker = SotwInvariantChecker()
    last: dict[str, SotwResponse] = {}
    names: dict[str, tuple[str, ...]] = {}

    def send(type_url: str, error: str | None = None) -> None:
        prev = last.get(type_url)
        req = SotwRequest(
            type_url=type_url,
            version_info=prev.version_info if prev else "",
            resource_names=names[type_url],
            response_nonce=prev.nonce if prev else "",
            error_detail=ErrorDetail(3, error) if error else None,
        )
        checker.on_request(req)
        receive(list(stream.on_request(req).responses), ack=True)

    def receive(responses: list[SotwResponse], ack: bool) -> None:
        for r in responses:
            checker.on_response(r)
            last[r.type_url] = r
            if ack:
                send(r.type_url)

    for type_url, requested in ((LISTENER, ("l",)), (CLUSTER, ("c",)), (ENDPOINT, ("c",))):
        names[type_url] = requested
        send(type_url)
    receive(stream.on_update(view.put(res(ENDPOINT, "c", b"v2"), res(CLUSTER, "c", b"v2"))), ack=True)
    receive(stream.on_update(view.put(res(CLUSTER, "c", b"bad"))), ack=False)
    send(CLUSTER, error="bad cluster")
    receive(stream.on_update([(CLUSTER, "c")]), ack=True)
    assert checker.violations == []
    assert stream.statistics().nacks == 1
