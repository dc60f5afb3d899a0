"""SnapshotBuilderCore: follows registrations in etcd, builds per-VIP resources, pushes changes to xDS hosts."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from meshactors import log
from meshactors.errors import MeshError, NotReady, Unavailable
from meshactors.registry.shardmap import ShardMap
from meshactors.snapshot.builder import VipResources, build_vip
from meshactors.snapshot.mesh import MeshView
from meshactors.store import codec
from meshactors.store.base import KeyValue, Store
from meshactors.store.keys import KeySchema
from meshactors.store.watch import Changes, ResumableWatch


def builder_name(index: int) -> str:
    return f"snapshot-builder-{index}"


def builder_map(count: int) -> ShardMap:
    return ShardMap([builder_name(i) for i in range(count)])


class Pusher(Protocol):
    """Delivers changed VIP resources to one xDS host; returns the VIPs that host no longer wants."""

    async def push(self, server: str, resources: list[VipResources]) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class BuilderSettings:
    coalesce_s: float = 0.002  # bursts of changes to one VIP within this window become one build and push
    push_timeout_s: float = 5.0


class SnapshotBuilderCore:
    """Owns the VIPs the builder map gives it. Builds a VIP's resources only while some xDS host wants them.

    Interest is per xDS host *incarnation*: a restarted host starts with a new incarnation and re-subscribes
    what its sessions need, so stale interest of a dead incarnation is dropped, never pushed to forever.
    """

    def __init__(
        self,
        store: Store,
        keys: KeySchema,
        name: str,
        builders: ShardMap,
        pusher: Pusher,
        settings: BuilderSettings | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.name = name
        self.builders = builders
        self.pusher = pusher
        self.settings = settings or BuilderSettings()
        self.incarnation = secrets.token_hex(6)
        self.view = MeshView(owns=lambda vip: builders.owner(vip) == name)
        self._built: dict[str, VipResources] = {}
        self._interest: dict[str, set[str]] = {}  # vip -> xDS hosts
        self._hosts: dict[str, str] = {}  # xDS host -> incarnation
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._log = log.get("snapshot.builder", builder=name)
        self.counters = {"builds": 0, "pushes": 0, "push_failures": 0, "events": 0, "resyncs": 0}
        self.revision = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(), name=f"{self.name}-watch"),
            asyncio.create_task(self._flush_loop(), name=f"{self.name}-flush"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    # ---- following the registry ----------------------------------------------------------------------------

    def _decode(self, kv: KeyValue) -> tuple[Any, Any] | None:
        try:
            return self.keys.parse_instance(kv.key), codec.decode_instance(kv.value)
        except MeshError as exc:
            self._log.error("skipping undecodable registration", key=kv.key, error=str(exc))
            return None

    async def _follow(self) -> None:
        watch = ResumableWatch(self.store, self.keys.instances, None, name=self.name)
        while True:
            try:
                async for change in watch:
                    if isinstance(change, Changes):
                        changed: set[str] = set()
                        for ev in change.events:
                            self.counters["events"] += 1
                            try:
                                ref = self.keys.parse_instance(ev.key)
                            except MeshError:
                                continue
                            if ev.kind == "delete":
                                changed |= self.view.delete(ref)
                            else:
                                decoded = self._decode(KeyValue(ev.key, ev.value, 0, ev.mod_revision, ev.lease))
                                if decoded:
                                    changed |= self.view.put(*decoded)
                        self.revision = change.revision
                    else:
                        self.counters["resyncs"] += 1
                        items = [d for d in (self._decode(kv) for kv in change.items) if d]
                        changed = self.view.replace_all(items)
                        self.revision = change.revision
                        if not self._ready.is_set():
                            self._ready.set()
                            self._log.info("builder loaded", instances=len(self.view), revision=change.revision)
                    self._mark(changed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop logs and never dies
                self._log.exception("builder watch loop failed; restarting", error=str(exc))
                await asyncio.sleep(0.5)

    def _mark(self, vips: Iterable[str]) -> None:
        wanted = [v for v in vips if v in self._interest]
        if wanted:
            self._dirty.update(wanted)
            self._wake.set()

    # ---- building and pushing ------------------------------------------------------------------------------

    def _build(self, vip: str) -> VipResources:
        built = build_vip(vip, self.view.instances(vip))
        self.counters["builds"] += 1
        if built.skipped:
            self._log.warning("instances left out of the endpoints", vip=vip, skipped=list(built.skipped))
        return built

    def current(self, vip: str) -> VipResources:
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
                await self._flush(dirty)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.exception("flush failed", error=str(exc), vips=len(dirty))

    async def _flush(self, dirty: set[str]) -> None:
        per_host: dict[str, list[VipResources]] = {}
        for vip in dirty:
            hosts = self._interest.get(vip)
            if not hosts:
                self._built.pop(vip, None)
                continue
            old = self._built.get(vip)
            new = self._build(vip)
            self._built[vip] = new
            if old is not None and (old.cluster, old.load_assignment) == (new.cluster, new.load_assignment):
                continue
            for host in hosts:
                per_host.setdefault(host, []).append(new)
        await asyncio.gather(*(self._push(host, batch) for host, batch in per_host.items()))

    async def _push(self, host: str, batch: list[VipResources]) -> None:
        try:
            unwanted = await asyncio.wait_for(self.pusher.push(host, batch), self.settings.push_timeout_s)
            self.counters["pushes"] += 1
        except (MeshError, TimeoutError) as exc:
            # The host resyncs from us when it comes back (it sees a changed incarnation or re-subscribes).
            self.counters["push_failures"] += 1
            self._log.warning("push failed", host=host, vips=len(batch), error=str(exc))
            return
        if unwanted:
            self._drop(host, unwanted)

    # ---- interest (called by xDS hosts) --------------------------------------------------------------------

    def _check(self, host: str, incarnation: str) -> None:
        if not self._ready.is_set():
            raise NotReady(f"{self.name} is still loading registrations from etcd")
        if self._hosts.get(host) != incarnation:
            if host in self._hosts:
                self._log.info("xDS host restarted; dropping its old interest", host=host)
            for vip in [v for v, hosts in self._interest.items() if host in hosts]:
                self._drop(host, [vip])
            self._hosts[host] = incarnation

    def _drop(self, host: str, vips: Iterable[str]) -> None:
        for vip in vips:
            hosts = self._interest.get(vip)
            if hosts is None:
                continue
            hosts.discard(host)
            if not hosts:
                del self._interest[vip]
                self._built.pop(vip, None)

    def subscribe(self, host: str, incarnation: str, vips: list[str]) -> list[VipResources]:
        """Register interest and return the current resources of each VIP (unknown VIPs: no endpoints)."""
        self._check(host, incarnation)
        out = []
        for vip in vips:
            if self.builders.owner(vip) != self.name:
                raise Unavailable(f"{self.name} does not own VIP {vip!r}: builder maps disagree")
            self._interest.setdefault(vip, set()).add(host)
            out.append(self.current(vip))
        return out

    def unsubscribe(self, host: str, incarnation: str, vips: list[str]) -> None:
        if self._hosts.get(host) == incarnation:
            self._drop(host, vips)

    def resync(self, host: str, incarnation: str, versions: dict[str, tuple[str, str]]) -> list[VipResources]:
        """A host tells us everything it holds from us (vip -> (cluster, CLA) versions); we return what differs.

        Used after this builder restarted (its interest was lost) and periodically as a safety net.
        """
        self._hosts.pop(host, None)  # forget whatever we had for the host: this is its full interest
        self._check(host, incarnation)
        out = []
        for vip, (cluster_v, cla_v) in versions.items():
            if self.builders.owner(vip) != self.name:
                continue
            self._interest.setdefault(vip, set()).add(host)
            cur = self.current(vip)
            if (cur.cluster.version, cur.load_assignment.version) != (cluster_v, cla_v):
                out.append(cur)
        return out

    def versions(self, vips: list[str]) -> dict[str, tuple[str, str]]:
        """The (cluster, CLA) versions the registry's current state gives these VIPs (for convergence checks)."""
        out = {}
        for vip in vips:
            if self.builders.owner(vip) == self.name:
                built = build_vip(vip, self.view.instances(vip))
                out[vip] = (built.cluster.version, built.load_assignment.version)
        return out

    def statistics(self) -> dict[str, Any]:
        return {
            "builder": self.name,
            "ready": self.ready,
            "incarnation": self.incarnation,
            "revision": self.revision,
            "instances": len(self.view),
            "vips_with_interest": len(self._interest),
            "hosts": sorted(self._hosts),
            **self.counters,
        }
