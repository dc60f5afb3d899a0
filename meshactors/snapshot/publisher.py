"""SnapshotBuilderCore: follows registrations in etcd, builds one typed Snapshot per VIP, streams changes to xDS hosts.

The remote half of the VIP source (meshactors.snapshot.source): keys are VIPs, and what an xDS host holds is told
and compared per (type URL, name, variant) version."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.errors import NotReady, Unavailable
from meshactors.policy.model import MESH_WIDE
from meshactors.registry.shardmap import ShardMap
from meshactors.resources.snapshot import Snapshot, Versions
from meshactors.snapshot.builder import (
    INTENTIONS_KEY_PREFIX,
    KNOWN_VIPS_KEY,
    build_intentions,
    build_known_vips,
    build_vip,
    intentions_key,
    intentions_svip,
)
from meshactors.snapshot.mesh import MeshView, NameIndex
from meshactors.snapshot.settings import BuilderSettings  # lives in a proto-free module every process can import
from meshactors.snapshot.settings import builder_map as builder_map  # re-exported, as BuilderSettings
from meshactors.snapshot.settings import builder_name as builder_name
from meshactors.snapshot.statistics import BuilderStatistics  # re-exported, as BuilderSettings
from meshactors.store.base import Store
from meshactors.store.feed import Batch, RegistryFeed, Removed
from meshactors.store.intentions import IntentionFeed, IntentionTable
from meshactors.store.keys import KeySchema
from meshactors.store.policy_feed import PolicyFeed, PolicyTable


@dataclass
class _Counters:
    known_names_builds: int = 0
    builds: int = 0
    pushes: int = 0
    events: int = 0
    resyncs: int = 0
    update_streams: int = 0
    inconsistent_builds: int = 0
    policy_changes: int = 0
    intention_changes: int = 0
    intention_builds: int = 0
    resources_changed_by_type: dict[str, int] = field(default_factory=dict)
    resources_pushed_by_type: dict[str, int] = field(default_factory=dict)


class Outbox:
    """Changes waiting for one xDS host's update stream. Latest wins per key: a slow host is coalesced, not queued."""

    def __init__(self, host: str, incarnation: str) -> None:
        self.host = host
        self.incarnation = incarnation
        self.pending: dict[str, Snapshot] = {}
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, snap: Snapshot) -> None:
        prev = self.pending.get(snap.key)
        if prev is not None and prev.changed_at > 0 and not 0 < snap.changed_at <= prev.changed_at:
            snap = snap.stamped(prev.changed_at)  # the earlier change reaches the host with this one
        self.pending[snap.key] = snap
        self.ready.set()

    async def take(self) -> list[Snapshot]:
        """Wait for changes (or close); returns them all. An empty list means the outbox was closed."""
        await self.ready.wait()
        self.ready.clear()
        out, self.pending = list(self.pending.values()), {}
        return out

    def close(self) -> None:
        self.closed = True
        self.ready.set()


class SnapshotBuilderCore:
    """Owns the VIPs the builder map gives it. Builds a VIP's resources only while some xDS host wants them.

    Interest is per xDS host *incarnation*: a restarted host starts with a new incarnation and re-subscribes
    what its sessions need, so stale interest of a dead incarnation is dropped, never pushed to forever.
    Changes reach a host through its update stream (`open_updates`); a host with no open stream catches up
    when it opens one, by telling what it holds.
    """

    def __init__(
        self, store: Store, keys: KeySchema, name: str, builders: ShardMap, settings: BuilderSettings | None = None
    ) -> None:
        self.store = store
        self.keys = keys
        self.name = name
        self.builders = builders
        self.settings = settings or BuilderSettings()
        self.incarnation = secrets.token_hex(6)
        self.view = MeshView(owns=lambda vip: builders.owner(vip) == name)
        # the builder owning KNOWN_VIPS_KEY also counts registrations per name over every registration
        self.names = NameIndex() if builders.owner(KNOWN_VIPS_KEY) == name else None
        self._names_wake = asyncio.Event()
        self._built: dict[str, Snapshot] = {}
        self._interest: dict[str, set[str]] = {}  # vip -> xDS hosts
        self._hosts: dict[str, str] = {}  # xDS host -> incarnation
        self._outboxes: dict[str, Outbox] = {}  # xDS host -> its open update stream
        self._orphaned: dict[str, float] = {}  # xDS host -> when its update stream went away
        self._dirty: set[str] = set()
        self._changed_at: dict[str, float] = {}  # dirty VIP -> when its first change since the last flush was seen
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._instances_loaded = asyncio.Event()
        self._policies_loaded = asyncio.Event()
        self._intentions_loaded = asyncio.Event()
        self.policies = PolicyTable()
        self.intentions = IntentionTable()
        self._noted: dict[str, tuple[tuple[str, str], ...]] = {}  # vip -> the notes last logged for it
        self._tasks = TaskSet()
        self._log = log.get("snapshot.builder", builder=name)
        self.counters = _Counters()
        self.revision = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        self._tasks.spawn(self._follow(), name=f"{self.name}-watch")
        self._tasks.spawn(self._follow_policies(), name=f"{self.name}-policies")
        self._tasks.spawn(self._follow_intentions(), name=f"{self.name}-intentions")
        self._tasks.spawn(self._flush_loop(), name=f"{self.name}-flush")
        if self.names is not None:
            self._tasks.spawn(self._names_loop(), name=f"{self.name}-names")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    # ---- following the registry ----------------------------------------------------------------------------

    async def _follow(self) -> None:
        # Every registration is read (an instance keyed under one VIP may serve an SVIP this builder owns);
        # the MeshView keeps only the names this builder owns.
        feed = RegistryFeed(self.store, self.keys, None, name=self.name)
        while True:
            try:
                async for change in feed:
                    if isinstance(change, Batch):
                        changed: set[str] = set()
                        names_changed = False
                        for ev in change.events:
                            self.counters.events += 1
                            if isinstance(ev, Removed):
                                changed |= self.view.delete(ev.ref)
                                if self.names is not None:
                                    names_changed |= any(self.names.delete(ev.ref))
                            else:
                                changed |= self.view.put(ev.ref, ev.instance)
                                if self.names is not None:
                                    names_changed |= any(self.names.put(ev.ref, ev.instance))
                        self.revision = change.revision
                        if names_changed:
                            self._names_wake.set()
                    else:
                        self.counters.resyncs += 1
                        changed = self.view.replace_all((r.ref, r.instance) for r in change.items)
                        if self.names is not None and any(
                            self.names.replace_all((r.ref, r.instance) for r in change.items)
                        ):
                            self._names_wake.set()
                        self.revision = change.revision
                        if not self._instances_loaded.is_set():
                            self._instances_loaded.set()
                            self._log.info("builder loaded", instances=len(self.view), revision=change.revision)
                            self._check_loaded()
                    self._mark(changed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop logs and never dies
                self._log.exception("builder watch loop failed; restarting", error=str(exc))
                await asyncio.sleep(0.5)

    async def _follow_policies(self) -> None:
        """Keep `self.policies` current from etcd; a change marks the VIPs whose effective policy it touched."""
        feed = PolicyFeed(self.store, self.keys, None, name=f"{self.name}-policies", wants=self._wants_policy)
        while True:
            try:
                async for change in feed:
                    touched = self.policies.apply(change)
                    self.counters.policy_changes += 1
                    self._mark(list(self._interest) if MESH_WIDE in touched else touched)
                    if not self._policies_loaded.is_set():
                        self._policies_loaded.set()
                        self._log.info("policies loaded", documents=len(self.policies.documents))
                        self._check_loaded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop logs and never dies
                self._log.exception("policy watch loop failed; restarting", error=str(exc))
                await asyncio.sleep(0.5)

    async def _follow_intentions(self) -> None:
        """Keep `self.intentions` current from etcd (the destinations whose intentions key this builder owns, and the
        mesh default); a change marks the intentions keys it touched (the default: every one held)."""
        feed = IntentionFeed(
            self.store, self.keys, None, name=f"{self.name}-intentions",
            wants=lambda dst: self.builders.owner(intentions_key(dst)) == self.name,
        )  # fmt: skip
        while True:
            try:
                async for change in feed:
                    touched = self.intentions.apply(change)
                    self.counters.intention_changes += 1
                    if MESH_WIDE in touched:
                        self._mark([k for k in self._interest if k.startswith(INTENTIONS_KEY_PREFIX)])
                    else:
                        self._mark([intentions_key(dst) for dst in touched])
                    if not self._intentions_loaded.is_set():
                        self._intentions_loaded.set()
                        self._log.info("intentions loaded", destinations=len(self.intentions.rules))
                        self._check_loaded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop logs and never dies
                self._log.exception("intention watch loop failed; restarting", error=str(exc))
                await asyncio.sleep(0.5)

    def _wants_policy(self, vip: str) -> bool:
        return vip == MESH_WIDE or self.builders.owner(vip) == self.name

    def _check_loaded(self) -> None:
        """Ready once the registrations, the policies and the intentions are loaded (never serve half a picture)."""
        loaded = self._instances_loaded, self._policies_loaded, self._intentions_loaded
        if all(e.is_set() for e in loaded) and not self._ready.is_set():
            self._ready.set()

    def _mark(self, vips: Iterable[str]) -> None:
        wanted = [v for v in vips if v in self._interest]
        if wanted:
            now = time.time()  # the change's time as the watch delivered it: what convergence is measured from
            for vip in wanted:
                self._changed_at.setdefault(vip, now)
            self._dirty.update(wanted)
            self._wake.set()

    # ---- building and pushing ------------------------------------------------------------------------------

    async def _names_loop(self) -> None:
        """The name set changed: rebuild the known-names snapshot through the flush like any key, at once for the
        first change and then at most every `names_coalesce_s` (at 10,000 names it is ~1 MB and ~50 ms to build):
        changes meanwhile join the next build."""
        while True:
            await self._names_wake.wait()
            self._names_wake.clear()
            self._mark([KNOWN_VIPS_KEY])
            await asyncio.sleep(self.settings.names_coalesce_s)

    def _build(self, vip: str) -> Snapshot:
        if vip == KNOWN_VIPS_KEY:
            if self.names is None:  # _owned() lets only the owner get here
                raise Unavailable(f"{self.name} does not own {KNOWN_VIPS_KEY!r}: builder maps disagree")
            self.counters.known_names_builds += 1
            return build_known_vips(self.names.names())
        svip = intentions_svip(vip)
        if svip is not None:
            self.counters.intention_builds += 1
            table = self.intentions
            return build_intentions(svip, table.of(svip), table.default, self.settings.trust_domain)
        built = build_vip(
            vip,
            self.view.instances(vip),
            self.policies.effective(vip),
            trust_domain=self.settings.trust_domain,
            revisions=self.policies.revisions_of(vip),
        )
        self.counters.builds += 1
        if built.notes and self._noted.get(vip) != built.notes:  # said once per distinct set, not per build
            self._log.warning("left out of the VIP's resources", vip=vip, notes=list(built.notes)[:20])
        if built.notes:
            self._noted[vip] = built.notes
        else:
            self._noted.pop(vip, None)
        problems = built.consistent()
        if problems:  # a builder bug: say which reference dangles (Envoy would wait for it or NACK)
            self.counters.inconsistent_builds += 1
            self._log.error("built an inconsistent snapshot", vip=vip, problems=[str(p) for p in problems][:20])
        return built

    def current(self, vip: str) -> Snapshot:
        built = self._built.get(vip)
        if built is None:
            built = self._built[vip] = self._build(vip)
        return built

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.settings.coalesce_s)
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            try:
                self._flush(dirty)
                self._drop_orphans()
            except Exception as exc:  # the loop logs and never dies
                self._log.exception("flush failed", error=str(exc), vips=len(dirty))

    def _flush(self, dirty: set[str]) -> None:
        for vip in dirty:
            changed_at = self._changed_at.pop(vip, 0.0)
            hosts = self._interest.get(vip)
            if not hosts:
                self._built.pop(vip, None)
                self._noted.pop(vip, None)
                continue
            old = self._built.get(vip)
            new = self._build(vip)
            self._built[vip] = new
            if old is not None and old == new:
                continue
            changed_types = [type_url for type_url, _ in new.changed_since(old)]
            _tally(self.counters.resources_changed_by_type, changed_types)
            pushed = new.stamped(changed_at) if changed_at else new
            for host in hosts:
                box = self._outboxes.get(host)
                if box is not None:
                    box.put(pushed)
                    self.counters.pushes += 1
                    _tally(self.counters.resources_pushed_by_type, changed_types)

    def _drop_orphans(self) -> None:
        now = time.monotonic()
        for host, since in list(self._orphaned.items()):
            if now - since >= self.settings.orphan_grace_s:
                del self._orphaned[host]
                self._forget_host(host)
                self._log.info("xDS host gone; dropped its interest", host=host)

    # ---- interest (called by xDS hosts) --------------------------------------------------------------------

    def _check(self, host: str, incarnation: str) -> None:
        if not self._ready.is_set():
            raise NotReady(f"{self.name} is still loading registrations from etcd")
        if self._hosts.get(host) != incarnation:
            if host in self._hosts:
                self._log.info("xDS host restarted; dropping its old interest", host=host)
            self._forget_host(host)
            self._hosts[host] = incarnation

    def _forget_host(self, host: str) -> None:
        self._hosts.pop(host, None)
        for vip in [v for v, hosts in self._interest.items() if host in hosts]:
            self._drop(host, [vip])
        box = self._outboxes.pop(host, None)
        if box is not None:
            box.close()

    def _drop(self, host: str, vips: Iterable[str]) -> None:
        for vip in vips:
            hosts = self._interest.get(vip)
            if hosts is None:
                continue
            hosts.discard(host)
            if not hosts:
                del self._interest[vip]
                self._built.pop(vip, None)
                self._noted.pop(vip, None)

    def _owned(self, vip: str) -> None:
        if self.builders.owner(vip) != self.name:
            raise Unavailable(f"{self.name} does not own VIP {vip!r}: builder maps disagree")

    def subscribe(self, host: str, incarnation: str, vips: list[str]) -> list[Snapshot]:
        """Register interest and return the current snapshot of each VIP (unknown VIPs: no endpoints)."""
        self._check(host, incarnation)
        out = []
        for vip in vips:
            self._owned(vip)
            self._interest.setdefault(vip, set()).add(host)
            out.append(self.current(vip))
        return out

    def unsubscribe(self, host: str, incarnation: str, vips: list[str]) -> None:
        if self._hosts.get(host) == incarnation:
            self._drop(host, vips)

    def open_updates(self, host: str, incarnation: str, held: dict[str, Versions]) -> tuple[Outbox, list[Snapshot]]:
        """A host (re)opens its update stream telling everything it holds from us; returns its outbox and what
        differs from what it holds. Used after either side restarted, and whenever a stream broke.

        Interest the same host incarnation registered before is kept (a fetch may be in flight); interest of
        an older incarnation is dropped."""
        self._check(host, incarnation)
        self._orphaned.pop(host, None)
        box = Outbox(host, incarnation)
        old = self._outboxes.get(host)
        if old is not None:
            old.close()
        self._outboxes[host] = box
        self.counters.update_streams += 1
        differ = []
        for vip, versions in held.items():
            if self.builders.owner(vip) != self.name:
                continue
            self._interest.setdefault(vip, set()).add(host)
            cur = self.current(vip)
            if cur.differs(versions):
                differ.append(cur)
        return box, differ

    def close_updates(self, box: Outbox) -> None:
        if self._outboxes.get(box.host) is box:
            del self._outboxes[box.host]
            self._orphaned[box.host] = time.monotonic()
        box.close()

    def statistics(self) -> BuilderStatistics:
        held: dict[str, int] = {}
        for snap in self._built.values():
            _tally(held, (r.type_url for r in snap.resources))
        return BuilderStatistics(
            builder=self.name,
            ready=self.ready,
            incarnation=self.incarnation,
            revision=self.revision,
            instances=len(self.view),
            vips_with_interest=len(self._interest),
            hosts=tuple(sorted(self._hosts)),
            update_streams_open=len(self._outboxes),
            policies=len(self.policies.documents),
            known_names=len(self.names) if self.names is not None else -1,
            resources_held_by_type=held,
            **asdict(self.counters),
        )


def _tally(counts: dict[str, int], type_urls: Iterable[str]) -> None:
    for type_url in type_urls:
        counts[type_url] = counts.get(type_url, 0) + 1
