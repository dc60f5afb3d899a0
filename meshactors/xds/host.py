"""XdsHost: the ADS server of one process: one lightweight session per stream (state machine + outbox) over a
SnapshotCache filled on demand from its sources. It serves whatever type URLs its sources own and knows no VIP;
no Ray here: the runtime wraps it in an actor and wires the sources' update streams to `apply`.

Every stream is authenticated on its first request (`xds.auth`) before anything is sent or subscribed; the
runtime injects the token check and calls `revoke(token_id)` when a token goes, which ends the streams it opened."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.envoy.codec import ads_generic_handler
from meshactors.errors import (
    CodecError,
    MeshError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.source import Source
from meshactors.resources.types import DEFAULT_KIND, ENVOY_KIND, Ref, client_kind
from meshactors.telemetry.histogram import Histogram
from meshactors.xds.auth import Authenticate, authorize
from meshactors.xds.cache import HeldKey, KindView, SnapshotCache
from meshactors.xds.convergence import ConvergenceTracker
from meshactors.xds.delta import DeltaStream
from meshactors.xds.idle import IdleBook
from meshactors.xds.settings import HostSettings  # re-exported: it lives in a proto-free module
from meshactors.xds.sotw import SotwStream
from meshactors.xds.statistics import HostStatistics, SessionPolicy, SessionStatistics  # re-exported
from meshactors.xds.sync import ResourceSync, TypeSync, resource_sync, session_sync
from meshactors.xds.types import WILDCARD, DeltaRequest, SotwRequest

_log = log.get("xds.host")

# What one client can make this host keep and log. A node id is kept (and logged) cut to MAX_NODE_ID_CHARS with a
# marker, not refused: a sidecar's default id (VIP-host-port) may be longer than any bound short enough to keep.
# Every client value logged is cut to LOG_VALUE_CHARS; a request's refused names are one line (a count and the
# first LOG_NAMES); a stream logs at most LOG_BURST warnings at once, then LOG_RATE_PER_S (the rest are counted).
MAX_NODE_ID_CHARS = 256
LOG_VALUE_CHARS = 200
LOG_NAMES = 5
LOG_BURST = 20
LOG_RATE_PER_S = 1.0


def bounded(value: object, limit: int = LOG_VALUE_CHARS) -> str:
    """A client value as it may be kept or logged: at most `limit` characters and a marker saying what was cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} chars)"


# Errors that mean the stream itself went away (the client closed it, the server is stopping): not bugs.
_STREAM_GONE = (grpc.aio.AbortError, grpc.aio.UsageError, grpc.RpcError, ConnectionError, asyncio.InvalidStateError)


@dataclass(frozen=True, slots=True)
class Convergence:
    """Which sessions still lag behind what the host holds, and the versions it holds per held key."""

    sessions: int
    lagging: tuple[str, ...]
    versions: dict[str, dict[str, str]]  # "source/key" -> {"type URL name variant": version}


# What one client-status answer (CSDS, `proxy-status NODE`) may hold: past a bound, the sessions or resources left
# out are counted in the answer, and contents past the byte budget are left out (a gRPC client receives 4 MiB by
# default; the versions and statuses still come).
MAX_STATUS_CLIENTS = 1000
MAX_STATUS_RESOURCES = 50_000
MAX_STATUS_CONTENT_BYTES = 3 << 20
# What one session's statistics list of the policies it holds (one per held VIP with a policy, in name order).
MAX_SESSION_POLICIES = 64


@dataclass(frozen=True, slots=True)
class ClientSync:
    """One session as a client-status view shows it: who, and the sync status per type URL and per resource."""

    server: str
    stream_id: str
    node_id: str
    kind: str
    client_kind: str
    peer: str
    opened_at: float
    types: tuple[TypeSync, ...]
    resources: tuple[ResourceSync, ...]


@dataclass(frozen=True, slots=True)
class ClientStatusAnswer:
    clients: tuple[ClientSync, ...]
    omitted_clients: int = 0  # sessions that matched past MAX_STATUS_CLIENTS
    omitted_resources: int = 0  # resources past MAX_STATUS_RESOURCES (their sessions list the rest)
    omitted_contents: int = 0  # resources listed without their contents past MAX_STATUS_CONTENT_BYTES


@dataclass
class _Counters:
    streams_opened: int = 0
    refused_not_ready: int = 0
    refused_rate: int = 0
    nacks: int = 0
    fetch_failures: int = 0
    stream_errors: int = 0
    names_refused: int = 0
    refused_unauthenticated: int = 0
    refused_permission: int = 0
    ended_revoked: int = 0
    clusters_collected: int = 0
    responses_by_type: dict[str, int] = field(default_factory=dict)
    nacks_by_type: dict[str, int] = field(default_factory=dict)


class _Refused(Exception):
    """A stream refused before it is served: the status it ends with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _TokenBucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = rate if burst is None else burst
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Session:
    """One ADS stream: its state machine, the keys it holds interest in, and the changes waiting for it.

    Requests are handled as they are read; changes are computed by the host's fan-out (one loop over every
    session a batch of changes concerns) and written by it. One writer at a time (`writing`): what is computed
    while a write is under way waits in `outbox`, so responses go out in the order computed, and changes that
    arrive meanwhile wait in `pending` for the writer to compute them when its write is done (latest wins).
    An idle session holds no task and no queue of its own: it costs the stream, the state machine, and this.
    """

    __slots__ = (
        "aborts", "bad_messages", "closed", "context", "drained", "idle", "keys", "kind", "log_budget", "machine",
        "node_id", "opened_at", "outbox", "peer", "pending", "reports", "resources_sent", "revoked", "stream_id",
        "suppressed", "task", "token_id", "view", "writing",
    )  # fmt: skip

    def __init__(self, kind: str, stream_id: str, view: KindView, context: grpc.aio.ServicerContext) -> None:
        self.kind = kind
        self.stream_id = stream_id
        self.view = view
        self.machine: Any = None
        self.context = context
        self.writing = False  # a writer is draining `outbox`: others append to it, never write themselves
        self.outbox: list[Any] = []  # responses computed, not written yet, in order; empty unless `writing`
        self.drained: asyncio.Future[None] | None = None  # a request handler waiting for the writer to finish
        self.node_id = ""
        self.peer = context.peer()
        self.opened_at = time.time()
        self.pending: set[Ref] = set()
        self.closed = False
        self.keys: dict[HeldKey, set[Ref]] = {}
        self.resources_sent = 0
        self.bad_messages = 0
        self.log_budget: _TokenBucket | None = None  # made by the first warning
        self.suppressed = 0
        self.token_id = ""  # the id (never the secret) of the token that opened it; "" until authenticated
        self.task: asyncio.Task[Any] | None = None  # the stream's handler, cancelled when its token is revoked
        self.revoked = False
        self.idle: IdleBook | None = None  # made by the node's first metrics report (cluster collection)
        self.reports = 0  # the node's metrics reports that reached it (here or relayed), for idle collection
        self.aborts = 0  # what they counted of its outbound fault aborts (the guard's 503s for junk Hosts)

    @property
    def slog(self) -> Any:
        """A logger bound to this stream (built when needed: an idle session keeps no logger of its own)."""
        return _log.bind(stream=self.stream_id, kind=self.kind, peer=self.peer, node_id=self.node_id)

    def warn(self, event: str, **fields: Any) -> None:
        """A warning the client caused, rate-limited per stream; the next line logged counts the ones dropped."""
        if self.log_budget is None:
            self.log_budget = _TokenBucket(LOG_RATE_PER_S, LOG_BURST)
        if not self.log_budget.take():
            self.suppressed += 1
            return
        if self.suppressed:
            fields["suppressed"], self.suppressed = self.suppressed, 0
        self.slog.warning(event, **fields)

    async def write(self, responses: Iterable[Any], tally: dict[str, int]) -> None:
        for resp in responses:
            self.resources_sent += len(resp.resources)
            tally[resp.type_url] = tally.get(resp.type_url, 0) + 1
            await self.context.write(resp)


class XdsHost:
    """`authenticate` checks the token a stream presents (the runtime's token table): every stream is refused
    until its first request is authenticated."""

    def __init__(
        self,
        name: str,
        sources: Iterable[Source],
        settings: HostSettings | None = None,
        *,
        authenticate: Authenticate,
    ) -> None:
        self.name = name
        self._authenticate = authenticate
        self.settings = settings or HostSettings()
        self.cache = SnapshotCache(sources)
        self.ready = asyncio.Event()
        self.incarnation = secrets.token_hex(6)
        self._sessions: dict[str, Session] = {}
        # token id -> the open sessions it authenticated: at most one entry per session, removed as they close
        self._by_token: dict[str, set[Session]] = {}
        self._by_node: dict[str, set[Session]] = {}  # node id -> its open delta sessions (metrics reports find them)
        self._key_sessions: dict[HeldKey, set[Session]] = {}
        self._idle_since: dict[HeldKey, float] = {}
        self._inflight: dict[HeldKey, asyncio.Future[None]] = {}
        self._pinned: set[HeldKey] = set()  # held with or without sessions; never evicted
        # validations of the request being handled: `_speculate` and the state machine ask once per name
        self._checked: dict[Ref, str | None] = {}
        self._bucket = _TokenBucket(self.settings.max_new_streams_per_s)
        self._ids = itertools.count(1)
        self._tasks = TaskSet()
        # sessions with changes not computed yet, for the fan-out scheduled to run once the current handler yields
        self._dirty: dict[Session, None] = {}
        self._fan_out_scheduled = False
        self.counters = _Counters()
        self.converging: ConvergenceTracker[Session, HeldKey] = ConvergenceTracker(self._caught_up)
        self.fetch_time = Histogram()
        self._generations = self.cache.generations()

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return ads_generic_handler(self.delta, self.sotw)

    # ---- streams -------------------------------------------------------------------------------------------

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        if not self.ready.is_set():
            self.counters.refused_not_ready += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"xDS server {self.name} is still loading; retry")
        if not self._bucket.take():
            self.counters.refused_rate += 1
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"xDS server {self.name} accepts at most {self.settings.max_new_streams_per_s:g} new streams/s",
            )

    def _session(self, kind: str, context: grpc.aio.ServicerContext) -> Session:
        # unique across restarts too: a proxy that reconnects to the restarted server gets a stream id of its own
        stream_id = f"{self.name}-{self.incarnation[:6]}-{next(self._ids)}"
        session = Session(kind, stream_id, KindView(self.cache), context)
        if kind == "delta":
            session.machine = DeltaStream(
                session.view, self.settings.limits, stream_id, self._validate,
                companions=self.cache.companions, companion_types=self.cache.companion_types(),
                pushed_refs=self.cache.pushed_refs, pushed_types=self.cache.pushed_types(),
                generations=self._generations,
            )  # fmt: skip
        else:
            session.machine = SotwStream(session.view, self.settings.limits, stream_id, self._validate)
        return session

    async def delta(self, requests: AsyncIterator[DeltaRequest], context: grpc.aio.ServicerContext) -> None:
        await self._admit(context)
        await self._serve(self._session("delta", context), requests)

    async def sotw(self, requests: AsyncIterator[SotwRequest], context: grpc.aio.ServicerContext) -> None:
        await self._admit(context)
        await self._serve(self._session("sotw", context), requests)

    def _authorize(self, session: Session, req: Any) -> None:
        """Authenticate a stream on its first request; only then is it a session of this host."""
        try:
            who = authorize(self._authenticate, session.context.invocation_metadata(), req.node)
        except Unauthenticated as exc:
            self.counters.refused_unauthenticated += 1
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, f"xDS: {exc.message}") from exc
        except PermissionDenied as exc:
            self.counters.refused_permission += 1
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, exc.message) from exc
        except Unavailable as exc:  # the token table is still loading
            raise _Refused(grpc.StatusCode.UNAVAILABLE, f"xDS server {self.name}: {exc.message}") from exc
        session.token_id = who.token_id
        session.task = asyncio.current_task()
        self._sessions[session.stream_id] = session
        self._by_token.setdefault(who.token_id, set()).add(session)

    def _opened(self, session: Session, node: Any) -> None:
        session.view.set_node(client_kind(node.user_agent_name), node.zone)
        if isinstance(session.machine, DeltaStream) and session.node_id:
            self._by_node.setdefault(session.node_id, set()).add(session)
        session.slog.info("stream opened", client_kind=session.view.kind or "default", zone=session.view.zone,
                          token_id=session.token_id)  # fmt: skip

    async def _serve(self, session: Session, requests: AsyncIterator[Any]) -> None:
        self.counters.streams_opened += 1
        failed: BaseException | None = None
        refused: tuple[grpc.StatusCode, str] | None = None
        try:
            async for req in requests:  # gRPC flow control slows a client that sends faster than we handle
                if not session.token_id:  # the first request: nothing is served or held before this passes
                    if req.node is not None:
                        session.node_id = bounded(req.node.id, MAX_NODE_ID_CHARS)
                    self._authorize(session, req)
                    if req.node is not None:
                        self._opened(session, req.node)
                elif req.node is not None and not session.node_id:
                    session.node_id = bounded(req.node.id, MAX_NODE_ID_CHARS)
                    self._opened(session, req.node)
                if not (session.kind == "delta" and session.machine.on_plain_ack(req)):  # a plain ACK: bookkeeping
                    responses = self._on_request(session, req)
                    if responses:
                        await self._send(session, responses)
                self.converging.check(session)  # an ACK may have landed
        except asyncio.CancelledError:
            if not session.revoked:
                raise
            self.counters.ended_revoked += 1
            refused = (grpc.StatusCode.UNAUTHENTICATED, "xDS: the token of this stream was revoked")
            session.slog.info("stream ended: its token was revoked", token_id=session.token_id)
        except _Refused as exc:
            refused = (exc.code, exc.message)
            session.warn("stream refused", code=exc.code.name, reason=bounded(exc.message, 2 * LOG_VALUE_CHARS))
        except _STREAM_GONE as exc:  # a broken stream ends the session like a closed one
            session.slog.debug("stream ended", error=bounded(repr(exc)))
        except CodecError as exc:  # the request deserializer: bytes that are no request end the stream
            session.bad_messages += 1
            refused = (grpc.StatusCode.INVALID_ARGUMENT, f"request: {bounded(exc.message)}")
            session.warn("undecodable request; ending the stream with INVALID_ARGUMENT", error=refused[1])
        except ResourceExhausted as exc:  # a bound of the stream (type URLs): refused visibly, not ignored
            session.bad_messages += 1
            refused = (grpc.StatusCode.RESOURCE_EXHAUSTED, bounded(exc.message, 2 * LOG_VALUE_CHARS))
            session.warn("stream bound hit; ending the stream with RESOURCE_EXHAUSTED", error=refused[1])
        except Exception as exc:  # a bug in handling this stream: say so loudly, end only this stream
            failed = exc
            self.counters.stream_errors += 1
            session.slog.exception("stream handling failed; ending the stream with INTERNAL", error=bounded(repr(exc)))
        finally:
            session.closed = True
            if session.token_id:
                self._close(session)
                session.slog.info("stream closed", resources_sent=session.resources_sent)
        if refused is not None:
            await session.context.abort(*refused)
        if failed is not None:
            await session.context.abort(grpc.StatusCode.INTERNAL, f"xDS server {self.name} failed on this stream")

    def notify(self, session: Session, changed: Iterable[Ref]) -> None:
        """Changes for a session: computed by the next fan-out, which runs once the current handler yields and
        serves every session notified until then from one loop; further changes join them (latest wins)."""
        session.pending.update(changed)
        if session.closed:
            return
        self._dirty[session] = None
        if not self._fan_out_scheduled:
            self._fan_out_scheduled = True
            asyncio.get_running_loop().call_soon(self._fan_out)

    def _fan_out(self) -> None:
        """Compute the changes of every notified session that is not writing (a writer computes its own when its
        write is done) and write them all at once: one task for the lot, not a task and a lock per session."""
        self._fan_out_scheduled = False
        dirty, self._dirty = self._dirty, {}
        drains = []
        for session in dirty:
            if session.writing or session.closed or not session.pending:
                continue
            responses = self._compute_push(session)
            if responses:
                session.outbox, session.writing = responses, True
                drains.append(self._push(session))
        if len(drains) == 1:
            self._spawn(drains[0])
        elif drains:
            self._spawn(self._push_all(drains))

    @staticmethod
    async def _push_all(drains: list[Coroutine[Any, Any, None]]) -> None:
        await asyncio.gather(*drains)  # each catches what its stream raises

    def _compute_push(self, session: Session) -> list[Any]:
        changed, session.pending = session.pending, set()
        try:
            responses = session.machine.on_update(changed)
        except Exception as exc:  # a state-machine bug: log it with the stack; the stream goes on
            self.counters.stream_errors += 1
            session.slog.exception("computing a push failed", error=bounded(repr(exc)))
            return []
        self._pushed_interest(session, [])
        return responses

    async def _push(self, session: Session) -> None:
        try:
            await self._drain(session)
        except Exception as exc:  # the stream is gone; its handler cleans up
            session.slog.debug("push to a closed stream dropped", error=bounded(repr(exc)))

    async def _send(self, session: Session, responses: list[Any]) -> None:
        """A request's responses, written after what the session's writer holds (the handler waits for them to be
        written, as gRPC flow control makes a client that does not read wait)."""
        if not session.writing:
            session.outbox, session.writing = responses, True
            await self._drain(session)
            return
        session.outbox.extend(responses)
        if session.drained is None:
            session.drained = asyncio.get_running_loop().create_future()
        await session.drained

    async def _drain(self, session: Session) -> None:
        """Write the outbox, then the changes that arrived meanwhile, until none is left. Called with `writing` set;
        clears it (and wakes a waiting handler) however it ends; a failed write drops what was not written."""
        try:
            while True:
                if not session.outbox:
                    if session.closed or not session.pending:
                        return
                    session.outbox = self._compute_push(session)
                    continue
                batch, session.outbox = session.outbox, []
                await session.write(batch, self.counters.responses_by_type)
        finally:
            session.writing = False
            session.outbox = []
            waiter, session.drained = session.drained, None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _validate(self, type_url: str, name: str) -> str | None:
        """The source's verdict on a name, asked once per request (a source may count what it refuses)."""
        ref = (type_url, name)
        if ref in self._checked:
            return self._checked[ref]
        reason = self._checked[ref] = self.cache.validate(type_url, name)
        return reason

    def _names_of(self, req: Any) -> tuple[str, ...]:
        return req.subscribe if isinstance(req, DeltaRequest) else req.resource_names

    def _speculate(self, req: Any) -> list[HeldKey]:
        """A key not held yet gets what its source can answer before the fetch (a VIP's Cluster and Listener
        do not depend on the registry). Envoy then asks for the rest while we fetch, overlapping its round trip.
        """
        fresh = []
        for name in self._names_of(req):
            if name != WILDCARD and self._validate(req.type_url, name) is None:
                held = self.cache.locate(req.type_url, name)
                if self.cache.provisional(held):
                    fresh.append(held)
        return fresh

    def _on_request(self, session: Session, req: Any) -> list[Any]:
        self._checked.clear()
        speculated = self._speculate(req)
        try:
            return self._handle_request(session, req)
        finally:
            self._checked.clear()
            for held in speculated:  # names the stream did not keep (refused, over a bound) are not held
                if held not in self._key_sessions and held not in self._inflight:
                    self.cache.drop_provisional(held)

    def _handle_request(self, session: Session, req: Any) -> list[Any]:
        try:
            outcome = session.machine.on_request(req)
        except ResourceExhausted:
            raise  # a stream bound: _serve ends the stream saying which
        except MeshError as exc:  # one bad message does not end the stream
            session.bad_messages += 1
            session.warn("bad request ignored", error=bounded(exc.message), type_url=bounded(req.type_url))
            return []
        if outcome.nack is not None:
            self.counters.nacks += 1
            label = outcome.nack.type_url if outcome.nack.type_url in self.cache.type_urls() else "other"
            self.counters.nacks_by_type[label] = self.counters.nacks_by_type.get(label, 0) + 1
            nack = outcome.nack
            session.warn("NACK", type_url=bounded(nack.type_url), error=bounded(nack.message, 2 * LOG_VALUE_CHARS),
                         rejected_count=len(nack.rejected),
                         rejected=[[bounded(n), bounded(v)] for n, v in nack.rejected[:LOG_NAMES]])  # fmt: skip
        self.counters.names_refused += len(outcome.rejected)
        if outcome.rejected:
            first = outcome.rejected[0]
            session.warn("subscriptions refused", count=len(outcome.rejected), type_url=bounded(first.type_url),
                         names=[bounded(r.name) for r in outcome.rejected[:LOG_NAMES]],
                         reason=bounded(first.reason))  # fmt: skip
        for type_url, name in outcome.interest_removed:
            if name != WILDCARD:
                self._release(session, self.cache.locate(type_url, name), (type_url, name))
        self._pushed_interest(session, [(t, n) for t, n in outcome.interest_added if n != WILDCARD])
        return list(outcome.responses)

    def _pushed_interest(self, session: Session, wanted: list[Ref]) -> None:
        """Hold what the session wants: `wanted` (its new subscriptions) and what its state machine began pushing
        to it (a virtual host's mirror cluster); release what it stopped pushing."""
        if isinstance(session.machine, DeltaStream):
            pushed, unpushed = session.machine.take_pushed()
            for type_url, name in unpushed:
                self._release(session, self.cache.locate(type_url, name), (type_url, name))
            wanted = [*wanted, *pushed]
        if wanted:
            keys: set[HeldKey] = set()
            for type_url, name in wanted:
                held = self.cache.locate(type_url, name)
                session.keys.setdefault(held, set()).add((type_url, name))
                self._key_sessions.setdefault(held, set()).add(session)
                self._idle_since.pop(held, None)
                keys.add(held)
            missing = [k for k in keys if k not in self.cache]
            if missing:
                # fetched in the background: the stream goes on (e.g. Envoy's EDS request for the same VIP)
                self._spawn(self._fetch_then_notify(session, missing, wanted))
            else:
                self.notify(session, wanted)

    async def _fetch_then_notify(self, session: Session, keys: list[HeldKey], wanted: list[Ref]) -> None:
        await self._fetch(keys)
        # names the cache could not fill are looked at again (sent, or removed if the client held them)
        self.notify(session, wanted)

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    async def _fetch(self, keys: list[HeldKey]) -> None:
        """Get snapshots for keys not held; concurrent asks for one key share one fetch.

        However the fetch ends (a snapshot, a MeshError, a timeout, any other exception) every waiter is
        resolved within the fetch timeout; a failed key stays subscribed and is fetched again later."""
        waits = [self._inflight[k] for k in keys if k in self._inflight]
        by_source: dict[str, list[str]] = {}
        for src, key in keys:
            if (src, key) not in self._inflight:
                by_source.setdefault(src, []).append(key)
        fetches = []
        loop = asyncio.get_running_loop()
        for src, group in by_source.items():
            fut: asyncio.Future[None] = loop.create_future()
            for key in group:  # registered before any await: a concurrent ask joins this fetch
                self._inflight[(src, key)] = fut
            fetches.append(self._fetch_from(src, group, fut))
        if fetches or waits:
            await asyncio.gather(*fetches, *waits)

    async def _fetch_from(self, source_name: str, keys: list[str], fut: asyncio.Future[None]) -> None:
        try:
            source = self.cache.source(source_name)
            started = time.monotonic()
            got = await asyncio.wait_for(source.fetch(keys), self.settings.fetch_timeout_s)
            self.fetch_time.observe(time.monotonic() - started)
            pushed = self._pushed_keys(got)
            if pushed:  # held before these are served: what they push goes ahead of them with no extra round trip
                await self._fetch(pushed)
            self.apply(source_name, got)
        except (MeshError, TimeoutError) as exc:
            self._fetch_failed(source_name, keys)
            _log.warning("could not fetch snapshots; the names stay subscribed", source=source_name,
                         keys=keys[:20], error=str(exc)[:300] or type(exc).__name__)  # fmt: skip
        except Exception as exc:  # a bug in a source: log the stack, still resolve every waiter
            self._fetch_failed(source_name, keys)
            _log.exception("fetching snapshots failed unexpectedly; the names stay subscribed",
                           source=source_name, keys=keys[:20], error=repr(exc)[:300])  # fmt: skip
        finally:
            for key in keys:
                if self._inflight.get((source_name, key)) is fut:
                    del self._inflight[(source_name, key)]
            if not fut.done():
                fut.set_result(None)

    def _pushed_keys(self, snapshots: Iterable[Snapshot]) -> list[HeldKey]:
        """The keys holding what the resources of `snapshots` push (a virtual host's mirror cluster) that are neither
        held nor being fetched (a fetch in flight is not waited for: two VIPs mirroring each other). Nobody wants
        them yet: idle until a session's state machine pushes them."""
        out: dict[HeldKey, None] = {}
        for snap in snapshots:
            for res in snap.resources:
                for type_url, name in self.cache.pushed_refs(res):
                    if self.cache.validate(type_url, name) is not None:
                        continue
                    held = self.cache.locate(type_url, name)
                    if held not in self.cache and held not in self._inflight:
                        out[held] = None
        now = time.monotonic()
        for held in out:
            if held not in self._key_sessions:
                self._idle_since.setdefault(held, now)
        return list(out)

    def _fetch_failed(self, source_name: str, keys: list[str]) -> None:
        self.counters.fetch_failures += 1
        asyncio.get_running_loop().call_later(self.settings.fetch_retry_s, self._retry, source_name, keys)

    def _retry(self, source_name: str, keys: list[str]) -> None:
        still = [
            (source_name, k) for k in keys if (source_name, k) in self._key_sessions or (source_name, k) in self._pinned
        ]
        still = [h for h in still if h not in self.cache]
        if still:
            self._spawn(self._fetch(still))  # a snapshot that arrives notifies its sessions through `apply`

    def _release(self, session: Session, held: HeldKey, ref: Ref) -> None:
        names = session.keys.get(held)
        if names is None:
            return
        names.discard(ref)
        if names:
            return
        del session.keys[held]
        holders = self._key_sessions.get(held)
        if holders is not None:
            holders.discard(session)
            if not holders:
                del self._key_sessions[held]
                self._idle_since[held] = time.monotonic()

    def _close(self, session: Session) -> None:
        self._sessions.pop(session.stream_id, None)
        of_node = self._by_node.get(session.node_id)
        if of_node is not None:
            of_node.discard(session)
            if not of_node:
                del self._by_node[session.node_id]
        self.converging.closed(session)
        holders = self._by_token.get(session.token_id)
        if holders is not None:
            holders.discard(session)
            if not holders:
                del self._by_token[session.token_id]
        for held in list(session.keys):
            for ref in list(session.keys.get(held, ())):
                self._release(session, held, ref)

    def revoke(self, token_id: str) -> int:
        """A token went away: every stream it opened ends with UNAUTHENTICATED. Returns how many."""
        sessions = self._by_token.pop(token_id, set())
        for session in sessions:
            session.revoked = True
            if session.task is not None and not session.task.done():
                session.task.cancel()
        if sessions:
            _log.info("ending the streams of a revoked token", token_id=token_id, streams=len(sessions))
        return len(sessions)

    # ---- pushes from the sources ---------------------------------------------------------------------------

    def apply(self, source_name: str, snapshots: Iterable[Snapshot]) -> list[str]:
        """New snapshots from a source; notifies the sessions holding them. Returns the keys nobody here wants."""
        unwanted = []
        for snap in snapshots:
            held = (source_name, snap.key)
            if held not in self._key_sessions and held not in self._inflight and held not in self.cache \
                    and held not in self._pinned:  # fmt: skip
                unwanted.append(snap.key)
                continue
            changed = self.cache.apply(source_name, snap)
            if changed:
                holders = self._key_sessions.get(held, ())
                for session in holders:
                    self.notify(session, changed)
                self.converging.changed(held, snap.changed_at, holders)
        return unwanted

    async def evict_idle(self) -> list[HeldKey]:
        """Forget keys no session has wanted for the grace period; tell their sources."""
        self.converging.expire()
        now = time.monotonic()
        idle = [h for h, t in self._idle_since.items() if now - t >= self.settings.unsubscribe_grace_s]
        for held in [h for h in idle if h in self._pinned]:  # a pinned key stays held without sessions
            del self._idle_since[held]
        idle = [h for h in idle if h not in self._pinned]
        by_source: dict[str, list[str]] = {}
        for held in idle:
            del self._idle_since[held]
            self.cache.evict(held)
            by_source.setdefault(held[0], []).append(held[1])
        for source_name, keys in by_source.items():
            try:
                await self.cache.source(source_name).release(keys)
            except MeshError as exc:
                _log.warning("release failed (the source drops it when it next pushes)", error=str(exc)[:300])
        return idle

    # ---- collection of idle clusters ---------------------------------------------------------------------

    def activity(self, node_id: str, used: Iterable[str], aborts: int = 0) -> bool:
        """A metrics report of `node_id` arrived (here, or relayed by the server that got it): `used` are the VIPs
        it shows requests to. Only Envoy delta sessions of that node on this server learn from it (what they hold
        is what can be collected); `aborts`: its outbound listener's fault aborts (junk Hosts the known-VIPs guard
        answered). False when no session of the node is here (the report is for another server)."""
        idle_s = self.settings.cluster_idle_s
        sessions = self._by_node.get(bounded(node_id, MAX_NODE_ID_CHARS)) if idle_s > 0 else None
        if not sessions:
            return False
        used = tuple(used)
        for session in sessions:
            if session.view.kind != ENVOY_KIND:
                continue
            if session.idle is None:
                session.idle = IdleBook(idle_s, self.settings.idle_report_gap_s)
            session.idle.report(used)
            session.reports += 1
            session.aborts += aborts
        return True

    def collect_idle(self) -> int:
        """Collect, from every session with evidence, the clusters of the VIPs it has not used for the idle time
        (meshactors.xds.delta.DeltaStream.collect); how many VIPs were collected."""
        collected = 0
        for session in list(self._sessions.values()):
            book = session.idle
            if book is None or session.closed or not isinstance(session.machine, DeltaStream):
                continue
            due = book.idle(session.machine.collectable())
            if due:
                collected += len(due)
                self._spawn(self._collect(session, due))
        return collected

    async def _collect(self, session: Session, vips: list[str]) -> None:
        if session.closed:
            return
        responses: list[Any] = []
        for vip in vips:
            out = session.machine.collect(vip)
            if not out:
                continue
            responses.extend(out)
            self.counters.clusters_collected += 1
            if session.idle is not None:
                session.idle.forget(vip)
            session.slog.info("idle clusters collected", vip=bounded(vip))
        if not responses:
            return
        self._pushed_interest(session, [])
        try:
            await self._send(session, responses)  # after what its writer holds, in the order computed
        except Exception as exc:  # the stream is gone; its handler cleans up
            session.slog.debug("collection on a closed stream dropped", error=bounded(repr(exc)))

    async def pin(self, source_name: str, keys: Iterable[str]) -> None:
        """Hold `keys` of a source whether or not a session wants them (e.g. what a source learns from), fetched
        now; a failed fetch is retried like a session's. Pinned keys are never evicted."""
        wanted = [(source_name, key) for key in keys]
        self._pinned.update(wanted)
        missing = [h for h in wanted if h not in self.cache]
        if missing:
            await self._fetch(missing)

    # ---- introspection -------------------------------------------------------------------------------------

    @staticmethod
    def _caught_up(session: Session, held: HeldKey) -> bool:
        """True when the session has ACKed what the host holds of every name of `held` it subscribed (a name
        absent at the source: when it ACKed holding none), or holds none of them any more."""
        names = session.keys.get(held)
        if not names or session.closed:
            return True
        if not session.pending.isdisjoint(names):
            return False
        retired = session.machine.retired if isinstance(session.machine, DeltaStream) else None
        for type_url, name in names:
            if retired is not None and retired(type_url, name):
                continue  # collected: the client is not meant to hold it
            res = session.view.get(type_url, name)
            expected = res.version if res is not None and res.body is not None else None
            if session.machine.acked_version(type_url, name) != expected:
                return False
        return True

    def lagging(self, session: Session) -> bool:
        """True while the session has not ACKed the version this host holds of every name it subscribed."""
        if session.pending:
            return True
        for t in session.machine.statistics().types:
            if getattr(t, "unacked", None) or getattr(t, "unacked_version_info", None):
                return True
            acked = dict(t.acked)
            for name in getattr(t, "subscribed", None) or getattr(t, "names", ()):
                res = session.view.get(t.type_url, name)
                if res is not None and acked.get(name) != res.version:
                    return True
        return False

    def convergence(self) -> Convergence:
        versions = {
            f"{src}/{key}": {" ".join(k): v for k, v in snap.versions().items()}
            for (src, key) in self.cache.keys()
            if (snap := self.cache.snapshot((src, key))) is not None
        }
        return Convergence(
            sessions=len(self._sessions),
            lagging=tuple(s.stream_id for s in self._sessions.values() if self.lagging(s)),
            versions=versions,
        )

    def statistics(self, sessions: bool = True) -> HostStatistics:
        held: dict[str, int] = {}
        for key in self.cache.keys():
            snap = self.cache.snapshot(key)
            for res in snap.resources if snap is not None else ():
                held[res.type_url] = held.get(res.type_url, 0) + 1
        return HostStatistics(
            server=self.name,
            ready=self.ready.is_set(),
            incarnation=self.incarnation,
            sessions=len(self._sessions),
            snapshots_held=len(self.cache),
            keys_pinned=len(self._pinned),
            **asdict(self.counters),
            streams=tuple(self.session_statistics(s) for s in self._sessions.values()) if sessions else (),
            resources_held_by_type=held,
            converging=len(self.converging),
            convergence_abandoned=self.converging.abandoned,
            convergence_time=self.converging.histogram.data(),
            fetch_time=self.fetch_time.data(),
        )

    def client_status(
        self,
        match: Callable[[str], bool] | None = None,
        *,
        contents: bool = True,
        max_clients: int = MAX_STATUS_CLIENTS,
        max_resources: int = MAX_STATUS_RESOURCES,
        max_content_bytes: int = MAX_STATUS_CONTENT_BYTES,
    ) -> ClientStatusAnswer:
        """The sync status of every session whose node id `match`es (all when None), per type URL and resource,
        with the resources' contents unless `contents` is False; bounded as ClientStatusAnswer says."""
        served = set(self.cache.type_urls())

        def loaded(type_url: str, name: str) -> bool:
            return type_url in served and self.cache.locate(type_url, name) in self.cache

        clients: list[ClientSync] = []
        omitted_clients = omitted_resources = omitted_contents = 0
        resources_left, bytes_left = max_resources, max_content_bytes
        for session in sorted(self._sessions.values(), key=lambda s: (s.node_id, s.stream_id)):
            if match is not None and not match(session.node_id):
                continue
            if len(clients) >= max_clients:
                omitted_clients += 1
                continue
            protocol = asdict(session.machine.statistics())
            resources: list[ResourceSync] = []
            for t in protocol["types"]:
                for res in resource_sync(t, session.view.get, loaded, contents=contents):
                    if resources_left <= 0:
                        omitted_resources += 1
                        continue
                    size = len(res.body or b"") + len(res.nack_body or b"")
                    if size > bytes_left:
                        omitted_contents += 1
                        res = dataclasses.replace(res, body=None, nack_body=None)
                    else:
                        bytes_left -= size
                    resources_left -= 1
                    resources.append(res)
            clients.append(
                ClientSync(
                    server=self.name,
                    stream_id=session.stream_id,
                    node_id=session.node_id,
                    kind=session.kind,
                    client_kind=session.view.kind or DEFAULT_KIND,
                    peer=session.peer,
                    opened_at=session.opened_at,
                    types=session_sync(protocol),
                    resources=tuple(resources),
                )
            )
        return ClientStatusAnswer(tuple(clients), omitted_clients, omitted_resources, omitted_contents)

    def session_policies(self, session: Session, limit: int = MAX_SESSION_POLICIES) -> tuple[list[SessionPolicy], int]:
        """The policy the session holds for each key it holds whose snapshot was compiled from one (at most `limit`,
        in key order), as its client kind reads it; and how many more there are."""
        out: list[SessionPolicy] = []
        omitted = 0
        for held in sorted(session.keys):
            snap = self.cache.snapshot(held)
            if snap is None or snap.policy is None:
                continue
            if len(out) >= limit:
                omitted += 1
                continue
            variant = snap.policy.variant_for(session.view.kind)
            out.append(
                SessionPolicy(
                    vip=held[1],
                    policy=snap.policy.digest,
                    variant=variant.kind,
                    left_out=variant.left_out,
                    revisions=dict(snap.policy.revisions),
                )
            )
        return out, omitted

    def session_statistics(self, session: Session) -> SessionStatistics:
        policies, omitted = self.session_policies(session)
        return SessionStatistics(
            stream_id=session.stream_id,
            node_id=session.node_id,
            kind=session.kind,
            client_kind=session.view.kind or DEFAULT_KIND,
            peer=session.peer,
            opened_at=session.opened_at,
            resources_sent=session.resources_sent,
            bad_messages=session.bad_messages,
            protocol=asdict(session.machine.statistics()),
            zone=session.view.zone,
            policies=tuple(policies),
            policies_omitted=omitted,
            metrics_reports=session.reports,
            outbound_aborts=session.aborts,
        )
