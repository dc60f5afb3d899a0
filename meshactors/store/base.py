"""The Store protocol the registry and snapshot sides program against, and its plain value types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
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


MAX_TXN_OPS = 128  # etcd's default --max-txn-ops: bounds a Txn's conditions and its writes, each


@dataclass(frozen=True, slots=True)
class Txn:
    """One all-or-nothing write of several keys: every condition holds and every write happens, or nothing does.

    expect: key -> the mod revision it must still have (0: it must not exist), e.g. what a read returned.
    quiet_prefix / quiet_since: no key under `quiet_prefix` was created or modified after revision `quiet_since`
      (a key deleted since is not seen: fence the keys a write depends on in `expect`).
    puts / deletes: the writes (a key in both is an error).
    """

    puts: Mapping[str, bytes] = field(default_factory=dict)
    deletes: tuple[str, ...] = ()
    expect: Mapping[str, int] = field(default_factory=dict)
    quiet_prefix: str = ""
    quiet_since: int = 0


class Store(Protocol):
    """What meshactors needs from etcd. Errors: Unavailable, Conflict, NotFound, Compacted (meshactors.errors)."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def list_prefix(self, prefix: str) -> tuple[list[KeyValue], int]: ...

    async def create(self, key: str, value: bytes, lease: int = 0) -> int: ...

    async def replace(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int: ...

    async def delete(self, key: str, mod_revision: int | None = None) -> int: ...

    async def commit(self, txn: Txn) -> int:
        """Apply `txn` in one etcd transaction; its revision. Conflict (naming what moved) when a condition fails."""
        ...

    async def grant_lease(self, ttl_s: int) -> int: ...

    async def keep_alive(self, lease_id: int) -> int: ...

    async def revoke_lease(self, lease_id: int) -> None: ...

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]: ...

    async def revision(self) -> int: ...
