"""Intentions in etcd: the validated, fenced write side (IntentionStore) and the read side (IntentionFeed, -Table).

The snapshot builders compile each destination's RBAC config from the read side.

One key per destination holds its rules (source -> allow|deny), and one key the mesh default. A write validates
everything first (nothing is written on a bad input), then reads the destination's document and writes the new one
fenced on its mod revision, starting over when another write got there first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from meshactors import log
from meshactors.errors import Conflict, InvalidArgument, MeshError, NotFound
from meshactors.intentions.model import (
    DEFAULT_ACTION,
    MAX_SOURCES,
    Action,
    Intention,
    Rules,
    decode_default,
    decode_rules,
    encode_default,
    encode_rules,
    parse_action,
    validate_destination,
    validate_source,
)
from meshactors.store.base import KeyValue, Store, Txn, WatchEvent
from meshactors.store.feed import DecodedFeed, _SkipLog
from meshactors.store.keys import MESH_WIDE, KeySchema

_log = log.get("store.intentions")
_skip_log = _SkipLog(what="intention")
WRITE_ATTEMPTS = 3

Wants = Callable[[str], bool]  # destination ("*": the mesh default) -> whether this reader wants it


@dataclass(frozen=True, slots=True)
class IntentionListing:
    intentions: tuple[Intention, ...]  # by destination, `*` first, then by source
    default: Action
    default_stored: bool  # False: no default was ever set (DEFAULT_ACTION applies)
    revision: int


class IntentionStore:
    """Set, delete and list intentions, and set the mesh default."""

    def __init__(self, store: Store, keys: KeySchema) -> None:
        self.store = store
        self.keys = keys

    async def _rules(self, destination: str) -> tuple[Rules, int]:
        kv = await self.store.get(self.keys.intention(destination))
        if kv is None:
            return Rules(destination), 0
        return decode_rules(kv.value), kv.mod_revision

    async def set(self, source: str, destination: str, action: str) -> tuple[int, Action | None]:
        """Store `source -> destination: action`; the revision and the action it replaced (None: there was none).
        An intention already so is not written (the revision is then the one read)."""
        validate_source(source)
        validate_destination(destination)
        act = parse_action(action)
        for attempt in range(WRITE_ATTEMPTS):
            rules, mod = await self._rules(destination)
            previous = rules.sources.get(source)
            if previous is act:
                return mod, previous
            if previous is None and len(rules.sources) >= MAX_SOURCES:
                raise InvalidArgument("source", f"{destination} already has {MAX_SOURCES} intentions, the most one "
                                      "destination may hold")  # fmt: skip
            new = rules.with_rule(source, act)
            key = self.keys.intention(destination)
            try:
                revision = await self.store.commit(Txn(puts={key: encode_rules(new)}, expect={key: mod}))
            except Conflict:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                continue
            _log.info("intention set", source=source, destination=destination, action=act.value,
                      previous=previous.value if previous else None, revision=revision)  # fmt: skip
            return revision, previous
        raise AssertionError("unreachable")

    async def delete(self, source: str, destination: str) -> int:
        """Remove the intention `source -> destination`; NotFound when there is none."""
        validate_source(source)
        validate_destination(destination)
        for attempt in range(WRITE_ATTEMPTS):
            rules, mod = await self._rules(destination)
            if source not in rules.sources:
                raise NotFound(f"no intention from {source!r} to {destination!r}")
            new = rules.without(source)
            key = self.keys.intention(destination)
            txn = (
                Txn(puts={key: encode_rules(new)}, expect={key: mod})
                if new.sources
                else Txn(deletes=(key,), expect={key: mod})
            )
            try:
                revision = await self.store.commit(txn)
            except Conflict:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                continue
            _log.info("intention deleted", source=source, destination=destination, revision=revision)
            return revision
        raise AssertionError("unreachable")

    async def set_default(self, action: str) -> int:
        """Set the mesh default (what a caller without an intention of its own, or a `*` one, gets)."""
        act = parse_action(action, "default")
        key = self.keys.intention(MESH_WIDE)
        revision = await self.store.commit(Txn(puts={key: encode_default(act)}))
        _log.info("mesh default intention set", action=act.value, revision=revision)
        return revision

    async def list(self) -> IntentionListing:
        kvs, revision = await self.store.list_prefix(self.keys.intentions)
        decoder = _Decoder(self.keys, "list", None)
        table = IntentionTable()
        table.apply(IntentionLoaded(decoder.items(kvs), revision))
        found = [i for dst in sorted(table.rules) for i in table.rules[dst].intentions()]
        return IntentionListing(tuple(found), table.default, table.default_stored, revision)


# ---- the read side ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntentionPut:
    """A destination's rules as stored now (`rules`), or for `*` the mesh default (`default`)."""

    destination: str
    rules: Rules | None
    default: Action | None
    revision: int


@dataclass(frozen=True, slots=True)
class IntentionRemoved:
    destination: str
    revision: int


IntentionEvent = IntentionPut | IntentionRemoved


@dataclass(frozen=True, slots=True)
class IntentionLoaded:
    items: tuple[IntentionPut, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class IntentionBatch:
    events: tuple[IntentionEvent, ...]
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

    def _destination(self, key: str) -> str | None:
        try:
            destination = self.keys.parse_intention(key)
        except MeshError as exc:
            self._skip(key, exc)
            return None
        return destination if self.wants is None or self.wants(destination) else None

    def put(self, key: str, value: bytes, revision: int) -> IntentionPut | None:
        destination = self._destination(key)
        if destination is None:
            return None
        try:
            if destination == MESH_WIDE:
                return IntentionPut(destination, None, decode_default(value), revision)
            rules = decode_rules(value)
        except MeshError as exc:
            self._skip(key, exc)
            return None
        if rules.destination != destination:
            self._skip(key, InvalidArgument("destination", f"the document names {rules.destination!r}"))
            return None
        return IntentionPut(destination, rules, None, revision)

    def items(self, kvs: Iterable[KeyValue]) -> tuple[IntentionPut, ...]:
        out = (self.put(kv.key, kv.value, kv.mod_revision) for kv in kvs)
        return tuple(p for p in out if p is not None)

    def event(self, ev: WatchEvent) -> IntentionEvent | None:
        if ev.kind == "put":
            return self.put(ev.key, ev.value, ev.mod_revision)
        destination = self._destination(ev.key)
        return None if destination is None else IntentionRemoved(destination, ev.mod_revision)


class IntentionFeed(DecodedFeed[IntentionLoaded, IntentionBatch]):
    """Async-iterable of IntentionLoaded | IntentionBatch over `keys.intentions` (the registry feed's resume rules).
    `wants(destination)` keeps only the destinations it accepts (`*`, the mesh default, is always kept)."""

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
        keep = None if wants is None else (lambda d: d == MESH_WIDE or wants(d))
        super().__init__(
            store, keys.intentions, _Decoder(keys, name, keep), start_revision, name=name, loaded=IntentionLoaded,
            batch=IntentionBatch, retry_initial_s=retry_initial_s, retry_max_s=retry_max_s,
        )  # fmt: skip


class IntentionTable:
    """The current rules by destination and the mesh default, kept from an IntentionFeed. `apply` returns the
    destinations whose intentions changed, `{"*"}` meaning all of them (the default changed, or a listing)."""

    def __init__(self) -> None:
        self.rules: dict[str, Rules] = {}
        self.default = DEFAULT_ACTION
        self.default_stored = False
        self.revision = 0

    def apply(self, change: IntentionLoaded | IntentionBatch) -> set[str]:
        if isinstance(change, IntentionLoaded):
            self.rules, self.default, self.default_stored = {}, DEFAULT_ACTION, False
            events: tuple[IntentionEvent, ...] = change.items
        else:
            events = change.events
        touched: set[str] = set()
        for ev in events:
            if isinstance(ev, IntentionPut):
                if ev.default is not None:
                    self.default, self.default_stored = ev.default, True
                elif ev.rules is not None:
                    self.rules[ev.destination] = ev.rules
            elif ev.destination == MESH_WIDE:
                self.default, self.default_stored = DEFAULT_ACTION, False
            else:
                self.rules.pop(ev.destination, None)
            touched.add(ev.destination)
        self.revision = max(self.revision, change.revision)
        return {MESH_WIDE} if isinstance(change, IntentionLoaded) or MESH_WIDE in touched else touched

    def of(self, destination: str) -> Rules | None:
        return self.rules.get(destination)
