"""LocalShardBackend: the registry APIs reach a shard of their own process by a direct call (the co-hosted shape).

The same contract as GrpcShardBackend without the hop (encode, loopback gRPC, decode, on one event loop): the
shard's own errors pass through as they are, anything else becomes an INTERNAL MeshError, and a shard that is
not running yet (its host is starting it) shows up as latency until `retry_s`, then as Unavailable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from meshactors import log
from meshactors.errors import MeshError, Unavailable
from meshactors.model import Instance, InstanceRef, Status
from meshactors.registry.shard import RegistryShardCore

T = TypeVar("T")
_log = log.get("registry.local")


class LocalShardBackend:
    """A ShardBackend over direct calls. `core_of(shard)` is the shard's core in this process, or None while it
    is not running."""

    def __init__(
        self,
        core_of: Callable[[str], RegistryShardCore | None],
        retry_s: float = 10.0,
        enter: Callable[[str, Coroutine[Any, Any, Any]], Awaitable[Any]] | None = None,
    ) -> None:
        self.core_of = core_of
        self.retry_s = retry_s
        # how a call runs as the shard's own work (the host runs it in the shard's context); default: as it is
        self.enter = enter or (lambda _shard, coro: coro)

    async def _core(self, shard: str) -> RegistryShardCore:
        deadline = time.monotonic() + self.retry_s
        delay = 0.02
        while (core := self.core_of(shard)) is None:
            if time.monotonic() + delay > deadline:
                raise Unavailable(f"registry shard {shard} is not running (yet)")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        return core

    async def _run(self, shard: str, method: str, call: Callable[[RegistryShardCore], Coroutine[Any, Any, T]]) -> T:
        core = await self._core(shard)
        try:
            return cast(T, await self.enter(shard, call(core)))
        except MeshError:
            raise
        except Exception as exc:
            _log.exception("unexpected error in registry shard", shard=shard, method=method, error=repr(exc)[:300])
            raise MeshError(f"internal error in {method} of {shard}: {exc!r}") from exc

    async def register(self, shard: str, instance: Instance) -> tuple[Instance, int]:
        return await self._run(shard, "Register", lambda core: core.register(instance))

    async def heartbeat(self, shard: str, ref: InstanceRef) -> int:
        return await self._run(shard, "Heartbeat", lambda core: core.heartbeat(ref))

    async def heartbeat_many(self, shard: str, refs: list[InstanceRef]) -> list[int | MeshError]:
        core = await self._core(shard)

        async def all_of() -> list[int | BaseException]:
            return await asyncio.gather(*(core.heartbeat(ref) for ref in refs), return_exceptions=True)

        outcomes = await self.enter(shard, all_of())
        out: list[int | MeshError] = []
        for outcome in outcomes:
            if isinstance(outcome, MeshError) or not isinstance(outcome, BaseException):
                out.append(outcome)
            else:
                _log.error("unexpected heartbeat failure", shard=shard, error=repr(outcome)[:300])
                out.append(MeshError(f"internal error in Heartbeat of {shard}: {outcome!r}"))
        return out

    async def deregister(self, shard: str, ref: InstanceRef) -> int:
        return await self._run(shard, "Deregister", lambda core: core.deregister(ref))

    async def set_status(self, shard: str, ref: InstanceRef, status: Status) -> tuple[Instance, int]:
        return await self._run(shard, "SetStatus", lambda core: core.set_status(ref, status))

    async def update(
        self, shard: str, ref: InstanceRef, status: Status | None, set_metadata: dict[str, str], remove: list[str]
    ) -> tuple[Instance, int]:
        return await self._run(shard, "Update", lambda core: core.update(ref, status, set_metadata, remove))
