"""Killing a registry shard actor in the middle of a stream of registrations loses none of them."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest

from meshactors.errors import Unavailable
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.registry.shardmap import ShardMap
from meshactors.runtime.ops import handle_of, kill
from meshactors.store import codec
from meshactors.store.etcd import EtcdStore
from meshactors.store.keys import KeySchema
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _vips_for(shard: str, n: int) -> list[str]:
    smap = ShardMap.of_size(2)
    out: list[str] = []
    while len(out) < n:
        vip = f"kill-{uuid.uuid4().hex[:8]}"
        if smap.owner(vip) == shard:
            out.append(vip)
    return out


def _register_with_retry(client: RegistryClient, msg: pb.Instance, deadline: float) -> float:
    """Register like a real client: retry while the registry says UNAVAILABLE. Returns seconds spent waiting."""
    start = time.monotonic()
    while True:
        try:
            client.register(msg)
            return time.monotonic() - start
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("victim", ["registry-shard-0", "registry-shard-1"])
async def test_killing_a_shard_mid_stream_loses_no_registration(
    stack: dict[str, Any], store: EtcdStore, ray_driver: Any, victim: str
) -> None:
    vips = _vips_for(victim, 4)
    total = 160
    acked: list[str] = []
    waits: list[float] = []
    errors: list[BaseException] = []
    halfway = threading.Event()

    def writer() -> None:
        try:
            with RegistryClient(stack["registry"], token=stack["token"], timeout_s=20) as client:
                deadline = time.monotonic() + 90
                for i in range(total):
                    vip = vips[i % len(vips)]
                    msg = pb.Instance(vip=vip, host="127.0.0.1", port=10000 + i, instance_id=f"i-{i}")
                    waits.append(_register_with_retry(client, msg, deadline))
                    acked.append(f"{vip}/i-{i}")
                    if i == total // 3:
                        halfway.set()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    before = handle_of(victim, stack["namespace"])
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert halfway.wait(60)
    kill(before, restart=True)  # its process: in the co-hosted shape the mesh host, every role with it
    killed_at = time.monotonic()
    t.join(120)
    assert not t.is_alive() and not errors, errors
    assert len(acked) == total

    # every acknowledged registration is in etcd, exactly once, with its data
    keys = KeySchema()
    items, _ = await store.list_prefix(keys.instances)
    stored = {}
    for kv in items:
        ref = keys.parse_instance(kv.key)
        if ref.vip in vips:
            stored[str(ref)] = codec.decode_instance(kv.value)
    assert sorted(stored) == sorted(acked)
    assert all(inst.port == 10000 + int(inst.instance_id[2:]) for inst in stored.values())

    # the restarted shard reloaded its state from etcd and answers again
    with RegistryClient(stack["registry"], token=stack["token"]) as client:
        some = acked[0].split("/")
        deadline = killed_at + 15
        while True:
            try:
                assert client.heartbeat(InstanceRef(some[0], some[1])) > 0
                break
            except Unavailable:
                assert time.monotonic() < deadline, "the API did not answer within 15 s of the kill"
                await asyncio.sleep(0.1)
        for ref in acked:
            vip, iid = ref.split("/")
            client.deregister(InstanceRef(vip, iid))
    assert max(waits) < 15
