"""The Store protocol the registry and snapshot sides program against, and its plain value types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: Literal["put", "delete"]
    key: str
    value: bytes
    mod_revision: int
    lease: int = 0
    prev_value: bytes = b""  # the value before this event (what a delete removed), when etcd still has it


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One watch response: its events (maybe none, for a progress notification) and the header revision."""

    events: tuple[WatchEvent, ...]
    revision: int


class Store(Protocol):
    """What meshactors needs from etcd. Errors: Unavailable, Conflict, NotFound, Compacted (meshactors.errors)."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def list_prefix(self, prefix: str) -> tuple[list[KeyValue], int]: ...

    async def create(self, key: str, value: bytes, lease: int = 0) -> int: ...

    async def replace(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int: ...

    async def delete(self, key: str, mod_revision: int | None = None) -> int: ...

    async def grant_lease(self, ttl_s: int) -> int: ...

    async def keep_alive(self, lease_id: int) -> int: ...

    async def revoke_lease(self, lease_id: int) -> None: ...

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]: ...

    async def revision(self) -> int: ...
