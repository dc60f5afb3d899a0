"""PolicyFeed: etcd's policy keys as decoded policy events (PolicyLoaded / PolicyBatch), resumed and re-listed.

The same rules as the registry feed (meshactors.store.feed): a first listing, then changes from its revision + 1,
a broken stream resumed at the last delivered revision + 1, a re-list on compaction or a backwards revision,
undecodable keys and values skipped, counted and logged (bounded). `PolicyTable` keeps the current documents
from the feed and answers a VIP's effective policy (its document merged over the `*` one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from meshactors.errors import InvalidArgument, MeshError
from meshactors.policy import codec as policy_codec
from meshactors.policy.load import InvalidPolicy, merge
from meshactors.policy.model import MESH_WIDE, Policy
from meshactors.store.base import KeyValue, Store, WatchEvent
from meshactors.store.feed import DecodedFeed, _SkipLog
from meshactors.store.keys import KeySchema

Wants = Callable[[str], bool]  # VIP name ("*" for the mesh-wide document) -> whether this reader wants it

_skip_log = _SkipLog(what="policy")  # one per process, shared by every policy feed


@dataclass(frozen=True, slots=True)
class PolicyPut:
    """A put: `vip`'s document (`*`: the mesh-wide one) as stored now, at `revision` (its mod revision)."""

    vip: str
    policy: Policy
    revision: int


@dataclass(frozen=True, slots=True)
class PolicyRemoved:
    """A delete. `previous` is the removed document when etcd still had it (and it decodes)."""

    vip: str
    revision: int
    previous: Policy | None


PolicyEvent = PolicyPut | PolicyRemoved


@dataclass(frozen=True, slots=True)
class PolicyLoaded:
    """Every document at `revision` (first listing, or after a compaction / a gap): replace whatever you had."""

    items: tuple[PolicyPut, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class PolicyBatch:
    """Changes in revision order, all newer than anything delivered before; `revision` is etcd's header revision.
    `events` may be empty (everything was filtered out or skipped): the feed still advanced."""

    events: tuple[PolicyEvent, ...]
    revision: int


class _Decoder:
    def __init__(self, keys: KeySchema, name: str, wants: Wants | None) -> None:
        self.keys = keys
        self.name = name
        self.wants = wants
        self.skipped = 0

    def _skip(self, key: str, exc: MeshError) -> None:
        self.skipped += 1
        _skip_log.skipped(self.name, key, exc)

    def _vip(self, key: str) -> str | None:
        try:
            vip = self.keys.parse_policy(key)
        except MeshError as exc:
            self._skip(key, exc)
            return None
        return vip if self.wants is None or self.wants(vip) else None

    def put(self, key: str, value: bytes, revision: int) -> PolicyPut | None:
        vip = self._vip(key)
        if vip is None:
            return None
        try:
            policy = policy_codec.decode(value)
        except MeshError as exc:
            self._skip(key, exc)
            return None
        if policy.vip != vip:
            self._skip(key, InvalidArgument("vip", f"the document names {policy.vip!r}, its key {vip!r}"))
            return None
        return PolicyPut(vip, policy, revision)

    def items(self, kvs: Iterable[KeyValue]) -> tuple[PolicyPut, ...]:
        out = (self.put(kv.key, kv.value, kv.mod_revision) for kv in kvs)
        return tuple(p for p in out if p is not None)

    def event(self, ev: WatchEvent) -> PolicyEvent | None:
        if ev.kind == "put":
            return self.put(ev.key, ev.value, ev.mod_revision)
        vip = self._vip(ev.key)
        if vip is None:
            return None
        previous = None
        if ev.prev_value:
            try:
                previous = policy_codec.decode(ev.prev_value)
            except MeshError:
                previous = None  # the delete is still news; a corrupt old record was counted when it was put
        return PolicyRemoved(vip, ev.mod_revision, previous)


class PolicyFeed(DecodedFeed[PolicyLoaded, PolicyBatch]):
    """Async-iterable of PolicyLoaded | PolicyBatch over `keys.policies` (the registry feed's resume rules: see
    meshactors.store.feed.DecodedFeed).

    - `wants(vip)` keeps only the documents of the VIPs it accepts (`*` is the mesh-wide document: a reader that
      computes effective policies wants it too).
    - Keys outside the schema, values that do not decode (or no longer validate) and documents whose VIP is not
      their key's are skipped, counted and logged (bounded), not raised.
    """

    def __init__(
        self,
        store: Store,
        keys: KeySchema,
        start_revision: int | None = None,
        *,
        name: str,
        wants: Wants | None = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 1.0,
    ) -> None:
        super().__init__(
            store, keys.policies, _Decoder(keys, name, wants), start_revision, name=name, loaded=PolicyLoaded,
            batch=PolicyBatch, retry_initial_s=retry_initial_s, retry_max_s=retry_max_s,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """One stored document with its etcd revisions (what Get and List answer, and what an apply fences on)."""

    vip: str
    policy: Policy
    mod_revision: int
    create_revision: int


async def load_policies(
    store: Store, keys: KeySchema, *, wants: Wants | None = None, name: str = "load"
) -> tuple[dict[str, StoredPolicy], int]:
    """Every policy document in etcd now, by VIP (undecodable ones skipped and logged), and the listing's revision."""
    kvs, revision = await store.list_prefix(keys.policies)
    decoder = _Decoder(keys, name, wants)
    out: dict[str, StoredPolicy] = {}
    for kv in kvs:
        put = decoder.put(kv.key, kv.value, kv.mod_revision)
        if put is not None:
            out[put.vip] = StoredPolicy(put.vip, put.policy, kv.mod_revision, kv.create_revision)
    return out, revision


class PolicyTable:
    """The current documents, kept from a PolicyFeed; answers effective policies and which VIPs a change touched.

    `apply` returns the VIPs whose effective policy may have changed, `{"*"}` meaning every VIP (the mesh-wide
    document changed, or a listing replaced everything).
    """

    def __init__(self) -> None:
        self.documents: dict[str, Policy] = {}
        self.revisions: dict[str, int] = {}  # each document's etcd mod revision
        self.revision = 0

    def apply(self, change: PolicyLoaded | PolicyBatch) -> set[str]:
        if isinstance(change, PolicyLoaded):
            self.documents = {item.vip: item.policy for item in change.items}
            self.revisions = {item.vip: item.revision for item in change.items}
            self.revision = change.revision
            return {MESH_WIDE}
        touched: set[str] = set()
        for ev in change.events:
            if isinstance(ev, PolicyPut):
                self.documents[ev.vip] = ev.policy
                self.revisions[ev.vip] = ev.revision
            else:
                self.documents.pop(ev.vip, None)
                self.revisions.pop(ev.vip, None)
            touched.add(ev.vip)
        self.revision = max(self.revision, change.revision)
        return {MESH_WIDE} if MESH_WIDE in touched else touched

    def effective(self, vip: str) -> Policy | None:
        """`vip`'s document merged over the `*` one; the `*` document alone for a VIP without one; None if neither.

        A stored combination that no longer merges (written around the API) falls back to the VIP's own document.
        """
        return effective(self.documents, vip)

    def revisions_of(self, vip: str) -> tuple[tuple[str, int], ...]:
        """The (document, mod revision) pairs `effective(vip)` is made of: the VIP's own document, then `*`."""
        return tuple((doc, self.revisions[doc]) for doc in (vip, MESH_WIDE) if doc in self.documents)


def effective(documents: Mapping[str, Policy], vip: str) -> Policy | None:
    """The effective policy of `vip` given the documents by VIP (see PolicyTable.effective)."""
    mesh = documents.get(MESH_WIDE)
    own = documents.get(vip)
    if own is None:
        return None if mesh is None else Policy(vip, mesh.destination, mesh.routing)
    try:
        return merge(mesh, own)
    except InvalidPolicy:
        return own
