"""EurekaView: the registry as Eureka clients see it: instances by app and id, the recent changes, the hash."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from meshactors.eureka import codec
from meshactors.model import Instance, InstanceRef

Key = tuple[str, str]  # (APP, instance id)
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True, slots=True)
class Change:
    at: float
    key: Key
    action: str
    info: dict[str, Any]


class EurekaView:
    """A cache of every registry record (whoever registered it), fed by our own writes and a watch of etcd.

    Records are applied only if newer (by etcd mod revision) than what the view holds, and a deletion leaves a
    tombstone until the watch has passed it, so a write seen early and its echo from the watch agree.
    `changes` is Eureka's recently-changed queue (for `apps/delta`); `version` is its versions__delta.
    """

    def __init__(self, retention_s: float = 180.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.retention_s = retention_s
        self.clock = clock
        self._records: dict[InstanceRef, tuple[Instance, int]] = {}
        self._groups: dict[Key, set[InstanceRef]] = {}
        self._infos: dict[Key, dict[str, Any]] = {}  # each instance's InstanceInfo, rendered once per change
        self._tombstones: dict[InstanceRef, int] = {}
        self._changes: deque[Change] = deque()
        self.version = 0
        self.revision = 0
        self.loaded = False

    # ---- writes ------------------------------------------------------------------------------------------------

    def put(self, inst: Instance, revision: int) -> None:
        ref = inst.ref
        current = self._records.get(ref)
        if (current is not None and current[1] >= revision) or self._tombstones.get(ref, 0) >= revision:
            return
        self._tombstones.pop(ref, None)
        if current is not None and codec.group_key(current[0]) != codec.group_key(inst):
            self._drop(ref)  # the same record now belongs to another app
        key = codec.group_key(inst)
        existed = bool(self._groups.get(key))
        self._records[ref] = (inst, revision)
        self._groups.setdefault(key, set()).add(ref)
        self._changed(key, MODIFIED if existed else ADDED, self.records(key))

    def delete(self, ref: InstanceRef, revision: int) -> None:
        current = self._records.get(ref)
        self._tombstones[ref] = max(revision, self._tombstones.get(ref, 0))
        if current is None or current[1] >= revision:
            return
        self._drop(ref)

    def _drop(self, ref: InstanceRef) -> None:
        inst, _ = self._records.pop(ref)
        key = codec.group_key(inst)
        group = self._groups.get(key, set())
        group.discard(ref)
        if group:
            self._changed(key, MODIFIED, self.records(key))
        else:
            self._groups.pop(key, None)
            self._changed(key, DELETED, [inst])

    def replace_all(self, items: Iterable[tuple[Instance, int]], revision: int) -> None:
        """A full listing (initial load, or after etcd compacted the watch's history)."""
        fresh = {inst.ref: (inst, rev) for inst, rev in items}
        for ref, (_, rev) in list(self._records.items()):
            if ref not in fresh and rev <= revision:  # a record written after the listing stays
                self._drop(ref)
        for inst, rev in fresh.values():
            self.put(inst, rev)
        self.advance(revision)
        self.loaded = True

    def advance(self, revision: int) -> None:
        """The watch has delivered everything up to `revision`: older tombstones are no longer needed."""
        self.revision = max(self.revision, revision)
        for ref in [r for r, rev in self._tombstones.items() if rev <= self.revision]:
            del self._tombstones[ref]

    def _changed(self, key: Key, action: str, records: list[Instance]) -> None:
        self.version += 1
        now = self.clock()
        info = codec.instance_info(records)
        if action == DELETED:
            self._infos.pop(key, None)
        else:
            self._infos[key] = info
        self._changes.append(Change(now, key, action, {**info, "actionType": action}))
        while self._changes and self._changes[0].at < now - self.retention_s:
            self._changes.popleft()

    # ---- reads -------------------------------------------------------------------------------------------------

    def records(self, key: Key) -> list[Instance]:
        return sorted((self._records[r][0] for r in self._groups.get(key, ())), key=lambda i: i.routing_name)

    def info(self, key: Key) -> dict[str, Any]:
        """The instance's InstanceInfo as of its last change (shared: do not modify)."""
        return self._infos[key]

    def find(self, app: str, instance_id: str) -> list[Instance]:
        return self.records((app.upper(), instance_id))

    def find_id(self, instance_id: str) -> list[Instance]:
        for key in sorted(self._groups):
            if key[1] == instance_id:
                return self.records(key)
        return []

    def groups(self, app: str = "", vip: str = "", svip: str = "") -> list[tuple[Key, list[Instance]]]:
        """Every instance (optionally of one app, or serving one VIP or SVIP), in (APP, id) order."""
        out = []
        for key in sorted(self._groups):
            if app and key[0] != app.upper():
                continue
            records = self.records(key)
            if vip and not any(r.vip == vip for r in records):
                continue
            if svip and not any(r.svip == svip for r in records):
                continue
            out.append((key, records))
        return out

    def hashcode(self) -> str:
        return codec.reconcile_hash(codec.status_of(self.records(key)) for key in self._groups)

    def recent_changes(self) -> list[Change]:
        """The latest change of each instance within the retention window, oldest first."""
        cutoff = self.clock() - self.retention_s
        latest: dict[Key, Change] = {}
        for change in self._changes:
            if change.at >= cutoff:
                latest.pop(change.key, None)
                latest[change.key] = change
        return list(latest.values())

    def __len__(self) -> int:
        return len(self._groups)
