"""LocalShardBackend: the co-hosted APIs call their shard directly, with GrpcShardBackend's error contract."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshactors.errors import MeshError, NotFound, Unavailable
from meshactors.model import Instance, InstanceRef, Status
from meshactors.registry.local import LocalShardBackend

REF = InstanceRef("orders", "i-1")


class _Core:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    async def register(self, instance: Instance) -> tuple[Instance, int]:
        self.seen.append(("register", instance))
        return instance, 7

    async def heartbeat(self, ref: InstanceRef) -> int:
        if ref.instance_id == "gone":
            raise NotFound(f"{ref} is not registered")
        if ref.instance_id == "bug":
            raise KeyError("bug")
        return 90

    async def deregister(self, ref: InstanceRef) -> int:
        raise ZeroDivisionError("boom")

    async def set_status(self, ref: InstanceRef, status: Status) -> tuple[Instance, int]:
        raise Unavailable("etcd is unreachable")

    async def update(self, ref: InstanceRef, status: Any, set_metadata: Any, remove: Any) -> tuple[Instance, int]:
        self.seen.append(("update", (ref, status, set_metadata, remove)))
        return Instance(app="", instance_id="i-1", host="h", vip="orders", port=1), 9


async def test_calls_reach_the_core_and_its_errors_pass_through_as_they_are() -> None:
    core = _Core()
    backend = LocalShardBackend(lambda shard: core if shard == "registry-shard-0" else None, retry_s=0.1)
    inst = Instance(app="", instance_id="i-1", host="127.0.0.1", vip="orders", port=8080)
    assert await backend.register("registry-shard-0", inst) == (inst, 7) and core.seen == [("register", inst)]
    assert await backend.heartbeat("registry-shard-0", REF) == 90
    with pytest.raises(Unavailable, match="etcd is unreachable"):
        await backend.set_status("registry-shard-0", REF, Status.OUT_OF_SERVICE)
    with pytest.raises(MeshError, match=r"internal error in Deregister of registry-shard-0: ZeroDivisionError"):
        await backend.deregister("registry-shard-0", REF)
    _, revision = await backend.update("registry-shard-0", REF, None, {"k": "v"}, ["old"])
    assert revision == 9 and core.seen[-1] == ("update", (REF, None, {"k": "v"}, ["old"]))
    outcomes = await backend.heartbeat_many(
        "registry-shard-0", [REF, InstanceRef("orders", "gone"), InstanceRef("orders", "bug")]
    )
    assert outcomes[0] == 90 and isinstance(outcomes[1], NotFound)
    assert isinstance(outcomes[2], MeshError) and "KeyError" in outcomes[2].message


async def test_a_shard_not_running_yet_is_waited_for_then_unavailable() -> None:
    core = _Core()
    started: list[_Core] = []
    backend = LocalShardBackend(lambda shard: started[0] if started else None, retry_s=5.0)
    asyncio.get_running_loop().call_later(0.1, started.append, core)  # its host finishes starting it
    assert await backend.heartbeat("registry-shard-1", REF) == 90
    never = LocalShardBackend(lambda shard: None, retry_s=0.2)
    with pytest.raises(Unavailable, match="registry shard registry-shard-1 is not running"):
        await never.heartbeat("registry-shard-1", REF)


async def test_every_call_runs_through_the_enter_hook_as_the_shards_own_work() -> None:
    entered: list[str] = []

    def enter(shard: str, coro: Any) -> Any:
        entered.append(shard)
        return coro

    backend = LocalShardBackend(lambda shard: _Core(), enter=enter)
    await backend.heartbeat("registry-shard-0", REF)
    await backend.heartbeat_many("registry-shard-1", [REF, REF])
    assert entered == ["registry-shard-0", "registry-shard-1"]
