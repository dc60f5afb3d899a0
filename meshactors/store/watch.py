"""ResumableWatch: follows a prefix in the Store forever; resumes at last revision + 1, re-lists on compaction."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

from meshactors import log
from meshactors.errors import Compacted, MeshError, Unavailable
from meshactors.store.base import KeyValue, Store, WatchEvent


@dataclass(frozen=True, slots=True)
class Resync:
    """The full current state under the prefix at `revision`: replace whatever you had."""

    items: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class Changes:
    """Events in revision order, all newer than anything delivered before; `revision` is the batch's header."""

    events: tuple[WatchEvent, ...]
    revision: int


class ResumableWatch:
    """Yields Resync / Changes for a prefix without ever missing or repeating a change.

    - `start_revision=None`: begins with a Resync (list), then watches from its revision + 1.
    - `start_revision=N`: watches from N; if N was compacted away, emits a Resync and continues.
    - A broken stream is re-created at `last_revision + 1` after a short backoff (events are never repeated).
    - Revisions must only grow: an event at or below the last delivered revision is a gap in our knowledge,
      so the watch re-lists (Resync) instead of passing it on.
    """

    def __init__(
        self,
        store: Store,
        prefix: str,
        start_revision: int | None = None,
        *,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 1.0,
        name: str = "watch",
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.last_revision = (start_revision - 1) if start_revision else 0
        self._needs_list = start_revision is None
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._log = log.get("store.watch", prefix=prefix, watch=name)
        self.resyncs = 0
        self.reconnects = 0
        self.connected = asyncio.Event()

    async def _list(self) -> Resync:
        items, revision = await self.store.list_prefix(self.prefix)
        self.resyncs += 1
        self.last_revision = revision
        self._needs_list = False
        return Resync(tuple(items), revision)

    async def __aiter__(self) -> AsyncIterator[Resync | Changes]:
        backoff = self._retry_initial_s
        while True:
            try:
                if self._needs_list:
                    yield await self._list()
                async for batch in self.store.watch_prefix(self.prefix, self.last_revision + 1):
                    self.connected.set()
                    backoff = self._retry_initial_s
                    if batch.events:
                        first = batch.events[0].mod_revision
                        revs = [e.mod_revision for e in batch.events]
                        ordered = all(a <= b for a, b in itertools.pairwise(revs))
                        if first <= self.last_revision or not ordered:
                            self._log.error(
                                "watch revision went backwards; re-listing",
                                event_revision=first,
                                last_revision=self.last_revision,
                            )
                            self._needs_list = True
                            break
                        self.last_revision = batch.events[-1].mod_revision
                        yield Changes(batch.events, batch.revision)
                    elif batch.revision > self.last_revision:
                        # Progress notification: nothing under the prefix changed up to this revision.
                        self.last_revision = batch.revision
            except Compacted as exc:
                self._log.warning(
                    "watch start revision compacted; re-listing",
                    requested=exc.requested,
                    compact_revision=exc.compact_revision,
                )
                self._needs_list = True
                continue
            except (Unavailable, MeshError) as exc:
                self.connected.clear()
                self.reconnects += 1
                self._log.warning("watch broken; resuming", error=str(exc), resume_at=self.last_revision + 1)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._retry_max_s)
