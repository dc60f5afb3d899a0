"""EtcdStore: the only module that talks to etcd (through aetcd's gRPC API); maps its errors into meshactors'.

With a user in the spec (meshactors.store.etcdspec) every call carries etcd's auth token as `token` metadata: an
interceptor on the channel authenticates on first use, and when etcd says the token is no longer valid (it expired,
etcd restarted, another member answered) authenticates again and retries the call once. TLS with `https://`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from aetcd import rpc

from meshactors import log
from meshactors.errors import (
    Compacted,
    ConfigError,
    Conflict,
    MeshError,
    NotFound,
    StorePermissionDenied,
    StoreUnauthenticated,
    Unavailable,
)
from meshactors.store.base import KeyValue, Txn, WatchBatch, WatchEvent
from meshactors.store.etcdspec import EtcdSpec

_log = log.get("store.etcd")

_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 5_000),
    ("grpc.keepalive_timeout_ms", 3_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.ping_timeout_ms", 3_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def parse_endpoints(spec: str) -> list[tuple[str, int]]:
    """The (host, port) endpoints of an `--etcd` value (see meshactors.store.etcdspec for the whole format)."""
    return list(EtcdSpec.parse(spec).endpoints)


def _target(endpoints: Sequence[tuple[str, int]]) -> str:
    if len(endpoints) == 1:
        host, port = endpoints[0]
        return f"{host}:{port}"
    # gRPC's ipv4 resolver takes an address list: the channel fails over between members by itself.
    return "ipv4:" + ",".join(f"{h}:{p}" for h, p in endpoints)


_AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"
# What etcd answers when a call's token is missing, unknown or stale: authenticate again and retry once.
_TOKEN_ERRORS = ("invalid auth token", "auth token is expired", "revision of auth store is old", "user name is empty")


def _details(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code(), exc.details() or ""
    return None, str(exc)


def _token_error(exc: grpc.RpcError) -> bool:
    code, details = _details(exc)
    return code == grpc.StatusCode.UNAUTHENTICATED or any(t in details for t in _TOKEN_ERRORS)


def _map_error(exc: grpc.RpcError, what: str, user: str = "") -> Exception:
    if isinstance(exc, _AuthFailed):
        return exc.error
    code, details = _details(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Unavailable(f"etcd is unreachable ({what}): {details}")
    if code == grpc.StatusCode.NOT_FOUND or (details and "requested lease not found" in details):
        return NotFound(f"etcd: {details} ({what})")
    if code == grpc.StatusCode.PERMISSION_DENIED or "permission denied" in details:
        who = f"etcd user {user!r}" if user else "a client without etcd credentials"
        return StorePermissionDenied(f"etcd refused {what} to {who}: permission denied")
    if _token_error(exc):
        if not user:
            return StoreUnauthenticated(
                f"etcd requires authentication ({what}): give user:password in the etcd URL, "
                "e.g. http://user:password@host:2379"
            )
        return StoreUnauthenticated(f"etcd did not accept the auth token of user {user!r} ({what}): {details}")
    if "authentication failed" in details:
        return StoreUnauthenticated(f"etcd refused user {user!r} ({what}): invalid user name or password")
    return Unavailable(f"etcd error during {what}: {code.name if code else '?'} {details}")


class _Auth:
    """The etcd auth token of one EtcdStore: fetched once on first use, fetched again once etcd stops taking it."""

    def __init__(self, user: str, password: str, timeout_s: float, where: str) -> None:
        self.user = user
        self.where = where  # the endpoints, for messages
        self._password = password
        self.timeout_s = timeout_s
        self._token = ""
        self._lock: asyncio.Lock | None = None
        self._stub: rpc.AuthStub | None = None
        self.disabled = False  # etcd said its auth is not enabled: calls go without a token
        self.authentications = 0

    def bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = rpc.AuthStub(channel)
        self._lock = asyncio.Lock()
        self._token = ""

    def __repr__(self) -> str:
        return f"_Auth(user={self.user!r})"

    async def token(self) -> str:
        if self._token or self.disabled:
            return self._token
        assert self._lock is not None
        async with self._lock:
            if not self._token and not self.disabled:
                self._token = await self._authenticate()
        return self._token

    def invalidate(self, token: str | None = None) -> None:
        """Forget `token` if still current (None: whatever is current): the next call authenticates again."""
        if token is None or token == self._token:
            self._token = ""
        self.disabled = False

    async def _authenticate(self) -> str:
        assert self._stub is not None
        try:
            resp = await self._stub.Authenticate(
                rpc.AuthenticateRequest(name=self.user, password=self._password),
                timeout=max(self.timeout_s, 5.0),  # etcd checks the password with bcrypt: slow by design
                wait_for_ready=True,
            )
        except grpc.RpcError as exc:
            _, details = _details(exc)
            if "authentication is not enabled" in details:
                _log.warning("etcd has authentication disabled: its credentials are not used", user=self.user)
                self.disabled = True
                return ""
            raise _map_error(exc, f"authentication at {self.where}", self.user) from exc
        self.authentications += 1
        return str(resp.token)


def _with_token(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    if not token:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata["token"] = token
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _method(details: grpc.aio.ClientCallDetails) -> str:
    m = details.method
    return m.decode() if isinstance(m, bytes) else str(m)


class _UnaryAuth(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the token to every unary call; on a token error authenticates again and retries the call once."""

    def __init__(self, auth: _Auth) -> None:
        self.auth = auth

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if _method(details) == _AUTHENTICATE:
            return await continuation(details, request)
        token = await _token_or_error(self.auth, _method(details))
        call = await continuation(_with_token(details, token), request)
        try:
            await call
        except grpc.RpcError as exc:
            if not _token_error(exc):
                return call  # the caller gets this call's own error
            self.auth.invalidate(token)
            token = await _token_or_error(self.auth, _method(details))
            return await continuation(_with_token(details, token), request)
        return call


class _StreamAuth(grpc.aio.StreamStreamClientInterceptor):
    """Adds the token to the Watch and LeaseKeepAlive streams (a stream that fails on it invalidates the token
    through EtcdStore, and is opened again by its owner)."""

    def __init__(self, auth: _Auth) -> None:
        self.auth = auth

    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        token = await _token_or_error(self.auth, _method(details))
        return await continuation(_with_token(details, token), request_iterator)


async def _token_or_error(auth: _Auth, method: str) -> str:
    """The token, or the call fails with the grpc error its authentication got (mapped again by the caller)."""
    try:
        return await auth.token()
    except MeshError as exc:
        raise _AuthFailed(exc, method) from exc


class _AuthFailed(grpc.RpcError):
    """Authentication failed inside an interceptor: carries the mapped error out through the gRPC call."""

    def __init__(self, error: MeshError, method: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.method = method


class _KeepAliveStream:
    """One long-lived LeaseKeepAlive stream shared by every heartbeat of this process (no stream per call)."""

    def __init__(self, stub: rpc.LeaseStub, on_error: Any = None) -> None:
        self._stub = stub
        self._on_error = on_error  # called with a stream's grpc error (EtcdStore: forget a refused token)
        self._queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=10_000)
        self._waiters: dict[int, collections.deque[asyncio.Future[int]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def keep_alive(self, lease_id: int, timeout_s: float) -> int:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue(maxsize=10_000)
            self._task = asyncio.create_task(self._run(self._queue))
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(lease_id, collections.deque()).append(fut)
        await self._queue.put(lease_id)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError as exc:
            raise Unavailable(f"etcd did not answer a lease keep-alive within {timeout_s} s") from exc
        finally:
            q = self._waiters.get(lease_id)
            if q is not None and fut in q:
                q.remove(fut)
                if not q:
                    del self._waiters[lease_id]

    async def _requests(self, queue: asyncio.Queue[int | None]) -> AsyncIterator[rpc.LeaseKeepAliveRequest]:
        while True:
            lease_id = await queue.get()
            if lease_id is None:
                return
            yield rpc.LeaseKeepAliveRequest(ID=lease_id)

    async def _run(self, queue: asyncio.Queue[int | None]) -> None:
        err: Exception | None = None
        try:
            async for reply in self._stub.LeaseKeepAlive(self._requests(queue)):
                q = self._waiters.get(reply.ID)
                if q:
                    fut = q.popleft()
                    if not q:
                        del self._waiters[reply.ID]
                    if not fut.done():
                        fut.set_result(int(reply.TTL))
        except grpc.RpcError as exc:
            err = self._on_error(exc, "lease keep-alive") if self._on_error else _map_error(exc, "lease keep-alive")
        except asyncio.CancelledError:
            err = Unavailable("lease keep-alive stream closed")
            raise
        finally:
            failure = err or Unavailable("lease keep-alive stream ended")
            for q in self._waiters.values():
                for fut in q:
                    if not fut.done():
                        fut.set_exception(failure)
            self._waiters.clear()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None


class EtcdStore:
    """A Store backed by etcd v3. Create with endpoints (or `from_spec`), `await connect()`, `await close()`."""

    def __init__(
        self, endpoints: Sequence[tuple[str, int]], timeout_s: float = 2.0, spec: EtcdSpec | None = None
    ) -> None:
        if not endpoints:
            raise ConfigError("EtcdStore needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self.spec = spec or EtcdSpec(tuple(self.endpoints))
        self._auth = (
            _Auth(self.spec.user, self.spec.password, timeout_s, _target(self.endpoints)) if self.spec.user else None
        )
        self._channel: grpc.aio.Channel | None = None
        self._kv: rpc.KVStub | None = None
        self._lease: rpc.LeaseStub | None = None
        self._watch: rpc.WatchStub | None = None
        self._maint: rpc.MaintenanceStub | None = None
        self._keepalive: _KeepAliveStream | None = None

    @classmethod
    def from_spec(
        cls, spec: str | EtcdSpec, timeout_s: float = 2.0, *, ca: str = "", cert: str = "", key: str = ""
    ) -> EtcdStore:
        """The store an `--etcd` value names (meshactors.store.etcdspec): endpoints, user:password, https + files."""
        parsed = spec if isinstance(spec, EtcdSpec) else EtcdSpec.parse(spec, ca=ca, cert=cert, key=key)
        return cls(parsed.endpoints, timeout_s, spec=parsed)

    def __repr__(self) -> str:
        return f"EtcdStore({self.spec.redacted()})"

    @property
    def authentications(self) -> int:
        """How many times this store authenticated to etcd (0 without credentials)."""
        return self._auth.authentications if self._auth else 0

    async def connect(self) -> None:
        if self._channel is not None:
            return
        interceptors = [_UnaryAuth(self._auth), _StreamAuth(self._auth)] if self._auth else None
        target = _target(self.endpoints)
        options = _CHANNEL_OPTIONS
        if self.spec.tls:
            ca, cert, key = self.spec.read_tls_files()
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
            if len(self.endpoints) > 1:  # an address list has no name to check certificates against: the first's
                options = (*options, ("grpc.ssl_target_name_override", self.endpoints[0][0]))
            self._channel = grpc.aio.secure_channel(target, creds, options=options, interceptors=interceptors)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        if self._auth is not None:
            self._auth.bind(self._channel)
        self._kv = rpc.KVStub(self._channel)
        self._lease = rpc.LeaseStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        self._maint = rpc.MaintenanceStub(self._channel)
        self._keepalive = _KeepAliveStream(self._lease, self._stream_error)

    def _error(self, exc: grpc.RpcError, what: str) -> Exception:
        return _map_error(exc, what, self.spec.user)

    def _stream_error(self, exc: grpc.RpcError, what: str) -> Exception:
        """A stream's error; a token etcd refused is forgotten, so the stream's next opening authenticates."""
        if self._auth is not None and (_token_error(exc) or "permission denied" in _details(exc)[1]):
            self._auth.invalidate()
        return self._error(exc, what)

    async def close(self) -> None:
        if self._keepalive is not None:
            await self._keepalive.close()
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._keepalive = None

    async def __aenter__(self) -> EtcdStore:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _stubs(self) -> tuple[rpc.KVStub, rpc.LeaseStub]:
        if self._kv is None or self._lease is None:
            raise Unavailable("EtcdStore is not connected (call connect() first)")
        return self._kv, self._lease

    # ---- reads -------------------------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        kv, _ = self._stubs()
        try:
            resp = await kv.Range(rpc.RangeRequest(key=key.encode()), timeout=self.timeout_s, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise self._error(exc, f"get {key}") from exc
        if not resp.kvs:
            return None
        return _kv(resp.kvs[0])

    async def list_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under `prefix` at one revision (paged), and that revision."""
        kv, _ = self._stubs()
        start = prefix.encode()
        end = _prefix_end(start)
        items: list[KeyValue] = []
        revision = 0
        try:
            while True:
                resp = await kv.Range(
                    rpc.RangeRequest(key=start, range_end=end, limit=5000, revision=revision),
                    timeout=self.timeout_s * 4,
                    wait_for_ready=True,
                )
                if revision == 0:
                    revision = resp.header.revision
                items.extend(_kv(k) for k in resp.kvs)
                if not resp.more or not resp.kvs:
                    break
                start = resp.kvs[-1].key + b"\x00"
        except grpc.RpcError as exc:
            raise self._error(exc, f"list {prefix}") from exc
        return items, revision

    async def revision(self) -> int:
        kv, _ = self._stubs()
        try:
            resp = await kv.Range(
                rpc.RangeRequest(key=b"\x00", limit=1, count_only=True), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise self._error(exc, "revision") from exc
        return int(resp.header.revision)

    # ---- fenced writes -----------------------------------------------------------------------------------------

    async def _txn(self, compare: list[rpc.Compare], success: list[rpc.RequestOp], what: str) -> rpc.TxnResponse:
        kv, _ = self._stubs()
        try:
            return await kv.Txn(
                rpc.TxnRequest(compare=compare, success=success), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise self._error(exc, what) from exc

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        """Put `key` only if it does not exist; Conflict otherwise."""
        k = key.encode()
        resp = await self._txn(
            [rpc.Compare(key=k, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)],
            [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease))],
            f"create {key}",
        )
        if not resp.succeeded:
            raise Conflict(f"{key} already exists")
        return int(resp.header.revision)

    async def replace(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        """Put `key` only if it was last modified at `mod_revision`; Conflict otherwise."""
        k = key.encode()
        resp = await self._txn(
            [rpc.Compare(key=k, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=mod_revision)],
            [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease))],
            f"replace {key}",
        )
        if not resp.succeeded:
            raise Conflict(f"{key} changed since revision {mod_revision}")
        return int(resp.header.revision)

    async def delete(self, key: str, mod_revision: int | None = None) -> int:
        """Delete `key` (only at `mod_revision` if given). NotFound if absent, Conflict if it moved on."""
        k = key.encode()
        compare = (
            [rpc.Compare(key=k, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=mod_revision)]
            if mod_revision is not None
            else [rpc.Compare(key=k, result=rpc.Compare.GREATER, target=rpc.Compare.CREATE, create_revision=0)]
        )
        resp = await self._txn(
            compare,
            [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k))],
            f"delete {key}",
        )
        if not resp.succeeded:
            if mod_revision is None:
                raise NotFound(f"{key} does not exist")
            raise Conflict(f"{key} changed since revision {mod_revision}")
        return int(resp.header.revision)

    async def commit(self, txn: Txn) -> int:
        """Every put and delete of `txn` in one etcd transaction, only if each `expect` key is at its mod revision
        and nothing under `quiet_prefix` was written after `quiet_since`. Conflict naming what moved otherwise."""
        both = set(txn.puts) & set(txn.deletes)
        if both:
            raise ValueError(f"a transaction both puts and deletes {sorted(both)[:3]}")
        compare: list[rpc.Compare] = [
            rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=rev)
            for key, rev in txn.expect.items()
        ]
        # On failure etcd runs the `failure` ops: read back what the conditions looked at, to say what moved.
        failure = [
            rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode(), keys_only=True)) for key in txn.expect
        ]
        if txn.quiet_prefix:
            k = txn.quiet_prefix.encode()
            end = _prefix_end(k)
            compare.append(
                rpc.Compare(
                    key=k, range_end=end, result=rpc.Compare.LESS, target=rpc.Compare.MOD,
                    mod_revision=txn.quiet_since + 1,
                )
            )  # fmt: skip
            failure.append(
                rpc.RequestOp(
                    request_range=rpc.RangeRequest(
                        key=k, range_end=end, keys_only=True, min_mod_revision=txn.quiet_since + 1, limit=5
                    )
                )
            )
        success = [rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=v)) for key, v in txn.puts.items()]
        success += [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode())) for key in txn.deletes]
        kv, _ = self._stubs()
        what = f"transaction of {len(txn.puts)} put(s) and {len(txn.deletes)} delete(s)"
        try:
            resp = await kv.Txn(
                rpc.TxnRequest(compare=compare, success=success, failure=failure),
                timeout=self.timeout_s,
                wait_for_ready=True,
            )
        except grpc.RpcError as exc:
            raise self._error(exc, what) from exc
        if resp.succeeded:
            return int(resp.header.revision)
        moved: list[str] = []
        for (key, rev), r in zip(txn.expect.items(), resp.responses, strict=False):
            now = int(r.response_range.kvs[0].mod_revision) if r.response_range.kvs else 0
            if now != rev:
                moved.append(
                    f"{key} does not exist" if not now
                    else f"{key} already exists" if not rev
                    else f"{key} is at revision {now}, expected {rev}"
                )  # fmt: skip
        if txn.quiet_prefix and resp.responses:
            for k in resp.responses[-1].response_range.kvs:
                moved.append(f"{k.key.decode()} was written at revision {k.mod_revision} (after {txn.quiet_since})")
        raise Conflict("; ".join(moved) or f"{what}: a condition no longer holds")

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Unfenced put: for tests and tools only; the registry always fences."""
        kv, _ = self._stubs()
        try:
            resp = await kv.Put(
                rpc.PutRequest(key=key.encode(), value=value, lease=lease), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise self._error(exc, f"put {key}") from exc
        return int(resp.header.revision)

    async def delete_prefix(self, prefix: str) -> int:
        kv, _ = self._stubs()
        k = prefix.encode()
        try:
            resp = await kv.DeleteRange(
                rpc.DeleteRangeRequest(key=k, range_end=_prefix_end(k)), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise self._error(exc, f"delete prefix {prefix}") from exc
        return int(resp.header.revision)

    async def compact(self, revision: int) -> None:
        kv, _ = self._stubs()
        try:
            await kv.Compact(
                rpc.CompactionRequest(revision=revision, physical=True), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise self._error(exc, f"compact {revision}") from exc

    # ---- leases ------------------------------------------------------------------------------------------------

    async def grant_lease(self, ttl_s: int) -> int:
        _, lease = self._stubs()
        try:
            resp = await lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl_s), timeout=self.timeout_s, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise self._error(exc, "lease grant") from exc
        if resp.error:
            raise Unavailable(f"etcd refused a lease: {resp.error}")
        return int(resp.ID)

    async def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease; returns its TTL in seconds, 0 when the lease no longer exists."""
        self._stubs()
        assert self._keepalive is not None
        return await self._keepalive.keep_alive(lease_id, self.timeout_s)

    async def revoke_lease(self, lease_id: int) -> None:
        _, lease = self._stubs()
        try:
            await lease.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease_id), timeout=self.timeout_s, wait_for_ready=True)
        except grpc.RpcError as exc:
            err = self._error(exc, f"revoke lease {lease_id:x}")
            if isinstance(err, NotFound):
                return
            raise err from exc

    async def lease_ttl(self, lease_id: int) -> int:
        """Remaining TTL of a lease in seconds (-1 or 0 when gone)."""
        _, lease = self._stubs()
        try:
            resp = await lease.LeaseTimeToLive(
                rpc.LeaseTimeToLiveRequest(ID=lease_id), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise self._error(exc, f"lease ttl {lease_id:x}") from exc
        return int(resp.TTL)

    async def leases(self) -> list[int]:
        """The ids of every lease etcd holds (for checks and tests: the registry grants one per instance)."""
        _, lease = self._stubs()
        try:
            resp = await lease.LeaseLeases(rpc.LeaseLeasesRequest(), timeout=self.timeout_s, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise self._error(exc, "list leases") from exc
        return [int(item.ID) for item in resp.leases]

    # ---- watch -------------------------------------------------------------------------------------------------

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]:
        """Raw watch of a prefix from `start_revision` (inclusive, 0 = now), with progress notifications.

        Yields one WatchBatch per etcd response. Raises Compacted when the start revision is gone and
        Unavailable when the stream breaks; resuming is the caller's job (see store.watch.ResumableWatch).
        """
        if self._watch is None:
            raise Unavailable("EtcdStore is not connected (call connect() first)")
        k = prefix.encode()
        create = rpc.WatchCreateRequest(
            key=k, range_end=_prefix_end(k), start_revision=start_revision, progress_notify=True, prev_kv=True
        )
        # With auth, etcd checks a watch's token when the watch is created and cancels it as "permission denied"
        # when the token is stale: then the watch is created once more with a fresh token (nothing was yielded).
        attempts = 2 if self._auth is not None else 1
        for attempt in range(attempts):
            done = asyncio.Event()
            call = self._watch.Watch(_watch_requests(create, done))
            first, refused = True, False
            try:
                async for resp in call:
                    if resp.compact_revision:
                        raise Compacted(start_revision, int(resp.compact_revision))
                    if resp.canceled:
                        reason = str(resp.cancel_reason)
                        if self._auth is not None and ("permission denied" in reason or "auth token" in reason):
                            self._auth.invalidate()
                            if first and attempt + 1 < attempts:
                                refused = True
                                break
                        if "permission denied" in reason and not self.spec.user:
                            raise StoreUnauthenticated(
                                f"etcd refused watch {prefix}: it requires authentication; give user:password in "
                                "the etcd URL, e.g. http://user:password@host:2379"
                            )
                        if "permission denied" in reason:
                            raise StorePermissionDenied(f"etcd refused watch {prefix} to etcd user {self.spec.user!r}")
                        raise Unavailable(f"etcd canceled the watch on {prefix}: {reason}")
                    first = False
                    if resp.created and not resp.events:
                        continue
                    events = tuple(
                        WatchEvent(
                            kind="delete" if ev.type == rpc.Event.DELETE else "put",
                            key=ev.kv.key.decode(),
                            value=ev.kv.value,
                            mod_revision=int(ev.kv.mod_revision),
                            lease=int(ev.kv.lease),
                            prev_value=ev.prev_kv.value,
                        )
                        for ev in resp.events
                    )
                    yield WatchBatch(events, int(resp.header.revision))
                if not refused:
                    raise Unavailable(f"etcd watch on {prefix} ended")
            except grpc.RpcError as exc:
                raise self._stream_error(exc, f"watch {prefix}") from exc
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being cancelled
                # the channel under the call was closed: the stream broke, nobody cancelled us
                raise Unavailable(f"etcd watch on {prefix} was cut off") from exc
            finally:
                done.set()
                call.cancel()


async def _watch_requests(create: rpc.WatchCreateRequest, done: asyncio.Event) -> AsyncIterator[rpc.WatchRequest]:
    """A watch stream's requests: the create, then nothing until the watch is done (closing early ends it)."""
    yield rpc.WatchRequest(create_request=create)
    await done.wait()


def _kv(k: Any) -> KeyValue:
    return KeyValue(
        key=k.key.decode(),
        value=k.value,
        create_revision=int(k.create_revision),
        mod_revision=int(k.mod_revision),
        lease=int(k.lease),
    )


def _prefix_end(prefix: bytes) -> bytes:
    s = bytearray(prefix)
    for i in reversed(range(len(s))):
        if s[i] < 0xFF:
            s[i] += 1
            return bytes(s[: i + 1])
    return b"\x00"


async def enable_root_auth(spec: EtcdSpec, timeout_s: float = 10.0) -> bool:
    """Make `spec`'s user etcd's root and turn etcd's authentication on, unless it is on already and that user's
    password works. True when it turned auth on now. Unauthenticated when auth is on and the password is refused.

    For an etcd this process runs (the embedded default): a user `root` with role `root`, then `auth enable`.
    Safe to repeat after a crash half-way (a user or role that exists is reused, its password set again)."""
    if not spec.user:
        raise ConfigError("enabling etcd auth needs a user and password in the spec")
    # a channel without the auth interceptor: these calls come before (or decide) authentication
    store = EtcdStore(spec.endpoints, timeout_s, spec=dataclasses.replace(spec, user="", password=""))
    await store.connect()
    assert store._channel is not None
    auth = rpc.AuthStub(store._channel)
    where = _target(spec.endpoints)
    opts: dict[str, Any] = {"timeout": timeout_s, "wait_for_ready": True}
    try:
        try:
            await auth.Authenticate(rpc.AuthenticateRequest(name=spec.user, password=spec.password), **opts)
            return False  # on already, and the password works
        except grpc.aio.AioRpcError as exc:
            if "authentication is not enabled" not in (exc.details() or ""):
                raise
        try:
            await auth.UserAdd(rpc.AuthUserAddRequest(name=spec.user, password=spec.password), **opts)
        except grpc.aio.AioRpcError as exc:
            if "already exists" not in (exc.details() or ""):
                raise
            await auth.UserChangePassword(
                rpc.AuthUserChangePasswordRequest(name=spec.user, password=spec.password), **opts
            )
        try:
            await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"), **opts)
        except grpc.aio.AioRpcError as exc:
            if "already exists" not in (exc.details() or ""):
                raise
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=spec.user, role="root"), **opts)
        await auth.AuthEnable(rpc.AuthEnableRequest(), **opts)
        return True
    except grpc.RpcError as exc:
        raise _map_error(exc, f"enable authentication at {where}", spec.user) from exc
    finally:
        await store.close()
