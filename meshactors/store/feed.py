"""RegistryFeed: etcd's instance keys as decoded registration events (Loaded / Batch), resumed and re-listed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from meshactors import log
from meshactors.errors import InvalidArgument, MeshError
from meshactors.model import Instance, InstanceRef
from meshactors.store import codec
from meshactors.store.base import KeyValue, Store, WatchEvent
from meshactors.store.keys import KeySchema
from meshactors.store.watch import Changes, ResumableWatch

Owns = Callable[[str], bool]  # VIP name (the key's routing name) -> whether this reader wants it

_CLIP = 160  # characters kept of a key or an error message in a log line (both may carry client-written text)


@dataclass(frozen=True, slots=True)
class Registered:
    """A put: the instance as stored now, at `revision` (its mod revision), attached to `lease`."""

    ref: InstanceRef  # parsed from the key
    instance: Instance
    revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class Removed:
    """A delete (deregistered, or its lease expired). `previous` is the removed record when etcd still had it."""

    ref: InstanceRef
    revision: int
    previous: Instance | None


Event = Registered | Removed


@dataclass(frozen=True, slots=True)
class Loaded:
    """The full state at `revision` (first listing, or after a compaction / a gap): replace whatever you had."""

    items: tuple[Registered, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes in revision order, all newer than anything delivered before; `revision` is etcd's header revision.
    `events` may be empty (everything in the batch was filtered out or skipped): the feed still advanced."""

    events: tuple[Event, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class FeedStatistics:
    events: int  # registration events delivered in batches (after `owns`)
    loaded: int  # full listings delivered
    skipped_undecodable: int  # keys outside the schema and values that do not decode, in listings and events
    resyncs: int  # listings caused by a compaction or a revision going backwards (not the first one asked for)
    reconnects: int  # broken watch streams resumed
    revision: int  # everything up to this revision has been delivered


class _SkipLog:
    """Logs skipped records at error, at most `limit` lines per `window_s`; the rest are only counted."""

    def __init__(
        self,
        limit: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        what: str = "registration",
    ) -> None:
        self.what = what
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._window_start = clock()
        self._logged = 0
        self._suppressed = 0
        self._log = log.get("store.feed")

    def skipped(self, feed: str, key: str, error: MeshError) -> None:
        now = self.clock()
        if now - self._window_start >= self.window_s:
            if self._suppressed:
                self._log.error(
                    f"more undecodable {self.what}s skipped without logging",
                    suppressed=self._suppressed,
                    window_s=self.window_s,
                )
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged >= self.limit:
            self._suppressed += 1
            return
        self._logged += 1
        self._log.error(f"skipping undecodable {self.what}", feed=feed, key=_clip(key), error=_clip(str(error)))


_skip_log = _SkipLog()  # one per process: many feeds (e.g. one per Watch stream) share the bound


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else f"{text[:_CLIP]}...({len(text)} chars)"


class _Decoder:
    """Turns raw KeyValues / WatchEvents into registrations, skipping (and counting) what does not decode."""

    def __init__(self, keys: KeySchema, name: str, owns: Owns | None) -> None:
        self.keys = keys
        self.name = name
        self.owns = owns
        self.skipped = 0

    def _ref(self, key: str) -> InstanceRef | None:
        try:
            return self.keys.parse_instance(key)
        except MeshError as exc:
            self._skip(key, exc)
            return None

    def _skip(self, key: str, exc: MeshError) -> None:
        self.skipped += 1
        _skip_log.skipped(self.name, key, exc)

    def _wanted(self, ref: InstanceRef) -> bool:
        return self.owns is None or self.owns(ref.vip)

    def registered(self, key: str, value: bytes, revision: int, lease: int) -> Registered | None:
        ref = self._ref(key)
        if ref is None or not self._wanted(ref):
            return None
        try:
            inst = codec.decode_instance(value)
        except MeshError as exc:
            self._skip(key, exc)
            return None
        return Registered(ref, inst, revision, lease)

    def items(self, kvs: Iterable[KeyValue]) -> tuple[Registered, ...]:
        out = (self.registered(kv.key, kv.value, kv.mod_revision, kv.lease) for kv in kvs)
        return tuple(r for r in out if r is not None)

    def event(self, ev: WatchEvent) -> Event | None:
        if ev.kind == "put":
            return self.registered(ev.key, ev.value, ev.mod_revision, ev.lease)
        ref = self._ref(ev.key)
        if ref is None or not self._wanted(ref):
            return None
        previous = None
        if ev.prev_value:
            try:
                previous = codec.decode_instance(ev.prev_value)
            except MeshError:
                previous = None  # the delete itself is still news; a corrupt old record was counted when it was put
        return Removed(ref, ev.mod_revision, previous)


class Decoding(Protocol):
    """What a decoded feed needs of its decoder: events and listings decoded, undecodable ones counted."""

    skipped: int

    def event(self, ev: WatchEvent) -> Any | None: ...

    def items(self, kvs: Iterable[KeyValue]) -> tuple[Any, ...]: ...


LoadedT = TypeVar("LoadedT")
BatchT = TypeVar("BatchT")


class DecodedFeed(Generic[LoadedT, BatchT]):
    """Async-iterable of decoded listings and batches over one prefix, never missing or repeating a change.

    - `start_revision=None`: begins with a listing, then follows from its revision + 1.
    - `start_revision=N` (N >= 1): follows from N; if N was compacted away, a listing comes first.
    - A broken stream resumes at the last delivered revision + 1; a compaction, or an event at or below the last
      delivered revision (a gap in our knowledge), re-lists: a listing that replaces everything before it.
    - What does not decode is skipped and counted by the decoder, not raised.

    Iterating again after the consumer stopped (e.g. its loop failed and restarted) continues where it left off.
    The registry feed and the policy feed are this over their prefixes, with their decoders and record types.
    """

    def __init__(
        self,
        store: Store,
        prefix: str,
        decoder: Decoding,
        start_revision: int | None,
        *,
        name: str,
        loaded: Callable[[tuple[Any, ...], int], LoadedT],
        batch: Callable[[tuple[Any, ...], int], BatchT],
        retry_initial_s: float = 0.1,
        retry_max_s: float = 1.0,
    ) -> None:
        if start_revision is not None and start_revision < 1:
            raise InvalidArgument("start_revision", f"must be None (list first) or >= 1, not {start_revision}")
        self.name = name
        self._watch = ResumableWatch(
            store, prefix, start_revision, retry_initial_s=retry_initial_s, retry_max_s=retry_max_s, name=name
        )
        self._decoder = decoder
        self._loaded_type, self._batch_type = loaded, batch
        self._listing_expected = start_revision is None
        self._events = 0
        self._loaded = 0
        self._resyncs = 0
        self._revision = (start_revision - 1) if start_revision is not None else 0

    @property
    def connected(self) -> bool:
        """Whether a watch stream is open now (False before the first one and while resuming)."""
        return self._watch.connected.is_set()

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(
            events=self._events,
            loaded=self._loaded,
            skipped_undecodable=self._decoder.skipped,
            resyncs=self._resyncs,
            reconnects=self._watch.reconnects,
            revision=self._revision,
        )

    async def __aiter__(self) -> AsyncIterator[LoadedT | BatchT]:
        async with aclosing(self._watch.__aiter__()) as changes:
            async for change in changes:
                if isinstance(change, Changes):
                    events = tuple(e for e in map(self._decoder.event, change.events) if e is not None)
                    self._events += len(events)
                    self._revision = max(self._revision, change.revision)
                    yield self._batch_type(events, change.revision)
                else:
                    if self._loaded or not self._listing_expected:
                        self._resyncs += 1
                    self._loaded += 1
                    self._revision = change.revision
                    yield self._loaded_type(self._decoder.items(change.items), change.revision)


class RegistryFeed(DecodedFeed[Loaded, Batch]):
    """Async-iterable of Loaded | Batch over `keys.instances` (see DecodedFeed for the resume rules).

    - `owns(vip)` keeps only registrations under the VIP names it accepts (the key's routing name).
    - Keys outside the schema and values that do not decode are skipped, counted and logged (bounded), not raised.
    """

    def __init__(
        self,
        store: Store,
        keys: KeySchema,
        start_revision: int | None = None,
        *,
        name: str,
        owns: Owns | None = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 1.0,
    ) -> None:
        super().__init__(
            store, keys.instances, _Decoder(keys, name, owns), start_revision, name=name, loaded=Loaded, batch=Batch,
            retry_initial_s=retry_initial_s, retry_max_s=retry_max_s,
        )  # fmt: skip


async def load_instances(
    store: Store, keys: KeySchema, *, owns: Owns | None = None, name: str = "load"
) -> tuple[list[Registered], int]:
    """Every registration in etcd now (decoded; undecodable ones skipped and logged) and the listing's revision."""
    items, revision = await store.list_prefix(keys.instances)
    return list(_Decoder(keys, name, owns).items(items)), revision
