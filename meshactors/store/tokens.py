"""API token records in etcd: creating, revoking and listing them, and a table kept current by a watch.

Every API actor holds a TokenTable fed by a TokenFeed, so a request is checked against memory; a revocation reaches
every API within the watch's latency (milliseconds). Records hold the hash of a token's secret, never the secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from meshactors import log
from meshactors.auth.model import Identity, TokenRecord, parse, verify
from meshactors.errors import CodecError, InvalidArgument, MeshError, NotFound, NotReady
from meshactors.store import codec
from meshactors.store.base import KeyValue, Store, WatchEvent
from meshactors.store.feed import DecodedFeed, _SkipLog
from meshactors.store.keys import KeySchema

KIND_TOKEN = "token"
MAX_TOKENS = 100_000  # records a table keeps; beyond that new ones are skipped (and logged) rather than grown

_log = log.get("store.tokens")
_skip_log = _SkipLog(what="token")


def encode_token(record: TokenRecord) -> bytes:
    return codec.encode(KIND_TOKEN, record.to_dict())


def decode_token(data: bytes) -> TokenRecord:
    payload = codec.decode(data, KIND_TOKEN)
    try:
        return TokenRecord.from_dict(payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"stored token record is malformed: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class TokenPut:
    record: TokenRecord
    revision: int


@dataclass(frozen=True, slots=True)
class TokenRemoved:
    token_id: str
    revision: int


@dataclass(frozen=True, slots=True)
class TokensLoaded:
    items: tuple[TokenPut, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class TokenBatch:
    events: tuple[TokenPut | TokenRemoved, ...]
    revision: int


class _Decoder:
    def __init__(self, keys: KeySchema, name: str) -> None:
        self.keys = keys
        self.name = name
        self.skipped = 0

    def _skip(self, key: str, exc: MeshError) -> None:
        self.skipped += 1
        _skip_log.skipped(self.name, key, exc)

    def put(self, key: str, value: bytes, revision: int) -> TokenPut | None:
        try:
            token_id = self.keys.parse_token(key)
            record = decode_token(value)
        except MeshError as exc:
            self._skip(key, exc)
            return None
        if record.id != token_id:
            self._skip(key, InvalidArgument("id", "the record names another token than its key"))
            return None
        return TokenPut(record, revision)

    def items(self, kvs: Iterable[KeyValue]) -> tuple[TokenPut, ...]:
        out = (self.put(kv.key, kv.value, kv.mod_revision) for kv in kvs)
        return tuple(p for p in out if p is not None)

    def event(self, ev: WatchEvent) -> TokenPut | TokenRemoved | None:
        if ev.kind == "put":
            return self.put(ev.key, ev.value, ev.mod_revision)
        try:
            return TokenRemoved(self.keys.parse_token(ev.key), ev.mod_revision)
        except MeshError as exc:
            self._skip(ev.key, exc)
            return None


class TokenFeed(DecodedFeed[TokensLoaded, TokenBatch]):
    """Async-iterable of TokensLoaded | TokenBatch over `keys.tokens` (the registry feed's resume rules)."""

    def __init__(self, store: Store, keys: KeySchema, *, name: str) -> None:
        super().__init__(
            store, keys.tokens, _Decoder(keys, name), None, name=name, loaded=TokensLoaded, batch=TokenBatch
        )


class TokenTable:
    """The current token records, kept from a TokenFeed; authenticates a token against them.

    `on_revoked(token_id)` is called for every record that goes away (e.g. to end the streams it opened)."""

    def __init__(self, on_revoked: Callable[[str], None] | None = None) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.loaded = False
        self.revision = 0
        self._on_revoked = on_revoked

    def apply(self, change: TokensLoaded | TokenBatch) -> None:
        if isinstance(change, TokensLoaded):
            before = set(self.records)
            self.records = {p.record.id: p.record for p in change.items[:MAX_TOKENS]}
            gone = before - set(self.records)
            self.loaded = True
        else:
            gone = set()
            for ev in change.events:
                if isinstance(ev, TokenPut):
                    if ev.record.id in self.records or len(self.records) < MAX_TOKENS:
                        self.records[ev.record.id] = ev.record
                    else:
                        _log.error("token table full; a new token is not usable here", limit=MAX_TOKENS)
                elif self.records.pop(ev.token_id, None) is not None:
                    gone.add(ev.token_id)
        self.revision = max(self.revision, change.revision)
        if self._on_revoked is not None:
            for token_id in gone:
                self._on_revoked(token_id)

    def authenticate(self, token: str) -> Identity:
        """The identity of `token`; Unauthenticated when malformed, unknown or revoked; NotReady before loading."""
        token_id, secret = parse(token)
        if not self.loaded:
            raise NotReady("the token table is still loading; retry")
        return verify(self.records.get(token_id), secret)


class TokenStore:
    """Creates, revokes and lists token records in etcd."""

    def __init__(self, store: Store, keys: KeySchema) -> None:
        self.store = store
        self.keys = keys

    async def create(self, record: TokenRecord) -> int:
        return await self.store.create(self.keys.token(record.id), encode_token(record))

    async def get(self, token_id: str) -> TokenRecord | None:
        kv = await self.store.get(self.keys.token(token_id))
        return decode_token(kv.value) if kv is not None else None

    async def revoke(self, token_id: str) -> int:
        key = self.keys.token(token_id)
        try:
            self.keys.parse_token(key)
        except InvalidArgument:
            raise InvalidArgument("id", f"{token_id[:80]!r} is not a token id (16 hex digits)") from None
        try:
            return await self.store.delete(key)
        except NotFound:
            raise NotFound(f"no token {token_id!r} (already revoked?)") from None

    async def list(self) -> list[TokenRecord]:
        kvs, _ = await self.store.list_prefix(self.keys.tokens)
        decoder = _Decoder(self.keys, "token-list")
        return sorted((p.record for p in decoder.items(kvs)), key=lambda r: (r.created_ms, r.id))
