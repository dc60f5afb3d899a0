"""The actors' internal gRPC APIs (a shard's Registry service, a builder's service) refuse callers without the
deployment's cluster secret, write nothing for them, and never show the secret in the ready file or the logs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors import cluster_auth, defaults
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.registry.shardmap import ShardMap
from meshactors.runtime.calls import call_sync
from meshactors.runtime.ops import handle_of
from meshactors.snapshot.publisher import builder_map
from meshactors.store.etcd import EtcdStore
from meshactors.store.keys import KeySchema
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc
from meshactors.v1 import snapshot_pb2, snapshot_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEYS = KeySchema()
SHARD, BUILDER = "registry-shard-0", "snapshot-builder-0"
BUILDERS = builder_map(defaults.BUILDERS)  # the stack runs the default number of builders
WRONG = (("no secret", ()), ("a wrong secret", cluster_auth.call_metadata(cluster_auth.new_secret())))


def _address(ray: Any, actor: str) -> str:
    return str(call_sync(handle_of(actor, ray.get_runtime_context().namespace), "address", timeout_s=15))


def _vip_of(shard: str, shards: int) -> str:
    smap = ShardMap.of_size(shards)
    while True:
        vip = f"auth-{uuid.uuid4().hex[:8]}"
        if smap.owner(vip) == shard:
            return vip


async def _stored(store: EtcdStore, vip: str) -> list[str]:
    kvs, _ = await store.list_prefix(f"{KEYS.instances}{vip}/")
    return [kv.key for kv in kvs]


async def test_a_shard_refuses_a_register_without_the_secret_and_writes_nothing(
    stack: dict[str, Any], store: EtcdStore, registry: RegistryClient, ray_driver: Any
) -> None:
    target = _address(ray_driver, SHARD)
    vip = _vip_of(SHARD, int(stack["shards"]))
    request = pb.RegisterRequest(instance=pb.Instance(vip=vip, host="10.9.9.9", port=6666, instance_id="rogue"))
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.RegistryStub(ch)
        for what, metadata in WRONG:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Register(request, timeout=10, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, what
            assert err.value.details() == "internal API: missing or wrong cluster secret", what
            for method, req in (
                ("Deregister", pb.DeregisterRequest(ref=pb.InstanceRef(vip=vip, instance_id="rogue"))),
                ("HeartbeatBatch", pb.HeartbeatBatchRequest()),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await getattr(stub, method)(req, timeout=10, metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (what, method)
        assert await _stored(store, vip) == []
        assert registry.list(vip=vip)[0] == []

        # the same call with the secret is served: the refusal was about the secret alone
        secret = cluster_auth.call_metadata(stack["_cluster_secret"])
        resp = await stub.Register(request, timeout=10, metadata=secret)
        assert resp.instance.instance_id == "rogue"
        assert await _stored(store, vip) == [KEYS.instance(InstanceRef(vip, "rogue"))]
    registry.deregister(InstanceRef(vip, "rogue"))
    assert await _stored(store, vip) == []

    # and the public API, whose calls to the shard carry the secret, registers as ever
    ref, stored = registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=8080, instance_id="real"))
    assert stored.port == 8080
    assert await _stored(store, vip) == [KEYS.instance(ref)]
    registry.deregister(ref)


def _builder_stats(ray: Any) -> Any:
    return call_sync(handle_of(BUILDER, ray.get_runtime_context().namespace), "statistics", timeout_s=15).builder


async def test_a_builder_refuses_subscribe_and_updates_without_the_secret(
    stack: dict[str, Any], ray_driver: Any
) -> None:
    target = _address(ray_driver, BUILDER)
    intruder = f"intruder-{uuid.uuid4().hex[:6]}"
    before = _builder_stats(ray_driver)
    vip = next(v for v in (f"auth-{uuid.uuid4().hex[:8]}" for _ in range(1000)) if BUILDERS.owner(v) == BUILDER)
    subscribe = snapshot_pb2.SubscribeRequest(host=intruder, incarnation="i1", keys=[vip])
    async with grpc.aio.insecure_channel(target) as ch:
        stub = snapshot_pb2_grpc.SnapshotBuilderStub(ch)
        for what, metadata in WRONG:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Subscribe(subscribe, timeout=10, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, what
            assert err.value.details() == "internal API: missing or wrong cluster secret", what
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.Updates(
                    snapshot_pb2.UpdatesRequest(host=intruder, incarnation="i1"), timeout=10, metadata=metadata
                ):
                    pytest.fail(f"an update stream opened with {what}")
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, what
        after = _builder_stats(ray_driver)
        assert intruder not in after.hosts
        assert after.update_streams == before.update_streams  # no stream was ever opened for the intruder

        # with the secret the same Subscribe is served (and taken back)
        secret = cluster_auth.call_metadata(stack["_cluster_secret"])
        await stub.Subscribe(subscribe, timeout=10, metadata=secret)
        assert intruder in _builder_stats(ray_driver).hosts
        await stub.Unsubscribe(subscribe, timeout=10, metadata=secret)


def test_the_secret_is_in_no_ready_file_and_no_log(stack: dict[str, Any], ray_driver: Any) -> None:
    secret = stack["_cluster_secret"].encode()
    state_dir = Path(stack["state_dir"])
    files = [state_dir / "ready.json", state_dir / "up.log", *Path(stack["log_dir"]).rglob("*")]
    checked = [f for f in files if f.is_file()]
    assert len(checked) > 3  # the ready file, `up`'s output and the actors' logs
    leaked = [str(f) for f in checked if secret in f.read_bytes()]
    assert leaked == []
    assert "_cluster_secret" not in (state_dir / "ready.json").read_text()
