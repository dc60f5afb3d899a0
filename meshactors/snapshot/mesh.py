"""MeshView: the registry's instances indexed by the VIP/SVIP names they serve, fed by etcd watch events."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from meshactors.model import Instance, InstanceRef


class MeshView:
    """Pure index. Each apply_* returns the names whose instance set changed (the VIPs to rebuild).

    `owns(name)` limits the index to the names this builder is responsible for.
    """

    def __init__(self, owns: Callable[[str], bool] | None = None) -> None:
        self._owns = owns or (lambda _name: True)
        self._by_ref: dict[InstanceRef, Instance] = {}
        self._by_name: dict[str, dict[InstanceRef, Instance]] = {}

    def __len__(self) -> int:
        return len(self._by_ref)

    def _names(self, inst: Instance) -> list[str]:
        return [n for n in inst.names() if self._owns(n)]

    def put(self, ref: InstanceRef, inst: Instance) -> set[str]:
        changed: set[str] = set()
        old = self._by_ref.get(ref)
        if old is not None:
            if old == inst:
                return changed
            for name in self._names(old):
                bucket = self._by_name.get(name)
                if bucket is not None:
                    bucket.pop(ref, None)
                    if not bucket:
                        del self._by_name[name]
                changed.add(name)
        names = self._names(inst)
        if not names:
            self._by_ref.pop(ref, None)
            return changed
        self._by_ref[ref] = inst
        for name in names:
            self._by_name.setdefault(name, {})[ref] = inst
            changed.add(name)
        return changed

    def delete(self, ref: InstanceRef) -> set[str]:
        old = self._by_ref.pop(ref, None)
        if old is None:
            return set()
        changed = set()
        for name in self._names(old):
            bucket = self._by_name.get(name)
            if bucket is not None:
                bucket.pop(ref, None)
                if not bucket:
                    del self._by_name[name]
            changed.add(name)
        return changed

    def replace_all(self, items: Iterable[tuple[InstanceRef, Instance]]) -> set[str]:
        """A Resync: the new full state. Returns every name whose instances differ from before."""
        before = {name: dict(bucket) for name, bucket in self._by_name.items()}
        self._by_ref.clear()
        self._by_name.clear()
        for ref, inst in items:
            self.put(ref, inst)
        names = set(before) | set(self._by_name)
        return {n for n in names if before.get(n) != self._by_name.get(n)}

    def instances(self, name: str) -> list[Instance]:
        return list(self._by_name.get(name, {}).values())

    def names(self) -> list[str]:
        return list(self._by_name)


class NameIndex:
    """Pure count of registrations per VIP/SVIP name over every registration (any status): the known names.

    Each apply_* returns (appeared, disappeared): the names that gained their first registration and the names
    that lost their last one. Only a change of the name set matters to its reader (the known-VIPs guard)."""

    def __init__(self) -> None:
        self._by_ref: dict[InstanceRef, tuple[str, ...]] = {}
        self._count: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._count)

    def __contains__(self, name: object) -> bool:
        return name in self._count

    def names(self) -> list[str]:
        return list(self._count)

    def _add(self, names: Iterable[str], appeared: set[str], disappeared: set[str]) -> None:
        for name in names:
            n = self._count.get(name, 0)
            self._count[name] = n + 1
            if n == 0:
                if name in disappeared:
                    disappeared.discard(name)
                else:
                    appeared.add(name)

    def _remove(self, names: Iterable[str], appeared: set[str], disappeared: set[str]) -> None:
        for name in names:
            n = self._count.get(name, 0)
            if n <= 1:
                self._count.pop(name, None)
                if name in appeared:
                    appeared.discard(name)
                else:
                    disappeared.add(name)
            else:
                self._count[name] = n - 1

    def put(self, ref: InstanceRef, inst: Instance) -> tuple[set[str], set[str]]:
        appeared: set[str] = set()
        disappeared: set[str] = set()
        names = tuple(dict.fromkeys(n for n in inst.names() if n))
        old = self._by_ref.get(ref)
        if old == names:
            return appeared, disappeared
        if old is not None:
            self._remove(old, appeared, disappeared)
        self._by_ref[ref] = names
        self._add(names, appeared, disappeared)
        return appeared, disappeared

    def delete(self, ref: InstanceRef) -> tuple[set[str], set[str]]:
        appeared: set[str] = set()
        disappeared: set[str] = set()
        old = self._by_ref.pop(ref, None)
        if old is not None:
            self._remove(old, appeared, disappeared)
        return appeared, disappeared

    def replace_all(self, items: Iterable[tuple[InstanceRef, Instance]]) -> tuple[set[str], set[str]]:
        """A Resync: the new full state; returns how the name set differs from before."""
        before = set(self._count)
        self._by_ref.clear()
        self._count.clear()
        for ref, inst in items:
            self.put(ref, inst)
        after = set(self._count)
        return after - before, before - after
