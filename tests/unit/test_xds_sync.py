"""The proxy sync-status rule (meshactors.xds.sync) alone and over the delta and SotW state machines."""

from __future__ import annotations

import dataclasses

import pytest

from meshactors.xds.delta import DeltaStream
from meshactors.xds.sotw import SotwStream
from meshactors.xds.sync import SyncStatus, session_sync, short_type, sync_status
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaRequest, ErrorDetail, SotwRequest, VersionedResource
from meshactors.xds.view import DictView


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def view() -> DictView:
    return DictView([VersionedResource.of(CLUSTER, "a", b"v1"), VersionedResource.of(ENDPOINT, "a", b"v1")])


def statuses(stream: DeltaStream | SotwStream) -> dict[str, SyncStatus]:
    return {t.type_url: t.status for t in session_sync(dataclasses.asdict(stream.statistics()))}


@pytest.mark.parametrize(
    ("sent", "unacked", "nacked", "expected"),
    [
        (False, False, False, SyncStatus.NOT_SENT),
        (True, False, False, SyncStatus.SYNCED),
        (True, True, False, SyncStatus.STALE),
        (True, True, True, SyncStatus.ERROR),
        (True, False, True, SyncStatus.ERROR),
        (False, False, True, SyncStatus.ERROR),  # a NACK wins over everything
    ],
)
def test_rule(sent: bool, unacked: bool, nacked: bool, expected: SyncStatus) -> None:
    assert sync_status(sent=sent, unacked=unacked, nacked=nacked) is expected


def test_delta_not_sent_stale_synced_error_then_synced_again() -> None:
    v = view()
    clock = Clock()
    stream = DeltaStream(v, clock=clock)
    assert stream.on_request(DeltaRequest(type_url=ENDPOINT, subscribe=("missing",))).responses == ()
    assert statuses(stream) == {ENDPOINT: SyncStatus.NOT_SENT}
    (resp,) = stream.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",))).responses  # sent at 101
    (stale,) = session_sync(dataclasses.asdict(stream.statistics()))[:1]
    assert stale.status is SyncStatus.STALE and stale.since == 101.0
    stream.on_request(DeltaRequest(type_url=CLUSTER, response_nonce=resp.nonce))
    (synced,) = session_sync(dataclasses.asdict(stream.statistics()))[:1]
    assert synced.status is SyncStatus.SYNCED and synced.last_ack_at == 102.0 and synced.responses == 1
    assert synced.since == 102.0
    v.put(VersionedResource.of(CLUSTER, "a", b"v2"))
    (resp2,) = stream.on_update([(CLUSTER, "a")])
    stream.on_request(DeltaRequest(type_url=CLUSTER, response_nonce=resp2.nonce, error_detail=ErrorDetail(3, "no")))
    cluster = session_sync(dataclasses.asdict(stream.statistics()))[0]
    assert cluster.status is SyncStatus.ERROR and cluster.last_nack == "no" and cluster.last_nack_at == 104.0
    assert cluster.since == 104.0
    v.put(VersionedResource.of(CLUSTER, "a", b"v3"))
    (resp3,) = stream.on_update([(CLUSTER, "a")])
    stream.on_request(DeltaRequest(type_url=CLUSTER, response_nonce=resp3.nonce))
    assert statuses(stream)[CLUSTER] is SyncStatus.SYNCED


def test_sotw_not_sent_stale_synced_error() -> None:
    v = view()
    stream = SotwStream(v, clock=Clock())
    stream.on_request(SotwRequest(type_url=ENDPOINT, resource_names=("missing",)))
    assert statuses(stream) == {ENDPOINT: SyncStatus.NOT_SENT}
    (resp,) = stream.on_request(SotwRequest(type_url=CLUSTER, resource_names=("a",))).responses
    assert statuses(stream)[CLUSTER] is SyncStatus.STALE
    stream.on_request(
        SotwRequest(type_url=CLUSTER, resource_names=("a",), version_info=resp.version_info, response_nonce=resp.nonce)
    )
    assert statuses(stream)[CLUSTER] is SyncStatus.SYNCED
    v.put(VersionedResource.of(CLUSTER, "a", b"v2"))
    (resp2,) = stream.on_update([(CLUSTER, "a")])
    stream.on_request(
        SotwRequest(
            type_url=CLUSTER,
            resource_names=("a",),
            version_info=resp.version_info,
            response_nonce=resp2.nonce,
            error_detail=ErrorDetail(3, "bad cluster"),
        )
    )
    assert statuses(stream)[CLUSTER] is SyncStatus.ERROR


def test_short_type() -> None:
    assert short_type(CLUSTER) == "Cluster"
    assert short_type("odd") == "odd"
