"""XdsHost: the ADS server of one process: one lightweight session per stream (state machine + lock) over a
ResourceCache filled on demand from the snapshot side. No Ray here: the runtime wraps it in an actor."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import grpc

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.envoy.codec import ads_generic_handler
from meshactors.errors import MeshError
from meshactors.snapshot.builder import VipResources
from meshactors.xds.cache import ResourceCache, validate_name, vip_of
from meshactors.xds.delta import DeltaStream
from meshactors.xds.sotw import SotwStream
from meshactors.xds.types import (
    CLUSTER,
    LISTENER,
    WILDCARD,
    DeltaRequest,
    Limits,
    SotwRequest,
)

_log = log.get("xds.host")


class SnapshotSource(Protocol):
    """Where a host gets VIP resources: the snapshot builders (over direct gRPC in production)."""

    async def subscribe(self, vips: list[str]) -> list[VipResources]: ...

    async def unsubscribe(self, vips: list[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class HostSettings:
    limits: Limits = field(default_factory=Limits)
    max_new_streams_per_s: float = 1000.0
    fetch_timeout_s: float = 5.0
    unsubscribe_grace_s: float = 30.0


class _TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Session:
    """One ADS stream: its state machine, the VIPs it holds interest in, and the changes waiting for it.

    Requests are handled as they are read; changes are written by a short-lived push task scheduled only
    when something changed. A lock keeps one writer at a time, so responses go out in the order computed.
    An idle session holds no task and no queue of its own: it costs the stream, the state machine, and this.
    """

    __slots__ = (
        "bad_messages", "closed", "context", "kind", "lock", "machine", "node_id", "opened_at", "peer",
        "pending", "push_scheduled", "resources_sent", "stream_id", "vips",
    )  # fmt: skip

    def __init__(self, kind: str, stream_id: str, machine: Any, context: grpc.aio.ServicerContext) -> None:
        self.kind = kind
        self.stream_id = stream_id
        self.machine = machine
        self.context = context
        self.lock = asyncio.Lock()
        self.node_id = ""
        self.peer = context.peer()
        self.opened_at = time.time()
        self.pending: set[tuple[str, str]] = set()
        self.push_scheduled = False
        self.closed = False
        self.vips: dict[str, set[tuple[str, str]]] = {}
        self.resources_sent = 0
        self.bad_messages = 0

    @property
    def slog(self) -> Any:
        """A logger bound to this stream (built when needed: an idle session keeps no logger of its own)."""
        return _log.bind(stream=self.stream_id, kind=self.kind, peer=self.peer, node_id=self.node_id)

    async def write(self, responses: Iterable[Any]) -> None:
        for resp in responses:
            self.resources_sent += len(resp.resources)
            await self.context.write(resp)


class XdsHost:
    def __init__(self, name: str, source: SnapshotSource, settings: HostSettings | None = None) -> None:
        self.name = name
        self.source = source
        self.settings = settings or HostSettings()
        self.cache = ResourceCache()
        self.ready = asyncio.Event()
        self.incarnation = secrets.token_hex(6)
        self._sessions: dict[str, Session] = {}
        self._vip_sessions: dict[str, set[Session]] = {}
        self._idle_since: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._bucket = _TokenBucket(self.settings.max_new_streams_per_s)
        self._ids = itertools.count(1)
        self._tasks = TaskSet()
        self.counters = {"streams": 0, "refused_not_ready": 0, "refused_rate": 0, "nacks": 0, "fetch_failures": 0}

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return ads_generic_handler(self.delta, self.sotw)

    # ---- streams -------------------------------------------------------------------------------------------

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        if not self.ready.is_set():
            self.counters["refused_not_ready"] += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"xDS server {self.name} is still loading; retry")
        if not self._bucket.take():
            self.counters["refused_rate"] += 1
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"xDS server {self.name} accepts at most {self.settings.max_new_streams_per_s:g} new streams/s",
            )

    async def delta(self, requests: AsyncIterator[DeltaRequest], context: grpc.aio.ServicerContext) -> None:
        await self._admit(context)
        stream_id = f"{self.name}-{next(self._ids)}"
        machine = DeltaStream(self.cache, self.settings.limits, stream_id, validate_name)
        await self._serve(Session("delta", stream_id, machine, context), requests)

    async def sotw(self, requests: AsyncIterator[SotwRequest], context: grpc.aio.ServicerContext) -> None:
        await self._admit(context)
        stream_id = f"{self.name}-{next(self._ids)}"
        machine = SotwStream(self.cache, self.settings.limits, stream_id, validate_name)
        await self._serve(Session("sotw", stream_id, machine, context), requests)

    async def _serve(self, session: Session, requests: AsyncIterator[Any]) -> None:
        self._sessions[session.stream_id] = session
        self.counters["streams"] += 1
        try:
            async for req in requests:  # gRPC flow control slows a client that sends faster than we handle
                if req.node is not None and not session.node_id:
                    session.node_id = req.node.id
                    session.slog.info("stream opened")
                async with session.lock:
                    await session.write(self._on_request(session, req))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken stream ends the session like a closed one
            session.slog.debug("stream ended", error=repr(exc))
        finally:
            session.closed = True
            self._close(session)
            session.slog.info("stream closed", resources_sent=session.resources_sent)

    def notify(self, session: Session, changed: Iterable[tuple[str, str]]) -> None:
        """Changes for a session: one push task is scheduled; further changes join it (latest wins)."""
        session.pending.update(changed)
        if not session.push_scheduled and not session.closed:
            session.push_scheduled = True
            self._spawn(self._push(session))

    async def _push(self, session: Session) -> None:
        async with session.lock:
            session.push_scheduled = False
            if session.closed or not session.pending:
                return
            changed, session.pending = session.pending, set()
            try:
                await session.write(session.machine.on_update(changed))
            except Exception as exc:  # the stream is gone; its handler cleans up
                session.slog.debug("push to a closed stream dropped", error=repr(exc))

    def _speculate(self, req: Any) -> list[str]:
        """A VIP not held yet gets its Cluster and Listener at once: they do not depend on the registry.

        Envoy then asks for the endpoints while we fetch them, so the fetch overlaps its round trip.
        """
        if req.type_url not in (CLUSTER, LISTENER):
            return []
        names = req.subscribe if isinstance(req, DeltaRequest) else req.resource_names
        fresh = []
        for name in names:
            if validate_name(req.type_url, name) is None:
                vip = vip_of(req.type_url, name)
                if self.cache.provisional(vip):
                    fresh.append(vip)
        return fresh

    def _on_request(self, session: Session, req: Any) -> list[Any]:
        speculated = self._speculate(req)
        try:
            return self._handle_request(session, req)
        finally:
            for vip in speculated:  # names the stream did not keep (refused, over a bound) are not held
                if vip not in self._vip_sessions and vip not in self._inflight:
                    self.cache.drop_provisional(vip)

    def _handle_request(self, session: Session, req: Any) -> list[Any]:
        try:
            outcome = session.machine.on_request(req)
        except MeshError as exc:  # one bad message does not end the stream
            session.bad_messages += 1
            session.slog.warning("bad request ignored", error=str(exc), type_url=req.type_url)
            return []
        if outcome.nack is not None:
            self.counters["nacks"] += 1
            session.slog.warning(
                "NACK",
                type_url=outcome.nack.type_url,
                error=outcome.nack.message,
                rejected=list(outcome.nack.rejected),
            )
        for rej in outcome.rejected:
            session.slog.warning("subscription refused", type_url=rej.type_url, name=rej.name, reason=rej.reason)
        for type_url, name in outcome.interest_removed:
            if name != WILDCARD:
                self._release(session, vip_of(type_url, name), (type_url, name))
        wanted = [(t, n) for t, n in outcome.interest_added if n != WILDCARD]
        if wanted:
            vips = set()
            for type_url, name in wanted:
                vip = vip_of(type_url, name)
                session.vips.setdefault(vip, set()).add((type_url, name))
                self._vip_sessions.setdefault(vip, set()).add(session)
                self._idle_since.pop(vip, None)
                vips.add(vip)
            missing = [v for v in vips if v not in self.cache]
            if missing:
                # fetched in the background: the stream goes on (e.g. Envoy's EDS request for the same VIP)
                self._spawn(self._fetch_then_notify(session, missing, wanted, session.slog))
            else:
                self.notify(session, wanted)
        return list(outcome.responses)

    async def _fetch_then_notify(
        self, session: Session, vips: list[str], wanted: list[tuple[str, str]], slog: Any
    ) -> None:
        await self._fetch(vips, slog)
        # names the cache could not fill are looked at again (sent, or removed if the client held them)
        self.notify(session, wanted)

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    async def _fetch(self, vips: list[str], slog: Any) -> None:
        """Get resources for VIPs not in the cache; concurrent asks for one VIP share one fetch."""
        waits = [self._inflight[v] for v in vips if v in self._inflight]
        todo = [v for v in vips if v not in self._inflight]
        if todo:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for v in todo:
                self._inflight[v] = fut
            try:
                got = await asyncio.wait_for(self.source.subscribe(todo), self.settings.fetch_timeout_s)
                self.apply(got)
                fut.set_result(None)
            except (MeshError, TimeoutError) as exc:
                self.counters["fetch_failures"] += 1
                slog.warning("could not fetch VIP resources; the names stay subscribed", vips=todo, error=str(exc))
                fut.set_result(None)
                asyncio.get_running_loop().call_later(1.0, self._retry, todo)
            finally:
                for v in todo:
                    self._inflight.pop(v, None)
        if waits:
            await asyncio.gather(*waits)

    def _retry(self, vips: list[str]) -> None:
        still = [v for v in vips if v in self._vip_sessions and v not in self.cache]
        if still:
            self._spawn(self._fetch(still, _log.bind(retry=True)))

    def _release(self, session: Session, vip: str, key: tuple[str, str]) -> None:
        names = session.vips.get(vip)
        if names is None:
            return
        names.discard(key)
        if names:
            return
        del session.vips[vip]
        holders = self._vip_sessions.get(vip)
        if holders is not None:
            holders.discard(session)
            if not holders:
                del self._vip_sessions[vip]
                self._idle_since[vip] = time.monotonic()

    def _close(self, session: Session) -> None:
        self._sessions.pop(session.stream_id, None)
        for vip in list(session.vips):
            for key in list(session.vips.get(vip, ())):
                self._release(session, vip, key)

    # ---- pushes from the snapshot side ---------------------------------------------------------------------

    def apply(self, resources: Iterable[VipResources]) -> list[str]:
        """New resources for VIPs; notifies the sessions holding them. Returns the VIPs nobody here wants."""
        unwanted = []
        for res in resources:
            if res.vip not in self._vip_sessions and res.vip not in self._inflight and res.vip not in self.cache:
                unwanted.append(res.vip)
                continue
            changed = self.cache.apply(res)
            if changed:
                for session in self._vip_sessions.get(res.vip, ()):
                    self.notify(session, changed)
        return unwanted

    async def evict_idle(self) -> list[str]:
        """Forget VIPs no session has wanted for the grace period; tell the snapshot side."""
        now = time.monotonic()
        idle = [v for v, t in self._idle_since.items() if now - t >= self.settings.unsubscribe_grace_s]
        for vip in idle:
            del self._idle_since[vip]
            self.cache.evict(vip)
        if idle:
            try:
                await self.source.unsubscribe(idle)
            except MeshError as exc:
                _log.warning("unsubscribe failed (the builder drops it when it next pushes)", error=str(exc))
        return idle

    # ---- introspection -------------------------------------------------------------------------------------

    def lagging(self, session: Session) -> bool:
        """True while the session has not ACKed the version this host holds of every name it subscribed."""
        if session.pending:
            return True
        for t in session.machine.statistics().types:
            if getattr(t, "unacked", None) or getattr(t, "unacked_version_info", None):
                return True
            acked = dict(t.acked)
            for name in getattr(t, "subscribed", None) or getattr(t, "names", ()):
                res = self.cache.get(t.type_url, name)
                if res is not None and acked.get(name) != res.version:
                    return True
        return False

    def convergence(self) -> dict[str, Any]:
        """Which sessions still lag behind this host's resources, and the versions the host holds."""
        return {
            "sessions": len(self._sessions),
            "lagging": [s.stream_id for s in self._sessions.values() if self.lagging(s)],
            "versions": self.cache.versions(),
        }

    def statistics(self, sessions: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "server": self.name,
            "ready": self.ready.is_set(),
            "incarnation": self.incarnation,
            "sessions": len(self._sessions),
            "vips_cached": len(self.cache),
            **self.counters,
        }
        if sessions:
            out["streams"] = [self.session_statistics(s) for s in self._sessions.values()]
        return out

    @staticmethod
    def session_statistics(session: Session) -> dict[str, Any]:
        stats = asdict(session.machine.statistics())
        return {
            "stream_id": session.stream_id,
            "node_id": session.node_id,
            "kind": session.kind,
            "peer": session.peer,
            "opened_at": session.opened_at,
            "resources_sent": session.resources_sent,
            "bad_messages": session.bad_messages,
            "protocol": stats,
        }
