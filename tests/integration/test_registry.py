"""The registry end to end: gRPC API -> registry-api actor -> shard actors -> real etcd (the `up` stack)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import grpc
import pytest

from meshactors.errors import Compacted, InvalidArgument, NotFound
from meshactors.model import InstanceRef, Status
from meshactors.registry.client import RegistryClient
from meshactors.store import codec
from meshactors.store.etcd import EtcdStore
from meshactors.store.keys import KeySchema
from meshactors.testing.stack import bearer, registry_flags
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEYS = KeySchema()


def _vip() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


def _instance(vip: str, port: int = 8080, **kw: Any) -> pb.Instance:
    return pb.Instance(vip=vip, host="127.0.0.1", port=port, **kw)


def test_register_list_set_status_deregister(registry: RegistryClient) -> None:
    vip = _vip()
    ref, stored = registry.register(
        _instance(vip, zone="z1", version_label="v1", weight=3, metadata={"team": "blue"}, svip=f"{vip}-secure",
                  secure_port=8443)
    )  # fmt: skip
    assert ref == InstanceRef(vip, "127.0.0.1:8080")
    assert stored.app == vip and stored.registered_at_ms > 0 and stored.mod_revision > 0
    listed, revision = registry.list(vip=vip)
    assert revision >= stored.mod_revision
    assert [(i.instance_id, i.zone, i.weight, dict(i.metadata)) for i in listed] == [
        ("127.0.0.1:8080", "z1", 3, {"team": "blue"})
    ]
    assert [i.instance_id for i in registry.list(vip=f"{vip}-secure")[0]] == ["127.0.0.1:8080"]
    assert registry.list(app=vip)[0] and not registry.list(app="nobody-here")[0]

    updated = registry.set_status(ref, Status.OUT_OF_SERVICE)
    assert updated.status == pb.STATUS_OUT_OF_SERVICE and updated.mod_revision > stored.mod_revision
    assert registry.list(vip=vip)[0][0].status == pb.STATUS_OUT_OF_SERVICE
    assert registry.heartbeat(ref) > 0  # the override kept the lease

    registry.deregister(ref)
    assert registry.list(vip=vip)[0] == []
    with pytest.raises(NotFound):
        registry.heartbeat(ref)
    with pytest.raises(NotFound):
        registry.deregister(ref)


def test_heartbeats_keep_an_instance_past_its_lease_and_a_missed_lease_removes_it(registry: RegistryClient) -> None:
    vip = _vip()
    lease = pb.LeaseSettings(renewal_interval_seconds=1, duration_seconds=3)
    kept, _ = registry.register(_instance(vip, 9001, lease=lease))
    dropped, _ = registry.register(_instance(vip, 9002, lease=lease))
    deadline = time.monotonic() + 6  # twice the lease duration
    while time.monotonic() < deadline:
        registry.heartbeat(kept)
        time.sleep(0.5)
    ids = {i.instance_id for i in registry.list(vip=vip)[0]}
    assert ids == {kept.instance_id}, "the heartbeating instance stays, the silent one expired"
    with pytest.raises(NotFound, match="register it again"):
        registry.heartbeat(dropped)
    registry.deregister(kept)


def test_self_preservation_holds_a_mass_expiry(registry: RegistryClient) -> None:
    vip = _vip()
    lease = pb.LeaseSettings(renewal_interval_seconds=1, duration_seconds=3)
    refs = [registry.register(_instance(vip, 9100 + i, lease=lease))[0] for i in range(12)]
    for ref in refs:  # renewing instances (only those count: a registration that never renewed just expires) ...
        registry.heartbeat(ref)
    time.sleep(7)  # ... then no heartbeats at all: every lease would have run out twice over
    assert len(registry.list(vip=vip)[0]) == 12, "a partition-like heartbeat loss must not wipe the VIP"
    for ref in refs:
        registry.heartbeat(ref)
        registry.deregister(ref)
    assert registry.list(vip=vip)[0] == []


def test_registrations_that_never_heartbeat_expire_and_do_not_engage_self_preservation(
    registry: RegistryClient,
) -> None:
    vip = _vip()
    lease = pb.LeaseSettings(renewal_interval_seconds=1, duration_seconds=3)
    for i in range(12):
        registry.register(_instance(vip, 9150 + i, lease=lease))
    deadline = time.monotonic() + 15
    while registry.list(vip=vip)[0] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert registry.list(vip=vip)[0] == [], "silent registrations are no partition: their leases run out"


def test_watch_streams_snapshot_then_changes(registry: RegistryClient) -> None:
    vip = _vip()
    first, _ = registry.register(_instance(vip, 9201))
    events: list[pb.WatchEvent] = []
    synced = threading.Event()
    done = threading.Event()

    def follow() -> None:
        try:
            for ev in registry.watch(0, vip=vip, timeout_s=30):
                events.append(ev)
                if ev.type == pb.WatchEvent.SYNCED:
                    synced.set()
                if ev.type == pb.WatchEvent.DELETE:
                    break
        finally:
            done.set()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert synced.wait(10)
    second, _ = registry.register(_instance(vip, 9202))
    registry.deregister(first)
    assert done.wait(10)
    kinds = [(pb.WatchEvent.Type.Name(e.type), e.ref.instance_id) for e in events]
    assert kinds == [
        ("SNAPSHOT", first.instance_id),
        ("SYNCED", ""),
        ("PUT", second.instance_id),
        ("DELETE", first.instance_id),
    ]
    revs = [e.revision for e in events[2:]]
    assert revs == sorted(revs)

    # resuming from a revision replays exactly what followed it
    replay = []
    for ev in registry.watch(events[2].revision, vip=vip, timeout_s=10):
        replay.append((pb.WatchEvent.Type.Name(ev.type), ev.ref.instance_id))
        if ev.type == pb.WatchEvent.DELETE:
            break
    assert replay == kinds[2:]
    registry.deregister(second)


async def test_watch_from_a_compacted_revision_is_out_of_range(registry: RegistryClient, store: EtcdStore) -> None:
    vip = _vip()
    ref, stored = registry.register(_instance(vip, 9301))
    registry.deregister(ref)
    await store.compact(await store.revision())
    with pytest.raises(Compacted, match="compacted"):
        for _ in registry.watch(stored.mod_revision, vip=vip, timeout_s=10):
            pass


BAD_REGISTRATIONS = [
    (pb.Instance(host="127.0.0.1", port=80), "instance.vip", "VIP or an SVIP"),
    (pb.Instance(vip="Bad_Name", host="127.0.0.1", port=80), "instance.vip", "lowercase DNS name"),
    (pb.Instance(vip="ok", host="127.0.0.1", port=70000), "instance.port", "out of range"),
    (pb.Instance(vip="ok", host="127.0.0.1", port=0), "instance.port", "out of range"),
    (pb.Instance(vip="ok", host="127.0.0.1", port=80, status=42), "instance.status", "unknown status 42"),
    (pb.Instance(vip="ok", host="127.0.0.1", port=80, metadata={"k": "v" * 300}), "instance.metadata['k']", "256"),
    (pb.Instance(vip="ok", host="127.0.0.1", port=80, metadata={f"k{i}": "v" for i in range(40)}),
     "instance.metadata", "at most 32"),
    (pb.Instance(vip="ok", host="", port=80), "instance.host", "must not be empty"),
]  # fmt: skip


@pytest.mark.parametrize("msg, field, reason", BAD_REGISTRATIONS)
async def test_bad_registrations_are_rejected_naming_the_field_and_write_nothing(
    stack: dict[str, Any], store: EtcdStore, msg: pb.Instance, field: str, reason: str
) -> None:
    before = await store.revision()
    with grpc.insecure_channel(stack["registry"]) as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.RegistryStub(channel).Register(pb.RegisterRequest(instance=msg), timeout=10, metadata=bearer(stack))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}: ")
    assert reason in err.value.details()
    assert await store.revision() == before, "a rejected registration must not write"


async def test_bad_refs_and_unknown_instances(stack: dict[str, Any], store: EtcdStore) -> None:
    before = await store.revision()
    with grpc.insecure_channel(stack["registry"]) as channel:
        stub = pb_grpc.RegistryStub(channel)
        cases = [
            (stub.Heartbeat, pb.HeartbeatRequest(), grpc.StatusCode.INVALID_ARGUMENT, "ref: is required"),
            (stub.Heartbeat, pb.HeartbeatRequest(ref=pb.InstanceRef(vip="", instance_id="x")),
             grpc.StatusCode.INVALID_ARGUMENT, "ref.vip: "),
            (stub.Heartbeat, pb.HeartbeatRequest(ref=pb.InstanceRef(vip="nope", instance_id="x")),
             grpc.StatusCode.NOT_FOUND, "not registered"),
            (stub.Deregister, pb.DeregisterRequest(ref=pb.InstanceRef(vip="nope", instance_id="x")),
             grpc.StatusCode.NOT_FOUND, "not registered"),
            (stub.SetStatus, pb.SetStatusRequest(ref=pb.InstanceRef(vip="nope", instance_id="x"), status=9),
             grpc.StatusCode.INVALID_ARGUMENT, "status: unknown status 9"),
            (stub.SetStatus, pb.SetStatusRequest(ref=pb.InstanceRef(vip="nope", instance_id="x"),
                                                 status=pb.STATUS_DOWN),
             grpc.StatusCode.NOT_FOUND, "not registered"),
            (stub.List, pb.ListRequest(vip="UPPER"), grpc.StatusCode.INVALID_ARGUMENT, "vip: "),
        ]  # fmt: skip
        for method, request, code, text in cases:
            with pytest.raises(grpc.RpcError) as err:
                method(request, timeout=10, metadata=bearer(stack))
            assert err.value.code() == code, (request, err.value.details())
            assert text in err.value.details()
    assert await store.revision() == before


def test_client_maps_invalid_argument_to_the_field(registry: RegistryClient) -> None:
    with pytest.raises(InvalidArgument) as err:
        registry.register(pb.Instance(vip="ok", host="127.0.0.1", port=99999))
    assert err.value.field == "instance.port"


async def test_registrations_are_stored_in_etcd_with_their_own_lease(
    registry: RegistryClient, store: EtcdStore
) -> None:
    vip = _vip()
    a, _ = registry.register(_instance(vip, 9401))
    b, _ = registry.register(_instance(vip, 9402))
    kva = await store.get(KEYS.instance(a))
    kvb = await store.get(KEYS.instance(b))
    assert kva is not None and kvb is not None
    assert kva.lease and kvb.lease and kva.lease != kvb.lease
    assert codec.decode_instance(kva.value).port == 9401
    registry.deregister(a)
    registry.deregister(b)
    assert await store.get(KEYS.instance(a)) is None


def test_heartbeat_batch_answers_each_ref_on_its_own(registry: RegistryClient) -> None:
    vip = _vip()
    a, _ = registry.register(_instance(vip, 9501))
    other = _vip()
    b, _ = registry.register(_instance(other, 9502))  # most likely on the other shard
    results = registry.heartbeat_batch([a, InstanceRef(vip, "nobody"), b, InstanceRef("Bad_VIP", "x")])
    assert isinstance(results[0], int) and results[0] > 0
    assert isinstance(results[1], NotFound) and "not registered" in str(results[1])
    assert isinstance(results[2], int) and results[2] > 0
    assert isinstance(results[3], InvalidArgument) and results[3].field == "refs[3].vip"
    registry.deregister(a)
    registry.deregister(b)


def test_concurrent_heartbeats_are_batched_to_the_shard_and_answered_each(stack: dict[str, Any]) -> None:
    import asyncio

    vip = _vip()
    with RegistryClient(stack["registry"], token=stack["token"]) as client:
        refs = [client.register(_instance(vip, 9600 + i))[0] for i in range(30)]

        async def burst() -> list[Any]:
            async with grpc.aio.insecure_channel(stack["registry"]) as ch:
                stub = pb_grpc.RegistryStub(ch)
                calls = [stub.Heartbeat(pb.HeartbeatRequest(ref=pb.InstanceRef(vip=r.vip, instance_id=r.instance_id)),
                                        timeout=10, metadata=bearer(stack)) for r in refs]  # fmt: skip
                calls.append(stub.Heartbeat(pb.HeartbeatRequest(ref=pb.InstanceRef(vip=vip, instance_id="ghost")),
                                            timeout=10, metadata=bearer(stack)))  # fmt: skip
                return await asyncio.gather(*calls, return_exceptions=True)

        out = asyncio.run(burst())
        assert all(isinstance(r, pb.HeartbeatResponse) and r.ttl_seconds > 0 for r in out[:-1]), out[:3]
        assert isinstance(out[-1], grpc.aio.AioRpcError) and out[-1].code() == grpc.StatusCode.NOT_FOUND
        for ref in refs:
            client.deregister(ref)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vip": "svc-newline\n"}, "instance.vip"),
        ({"instance_id": "i-1\n"}, "instance.instance_id"),
        ({"host": "h.example\n"}, "instance.host"),
        ({"app": "app\n"}, "instance.app"),
        ({"zone": "z1\n"}, "instance.zone"),
    ],
)
def test_a_trailing_newline_is_refused_over_grpc(registry: RegistryClient, change: dict[str, str], field: str) -> None:
    vip = _vip()
    fields = {"vip": vip, "host": "127.0.0.1", "port": 8080, **change}
    with pytest.raises(InvalidArgument) as err:
        registry.register(pb.Instance(**fields))
    assert err.value.field == field, err.value.message
    assert registry.list(vip=vip)[0] == []
    with pytest.raises(InvalidArgument) as err:
        registry.heartbeat(InstanceRef(vip, "i-1\n"))
    assert err.value.field == "ref.instance_id", err.value.message


def test_the_reserved_eureka_metadata_prefix_is_refused_over_grpc(registry: RegistryClient) -> None:
    # `eureka/hostName` is the host name every Eureka client is shown: only the Eureka API may write it.
    vip = _vip()
    with pytest.raises(InvalidArgument) as err:
        registry.register(_instance(vip, metadata={"eureka/hostName": "spoofed.example"}))
    assert err.value.field == "instance.metadata['eureka/hostName']" and "reserved" in err.value.reason
    assert registry.list(vip=vip)[0] == []
    ref, _ = registry.register(_instance(vip))
    with pytest.raises(InvalidArgument) as err:
        registry.update(ref, set_metadata={"eureka/hostName": "spoofed.example"})
    assert err.value.field == "set_metadata['eureka/hostName']"
    with pytest.raises(InvalidArgument) as err:
        registry.update(ref, remove_metadata=["eureka/homePageUrl"])
    assert err.value.field == "remove_metadata['eureka/homePageUrl']"
    assert dict(registry.list(vip=vip)[0][0].metadata) == {}
    registry.deregister(ref)


async def test_ls_pages_a_registry_past_the_4mb_message_bound(
    registry: RegistryClient, store: EtcdStore, stack: dict[str, Any]
) -> None:
    import subprocess
    import sys

    from meshactors.model import Instance, LeaseSettings

    # 3,000 instances with ~4 KB of metadata each (~13 MB), written straight to etcd through the store (as the
    # shards write them, under a lease, so nothing outlives the test) instead of 3,000 Register calls.
    vip = _vip()
    metadata = {f"k{i:02d}": "v" * 120 for i in range(30)}
    lease = await store.grant_lease(60)
    try:
        # 20 puts in flight at a time: 200 at once (13 MB queued behind etcd's fsyncs) ran past the store's 2 s
        # deadline on a loaded 2-core machine.
        for start in range(0, 3_000, 20):
            await asyncio.gather(*(
                store.put(KEYS.instance(InstanceRef(vip, f"i-{n:05d}")), codec.encode_instance(Instance(
                    app=vip, instance_id=f"i-{n:05d}", host="127.0.0.1", vip=vip, port=1000 + n, metadata=metadata,
                    lease=LeaseSettings(30, 90), registered_at_ms=1)), lease)
                for n in range(start, start + 20)
            ))  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:  # what `ls` hit before: one response for everything
            pb_grpc.RegistryStub(grpc.insecure_channel(stack["registry"])).List(
                pb.ListRequest(vip=vip), timeout=30, metadata=bearer(stack)
            )
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        listed, revision = registry.list(vip=vip)
        assert [i.instance_id for i in listed] == [f"i-{n:05d}" for n in range(3_000)] and revision > 0
        page = registry._call("List", pb.ListRequest(vip=vip, page_size=5_000))
        assert len(page.instances) == 500 and page.next_page_token, "the server caps a page at 500"
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "meshactors.cli", "ls", *registry_flags(stack), "--vip", vip],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1].startswith("3000 instance(s) at revision"), proc.stdout[-300:]
    finally:
        await store.revoke_lease(lease)  # deletes the 3,000 keys
    with pytest.raises(InvalidArgument) as bad:
        registry._call("List", pb.ListRequest(page_size=5, page_token="not-a-token"))
    assert bad.value.field == "page_token"


async def test_concurrent_re_registrations_of_one_instance_leak_no_lease(
    registry: RegistryClient, store: EtcdStore
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from meshactors.errors import Conflict

    vip = _vip()
    registry.register(_instance(vip, 9401))
    before = set(await store.leases())

    def one(_: int) -> str:
        try:
            registry.register(_instance(vip, 9401))
            return "ok"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(one, range(48)))
    assert "ok" in outcomes
    kv = await store.get(KEYS.instance(InstanceRef(vip, "127.0.0.1:9401")))
    assert kv is not None and kv.lease
    for _ in range(50):  # revokes of replaced leases run in the background
        leaked = set(await store.leases()) - before - {kv.lease}
        if not leaked:
            break
        await asyncio.sleep(0.2)
    assert not leaked, f"{len(leaked)} leases granted by losing registrations were never revoked ({outcomes})"
    registry.deregister(InstanceRef(vip, "127.0.0.1:9401"))
