"""EtcdStore: the only module that talks to etcd (through aetcd's gRPC API); maps its errors into meshactors'."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import grpc
from aetcd import rpc

from meshactors import log
from meshactors.errors import Compacted, ConfigError, Conflict, NotFound, Unavailable
from meshactors.store.base import KeyValue, Txn, WatchBatch, WatchEvent

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
    """Parse `--etcd` values: `http://127.0.0.1:2379` or a comma-separated list of such URLs / host:port."""
    endpoints: list[tuple[str, int]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        url = urlsplit(part if "://" in part else f"http://{part}")
        if url.scheme not in ("http", ""):
            raise ConfigError(f"etcd endpoint {part!r}: only http:// endpoints are supported")
        if not url.hostname or not url.port:
            raise ConfigError(f"etcd endpoint {part!r} needs a host and a port, e.g. http://127.0.0.1:2379")
        endpoints.append((url.hostname, url.port))
    if not endpoints:
        raise ConfigError("no etcd endpoint given")
    return endpoints


def _target(endpoints: Sequence[tuple[str, int]]) -> str:
    if len(endpoints) == 1:
        host, port = endpoints[0]
        return f"{host}:{port}"
    # gRPC's ipv4 resolver takes an address list: the channel fails over between members by itself.
    return "ipv4:" + ",".join(f"{h}:{p}" for h, p in endpoints)


def _map_error(exc: grpc.RpcError, what: str) -> Exception:
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
    details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Unavailable(f"etcd is unreachable ({what}): {details}")
    if code == grpc.StatusCode.NOT_FOUND or (details and "requested lease not found" in details):
        return NotFound(f"etcd: {details} ({what})")
    return Unavailable(f"etcd error during {what}: {code.name if code else '?'} {details}")


class _KeepAliveStream:
    """One long-lived LeaseKeepAlive stream shared by every heartbeat of this process (no stream per call)."""

    def __init__(self, stub: rpc.LeaseStub) -> None:
        self._stub = stub
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
            err = _map_error(exc, "lease keep-alive")
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
    """A Store backed by etcd v3. Create with endpoints, `await connect()`, `await close()`."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], timeout_s: float = 2.0) -> None:
        if not endpoints:
            raise ConfigError("EtcdStore needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._kv: rpc.KVStub | None = None
        self._lease: rpc.LeaseStub | None = None
        self._watch: rpc.WatchStub | None = None
        self._maint: rpc.MaintenanceStub | None = None
        self._keepalive: _KeepAliveStream | None = None

    @classmethod
    def from_spec(cls, spec: str, timeout_s: float = 2.0) -> EtcdStore:
        return cls(parse_endpoints(spec), timeout_s)

    async def connect(self) -> None:
        if self._channel is not None:
            return
        self._channel = grpc.aio.insecure_channel(_target(self.endpoints), options=_CHANNEL_OPTIONS)
        self._kv = rpc.KVStub(self._channel)
        self._lease = rpc.LeaseStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        self._maint = rpc.MaintenanceStub(self._channel)
        self._keepalive = _KeepAliveStream(self._lease)

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
            raise _map_error(exc, f"get {key}") from exc
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
            raise _map_error(exc, f"list {prefix}") from exc
        return items, revision

    async def revision(self) -> int:
        kv, _ = self._stubs()
        try:
            resp = await kv.Range(
                rpc.RangeRequest(key=b"\x00", limit=1, count_only=True), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise _map_error(exc, "revision") from exc
        return int(resp.header.revision)

    # ---- fenced writes -----------------------------------------------------------------------------------------

    async def _txn(self, compare: list[rpc.Compare], success: list[rpc.RequestOp], what: str) -> rpc.TxnResponse:
        kv, _ = self._stubs()
        try:
            return await kv.Txn(
                rpc.TxnRequest(compare=compare, success=success), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise _map_error(exc, what) from exc

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
            raise _map_error(exc, what) from exc
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
            raise _map_error(exc, f"put {key}") from exc
        return int(resp.header.revision)

    async def delete_prefix(self, prefix: str) -> int:
        kv, _ = self._stubs()
        k = prefix.encode()
        try:
            resp = await kv.DeleteRange(
                rpc.DeleteRangeRequest(key=k, range_end=_prefix_end(k)), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise _map_error(exc, f"delete prefix {prefix}") from exc
        return int(resp.header.revision)

    async def compact(self, revision: int) -> None:
        kv, _ = self._stubs()
        try:
            await kv.Compact(
                rpc.CompactionRequest(revision=revision, physical=True), timeout=self.timeout_s, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise _map_error(exc, f"compact {revision}") from exc

    # ---- leases ------------------------------------------------------------------------------------------------

    async def grant_lease(self, ttl_s: int) -> int:
        _, lease = self._stubs()
        try:
            resp = await lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl_s), timeout=self.timeout_s, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _map_error(exc, "lease grant") from exc
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
            err = _map_error(exc, f"revoke lease {lease_id:x}")
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
            raise _map_error(exc, f"lease ttl {lease_id:x}") from exc
        return int(resp.TTL)

    async def leases(self) -> list[int]:
        """The ids of every lease etcd holds (for checks and tests: the registry grants one per instance)."""
        _, lease = self._stubs()
        try:
            resp = await lease.LeaseLeases(rpc.LeaseLeasesRequest(), timeout=self.timeout_s, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _map_error(exc, "list leases") from exc
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
        done = asyncio.Event()

        async def requests() -> AsyncIterator[rpc.WatchRequest]:
            yield rpc.WatchRequest(create_request=create)
            await done.wait()

        call = self._watch.Watch(requests())
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(start_revision, int(resp.compact_revision))
                if resp.canceled:
                    raise Unavailable(f"etcd canceled the watch on {prefix}: {resp.cancel_reason}")
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
            raise Unavailable(f"etcd watch on {prefix} ended")
        except grpc.RpcError as exc:
            raise _map_error(exc, f"watch {prefix}") from exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled
            # the channel under the call was closed: the stream broke, nobody cancelled us
            raise Unavailable(f"etcd watch on {prefix} was cut off") from exc
        finally:
            done.set()
            call.cancel()


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
