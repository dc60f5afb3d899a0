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
