"""SnapshotCache: the snapshots one xDS host holds for its sessions, per (source, key), read through its sources.

Filled on demand (`provisional`, then `apply` of a fetched snapshot) and updated by pushes from the sources'
update streams. It knows no resource layout: which key holds a name, whether a name is valid, and how a name
is read out of a snapshot is each source's knowledge (meshactors.resources.source).
"""

from __future__ import annotations

from collections.abc import Iterable

from meshactors.resources.snapshot import Snapshot, Versions
from meshactors.resources.source import Source
from meshactors.resources.types import (
    CLUSTER,
    DEFAULT_KIND,
    ENDPOINT,
    VIRTUAL_HOST,
    Ref,
    VersionedResource,
    zone_variant,
)
from meshactors.xds.delta import Generations

# A held snapshot is named by its source and its key within that source.
HeldKey = tuple[str, str]


class SnapshotCache:
    """A ResourceView over every held snapshot (`KindView` narrows it to one client kind). Pure: the host
    decides what to fetch and when."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self._by_type: dict[str, Source] = {}
        self._by_name: dict[str, Source] = {}
        for source in sources:
            if source.name in self._by_name:
                raise ValueError(f"two sources are named {source.name!r}")
            self._by_name[source.name] = source
            for type_url in source.type_urls:
                if type_url in self._by_type:
                    raise ValueError(f"type {type_url} is served by both {self._by_type[type_url].name!r} "
                                     f"and {source.name!r}")  # fmt: skip
                self._by_type[type_url] = source
        self._held: dict[HeldKey, Snapshot] = {}
        # Keys asked for but not fetched yet: what their source can answer before the fetch (e.g. a VIP's
        # Cluster, which does not depend on the registry) is served at once; the rest waits for the snapshot.
        self._provisional: dict[HeldKey, Snapshot] = {}

    # ---- sources ---------------------------------------------------------------------------------------------

    def sources(self) -> list[Source]:
        return list(self._by_name.values())

    def source(self, name: str) -> Source:
        return self._by_name[name]

    def type_urls(self) -> tuple[str, ...]:
        return tuple(self._by_type)

    def generations(self) -> Generations | None:
        """How a delta stream collects a VIP's clusters (meshactors.xds.delta.Generations), when the source of
        Clusters also serves their VHDS virtual hosts and makes generations of both; None: nothing is collected."""
        source = self._by_type.get(CLUSTER)
        resource = getattr(source, "generation_resource", None)
        if source is None or resource is None or self._by_type.get(VIRTUAL_HOST) is not source:
            return None
        owner = source

        def virtual_host(vip: str) -> str:
            return next(name for type_url, name in owner.companions(CLUSTER, vip) if type_url == VIRTUAL_HOST)

        return Generations(vip_of=lambda name: owner.key_of(CLUSTER, name), virtual_host=virtual_host,
                           resource=resource)  # fmt: skip

    def validate(self, type_url: str, name: str) -> str | None:
        """Why a subscribed name cannot be served (None: it can): the owning source decides."""
        source = self._by_type.get(type_url)
        if source is None:
            return f"type {type_url} is not served by meshactors"
        return source.validate(type_url, name)

    def companion_types(self) -> dict[str, str]:
        """Every source's companion types, with their placeholders (see Source.companion_types)."""
        return {t: p for source in self._by_name.values() for t, p in source.companion_types.items()}

    def companions(self, type_url: str, name: str) -> tuple[Ref, ...]:
        """What (type URL, name) brings along (its source decides); nothing for a type no source serves."""
        source = self._by_type.get(type_url)
        return source.companions(type_url, name) if source is not None else ()

    def pushed_types(self) -> dict[str, str]:
        """Every source's pushed types, with their placeholders (see Source.pushed_types)."""
        return {t: p for source in self._by_name.values() for t, p in source.pushed_types.items()}

    def pushed_refs(self, resource: VersionedResource) -> tuple[Ref, ...]:
        """What `resource` pushes, on the types of the sources that push (see Source.pushed_refs)."""
        out: tuple[Ref, ...] = ()
        for source in self._by_name.values():
            if source.pushed_types:
                out += source.pushed_refs(resource)
        return out

    def locate(self, type_url: str, name: str) -> HeldKey:
        """The held key of a name `validate` accepted."""
        source = self._by_type[type_url]
        return (source.name, source.key_of(type_url, name))

    # ---- what is held --------------------------------------------------------------------------------------

    def __contains__(self, held: object) -> bool:
        return held in self._held

    def __len__(self) -> int:
        return len(self._held)

    def keys(self) -> list[HeldKey]:
        return list(self._held)

    def snapshot(self, held: HeldKey) -> Snapshot | None:
        return self._held.get(held)

    def held_versions(self, source: str) -> dict[str, Versions]:
        """Every key held from `source`, with the versions held: what the host tells the source on reconnect."""
        return {key: snap.versions() for (src, key), snap in self._held.items() if src == source}

    def provisional(self, held: HeldKey) -> bool:
        """Serve what the source can answer for `held` before its snapshot arrives. False if already held."""
        if held in self._held or held in self._provisional:
            return False
        snap = self._by_name[held[0]].provisional(held[1])
        if snap is None:
            return False
        self._provisional[held] = snap
        return True

    def drop_provisional(self, held: HeldKey) -> None:
        if self._provisional.pop(held, None) is not None and held not in self._held:
            self._by_name[held[0]].forget(held[1])

    def is_provisional(self, held: HeldKey) -> bool:
        return held in self._provisional

    # ---- the ResourceView ------------------------------------------------------------------------------------

    def get(self, type_url: str, name: str, kind: str = DEFAULT_KIND) -> VersionedResource | None:
        source = self._by_type.get(type_url)
        if source is None:
            return None
        held = (source.name, source.key_of(type_url, name))
        snap = self._held.get(held) or self._provisional.get(held)
        if snap is None:
            return None
        return source.resolve(snap, type_url, name, kind)

    def names(self, type_url: str) -> list[str]:
        source = self._by_type.get(type_url)
        if source is None:
            return []
        out: list[str] = []
        for (src, _key), snap in self._held.items():
            if src == source.name:
                out.extend(snap.names(type_url))
                out.extend(source.derived_names(snap, type_url))
        return out

    # ---- changes -------------------------------------------------------------------------------------------

    def apply(self, source_name: str, snap: Snapshot) -> list[Ref]:
        """Store a snapshot (its source observes it); returns the (type URL, name) pairs whose content changed,
        for `on_update`."""
        source = self._by_name[source_name]
        held = (source_name, snap.key)
        old = self._held.get(held)
        self._held[held] = snap
        self._provisional.pop(held, None)
        source.observe(snap)
        changed = snap.changed_since(old)
        if old is None:  # names derived from a key that was not held yet are new too
            types = dict.fromkeys(snap.type_urls())
        else:
            types = dict.fromkeys(t for t, _ in changed)
        seen = set(changed)
        for type_url in types:
            for name in source.derived_names(snap, type_url):
                if (type_url, name) not in seen:
                    seen.add((type_url, name))
                    changed.append((type_url, name))
        return changed

    def evict(self, held: HeldKey) -> None:
        self._held.pop(held, None)
        self._provisional.pop(held, None)
        self._by_name[held[0]].forget(held[1])


class KindView:
    """The cache as one session reads it: the variant for its client kind (known once its node is seen), and for
    ClusterLoadAssignments first the variant for its zone (locality failover), when the snapshot has one."""

    __slots__ = ("_zone_variant", "cache", "kind", "zone")

    def __init__(self, cache: SnapshotCache, kind: str = DEFAULT_KIND, zone: str = "") -> None:
        self.cache = cache
        self.kind = kind
        self.zone = zone
        self._zone_variant = zone_variant(zone)

    def set_node(self, kind: str, zone: str) -> None:
        """The client kind and zone of the session's node (set once it is seen)."""
        self.kind, self.zone, self._zone_variant = kind, zone, zone_variant(zone)

    def get(self, type_url: str, name: str) -> VersionedResource | None:
        if self._zone_variant and type_url == ENDPOINT:
            found = self.cache.get(type_url, name, self._zone_variant)
            if found is None or found.variant == self._zone_variant:
                return found
        return self.cache.get(type_url, name, self.kind)

    def names(self, type_url: str) -> list[str]:
        return self.cache.names(type_url)
