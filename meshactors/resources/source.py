"""Source: what the xDS host serves from. One source owns some type URLs and knows what their names mean.

The host knows no VIP, no identity, no resource layout: for a subscribed (type URL, name) it asks the source
owning that type URL which snapshot key holds it (`key_of`), whether the name is acceptable (`validate`),
what can be answered before the key's snapshot is fetched (`provisional`), and how a name is read out of a
snapshot (`resolve`, for names a source derives, such as a gRPC listener named `vip:port`). Snapshots come
from `fetch` on first interest and are pushed by the source's own update stream afterwards (the runtime
wires that stream to `XdsHost.apply`).

A source may learn from what it serves: `observe` sees every snapshot the host applies from it (the VIP
source learns which names exist from its known-names snapshot and bounds what it accepts by that).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import Ref, VersionedResource


class Source(Protocol):
    """A provider of snapshots for a set of type URLs. Pure methods must be cheap: they run per request."""

    @property
    def name(self) -> str:
        """Unique among the host's sources; snapshot keys are scoped by it."""
        ...

    @property
    def type_urls(self) -> tuple[str, ...]:
        """The type URLs this source serves (each type URL belongs to exactly one source of a host)."""
        ...

    @property
    def companion_types(self) -> Mapping[str, str]:
        """Type URLs of this source whose resources reach a delta client as companions (see `companions`): a
        wildcard subscription of one covers only what the client's own subscriptions bring. Each maps to its
        placeholder: a name in the namespace the client watches that is never served, removed in a first answer
        that has nothing else (Envoy's VHDS ends its initial fetch only on an answer naming something in it)."""
        ...

    @property
    def pushed_types(self) -> Mapping[str, str]:
        """Type URLs of this source whose resources reach a delta client when a resource it holds pushes them (see
        `pushed_refs`): a wildcard subscription of one covers only those. Each maps to its placeholder, as
        `companion_types` ("": a first answer with nothing else is empty)."""
        ...

    def pushed_refs(self, resource: VersionedResource) -> tuple[Ref, ...]:
        """What `resource` (of any source) needs that a client never asks for itself, on this source's pushed types:
        sent to a delta client ahead of it, unasked (a VHDS virtual host's mirror cluster). Must be cheap."""
        ...

    def validate(self, type_url: str, name: str) -> str | None:
        """Why a subscribed name cannot be served (None: it can). Bounds what a client makes us hold."""
        ...

    def companions(self, type_url: str, name: str) -> tuple[Ref, ...]:
        """What a subscription of (type URL, name) brings along, sent before it on types the client opened
        (a VIP's Cluster brings its VHDS virtual host). Names of the same snapshot key only. Must be cheap."""
        ...

    def key_of(self, type_url: str, name: str) -> str:
        """The snapshot key that holds (type URL, name); only called for names `validate` accepted."""
        ...

    def provisional(self, key: str) -> Snapshot | None:
        """What may be served for `key` before its snapshot arrives (None: nothing, wait for the fetch)."""
        ...

    def resolve(self, snapshot: Snapshot, type_url: str, name: str, kind: str) -> VersionedResource | None:
        """(type URL, name) out of `snapshot` for a client of `kind` (most sources: `snapshot.get`)."""
        ...

    def derived_names(self, snapshot: Snapshot, type_url: str) -> list[str]:
        """Names of `type_url` this source has derived for `snapshot` beyond `snapshot.names` (wildcard)."""
        ...

    def forget(self, key: str) -> None:
        """`key` is no longer held (evicted, or its provisional answer dropped): drop anything derived for it."""
        ...

    def observe(self, snapshot: Snapshot) -> None:
        """`snapshot` of this source was just applied by the host (fetched or pushed). Must be cheap."""
        ...

    async def fetch(self, keys: list[str]) -> list[Snapshot]:
        """The current snapshots of `keys`, registering interest (changes are pushed from then on).

        Raises MeshError (or TimeoutError) when the keys cannot be had now; the host retries."""
        ...

    async def release(self, keys: list[str]) -> None:
        """No session of the host wants `keys` any more."""
        ...
