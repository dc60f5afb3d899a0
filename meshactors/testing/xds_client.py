"""A checking xDS client for tests: ADS requests out over grpc.aio, responses in, each checked for invariants."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import grpc

from meshactors.auth.model import Identity, Role, TokenRecord, mint, parse, verify
from meshactors.envoy.codec import delta_ads_stream, sotw_ads_stream
from meshactors.errors import Unavailable
from meshactors.xds.types import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    WILDCARD,
    DeltaRequest,
    DeltaResponse,
    ErrorDetail,
    Node,
    SotwRequest,
    SotwResponse,
    VersionedResource,
)

# Kinds of invariant violation (InvariantViolation.kind).
NONCE_EMPTY = "nonce-empty"
NONCE_REUSED = "nonce-reused"
DUPLICATE_NAME = "duplicate-name"
WRONG_TYPE_URL = "wrong-type-url"
NOT_SUBSCRIBED = "not-subscribed"
RESENT_UNCHANGED = "resent-unchanged"
RESENT_REJECTED = "resent-rejected"
EDS_BEFORE_CDS = "eds-before-cds"
ANSWERED_ACK = "answered-ack"

# google.rpc.Code INVALID_ARGUMENT, what Envoy and gRPC put in a NACK.
NACK_CODE = 3

Response = DeltaResponse | SotwResponse


class InvariantViolation(AssertionError):
    """A response broke an xDS protocol invariant (design.md section 5)."""

    def __init__(self, kind: str, message: str, response: Response | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.response = response


# ------------------------------------------------------------------------------------------ checkers


class InvariantChecker:
    """Base of the checkers: nonce rules across every stream seen, and recording of violations.

    Feed it every request sent (`on_request`) and every response received (`on_response`); call
    `start_stream` when a new stream opens (nonces seen on earlier streams stay remembered). A response
    with violations records them all in `violations`, then raises the first (unless `raise_on_violation`
    is False).
    """

    def __init__(self, seen_nonces: set[str] | None = None, raise_on_violation: bool = True) -> None:
        self.seen_nonces: set[str] = seen_nonces if seen_nonces is not None else set()
        self.raise_on_violation = raise_on_violation
        self.violations: list[InvariantViolation] = []
        self.streams = 0
        self.start_stream()

    def start_stream(self) -> None:
        self.streams += 1

    def _common(self, resp: Response, names: list[str], found: list[InvariantViolation]) -> None:
        if not resp.nonce:
            found.append(InvariantViolation(NONCE_EMPTY, f"{resp.type_url} response has no nonce", resp))
        elif resp.nonce in self.seen_nonces:
            found.append(InvariantViolation(NONCE_REUSED, f"nonce {resp.nonce!r} was used before", resp))
        else:
            self.seen_nonces.add(resp.nonce)
        for name, count in collections.Counter(names).items():
            if count > 1:
                found.append(InvariantViolation(DUPLICATE_NAME, f"{name!r} appears {count} times", resp))
        for res in resp.resources:
            if res.type_url != resp.type_url:
                found.append(
                    InvariantViolation(
                        WRONG_TYPE_URL, f"{res.name!r} is a {res.type_url} in a {resp.type_url} response", resp
                    )
                )

    def _report(self, found: list[InvariantViolation]) -> None:
        self.violations.extend(found)
        if found and self.raise_on_violation:
            raise found[0]


@dataclass
class _DeltaTypeView:
    wildcard: bool = False
    subscribed: set[str] = field(default_factory=set)
    # name -> (version, aliases or None when unknown) the client holds.
    has: dict[str, tuple[str, tuple[str, ...] | None]] = field(default_factory=dict)
    received: set[str] = field(default_factory=set)
    rejected: set[tuple[str, str]] = field(default_factory=set)
    # Clusters updated (a new version over one the client held): Envoy warms them until their assignment comes
    # again, so the server must resend it even when unchanged (only meaningful on the Cluster type's view).
    warming: set[str] = field(default_factory=set)
    # nonce -> [(name, what the client held before)] for responses not ACKed/NACKed yet.
    in_flight: dict[str, list[tuple[str, tuple[str, tuple[str, ...] | None] | None, str | None]]] = field(
        default_factory=dict
    )


class DeltaInvariantChecker(InvariantChecker):
    """Checks delta ADS responses against what the client subscribed to and holds."""

    def start_stream(self) -> None:
        super().start_stream()
        self._types: dict[str, _DeltaTypeView] = {}

    def on_request(self, req: DeltaRequest) -> None:
        first = req.type_url not in self._types
        t = self._types.setdefault(req.type_url, _DeltaTypeView())
        if first and not req.subscribe:
            t.wildcard = True
        for name in req.subscribe:
            if name == WILDCARD:
                t.wildcard = True
            else:
                t.subscribed.add(name)
        for name in req.unsubscribe:
            if name == WILDCARD:
                t.wildcard = False
                for held in [n for n in t.has if n not in t.subscribed]:
                    t.has.pop(held)
                    t.received.discard(held)
            else:
                t.subscribed.discard(name)
                if not t.wildcard:
                    t.has.pop(name, None)
                    t.received.discard(name)
        if first:
            for name, version in req.initial_resource_versions.items():
                t.has[name] = (version, None)
                t.received.add(name)
        entry = t.in_flight.pop(req.response_nonce, None) if req.response_nonce else None
        if entry is not None and req.error_detail is not None:
            for name, before, version in entry:
                if version is not None:
                    t.rejected.add((name, version))
                if before is None:
                    t.has.pop(name, None)
                else:
                    t.has[name] = before

    def on_response(self, resp: DeltaResponse) -> None:
        found: list[InvariantViolation] = []
        self._common(resp, [r.name for r in resp.resources] + list(resp.removed), found)
        t = self._types.setdefault(resp.type_url, _DeltaTypeView())
        clusters = self._types.get(CLUSTER)
        for res in resp.resources:
            if not t.wildcard and res.name not in t.subscribed and not t.subscribed.intersection(res.aliases):
                found.append(InvariantViolation(NOT_SUBSCRIBED, f"{res.name!r} was never subscribed", resp))
            held = t.has.get(res.name)
            if resp.type_url == CLUSTER and held is not None and held[0] != res.version:
                t.warming.add(res.name)
            resent_for_warming = resp.type_url == ENDPOINT and clusters is not None and res.name in clusters.warming
            if resent_for_warming:
                clusters.warming.discard(res.name)  # type: ignore[union-attr]
            elif held is not None and held[0] == res.version and held[1] in (None, res.aliases):
                found.append(
                    InvariantViolation(
                        RESENT_UNCHANGED, f"{res.name!r} version {res.version} re-sent; the client has it", resp
                    )
                )
            if (res.name, res.version) in t.rejected:
                found.append(
                    InvariantViolation(
                        RESENT_REJECTED, f"{res.name!r} version {res.version} was NACKed and is sent again", resp
                    )
                )
            if (
                resp.type_url == ENDPOINT
                and clusters is not None
                and res.name in clusters.subscribed
                and res.name not in clusters.received
            ):
                found.append(InvariantViolation(EDS_BEFORE_CDS, f"endpoints of {res.name!r} before its cluster", resp))
        entry: list[tuple[str, tuple[str, tuple[str, ...] | None] | None, str | None]] = []
        for res in resp.resources:
            entry.append((res.name, t.has.get(res.name), res.version))
            t.has[res.name] = (res.version, res.aliases)
            t.received.add(res.name)
        for name in resp.removed:
            entry.append((name, t.has.pop(name, None), None))
            t.received.discard(name)
        if resp.nonce:
            t.in_flight[resp.nonce] = entry
        self._report(found)


@dataclass
class _SotwTypeView:
    wildcard: bool = False
    legacy: bool = False
    names: set[str] = field(default_factory=set)
    names_changed: bool = True
    last_nonce: str = ""
    last_content: frozenset[tuple[str, str]] | None = None
    nacked: set[frozenset[tuple[str, str]]] = field(default_factory=set)
    received: set[str] = field(default_factory=set)


class SotwInvariantChecker(InvariantChecker):
    """Checks SotW ADS responses against the names requested and the responses before them."""

    def start_stream(self) -> None:
        super().start_stream()
        self._types: dict[str, _SotwTypeView] = {}

    def on_request(self, req: SotwRequest) -> None:
        first = req.type_url not in self._types
        t = self._types.setdefault(req.type_url, _SotwTypeView())
        legacy = not req.resource_names and (first or t.legacy)
        wildcard = legacy or WILDCARD in req.resource_names
        names = set(req.resource_names) - {WILDCARD}
        if (names, wildcard) != (t.names, t.wildcard):
            t.names_changed = True
        t.names, t.wildcard, t.legacy = names, wildcard, legacy
        if req.error_detail is not None and req.response_nonce and req.response_nonce == t.last_nonce:
            if t.last_content is not None:
                t.nacked.add(t.last_content)

    def on_response(self, resp: SotwResponse) -> None:
        found: list[InvariantViolation] = []
        self._common(resp, [r.name for r in resp.resources], found)
        t = self._types.setdefault(resp.type_url, _SotwTypeView())
        content = frozenset((r.name, r.version) for r in resp.resources)
        if content in t.nacked:
            found.append(
                InvariantViolation(RESENT_REJECTED, f"content {resp.version_info} was NACKed and is sent again", resp)
            )
        elif t.last_content == content and not t.names_changed:
            found.append(
                InvariantViolation(
                    ANSWERED_ACK, f"{resp.type_url} response repeats unchanged content with no new request", resp
                )
            )
        clusters = self._types.get(CLUSTER)
        for res in resp.resources:
            if not t.wildcard and res.name not in t.names:
                found.append(InvariantViolation(NOT_SUBSCRIBED, f"{res.name!r} was never requested", resp))
            if (
                resp.type_url == ENDPOINT
                and clusters is not None
                and res.name in clusters.names
                and res.name not in clusters.received
            ):
                found.append(InvariantViolation(EDS_BEFORE_CDS, f"endpoints of {res.name!r} before its cluster", resp))
        t.last_nonce = resp.nonce
        t.last_content = content
        t.names_changed = False
        t.received = {r.name for r in resp.resources}
        self._report(found)


# ------------------------------------------------------------------------------------------- tokens


class StaticTokens:
    """The token check of an xDS host run in a test process (no etcd): tokens minted here, `revoke` forgets one
    (and tells the host, when given, as the runtime's token table does)."""

    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.on_revoked: Callable[[str], object] | None = None

    def mint(self, role: Role = Role.PROXY, *, node: str = "", service: str = "") -> tuple[str, TokenRecord]:
        token, record = mint(role, node=node, service=service)
        self.records[record.id] = record
        return token, record

    def revoke(self, token_id: str) -> None:
        if self.records.pop(token_id, None) is not None and self.on_revoked is not None:
            self.on_revoked(token_id)

    def __call__(self, token: str) -> Identity:
        token_id, secret = parse(token)
        return verify(self.records.get(token_id), secret)


# ------------------------------------------------------------------------------------------- clients

ReqT = TypeVar("ReqT", DeltaRequest, SotwRequest)
RespT = TypeVar("RespT", DeltaResponse, SotwResponse)


class _AdsClient(Generic[ReqT, RespT]):
    """Stream plumbing shared by the delta and SotW clients: send queue, reader task, waiting.

    `token` is sent as `authorization: Bearer <token>` metadata on every stream it opens, `metadata` as given
    (a token in the node's metadata, as proxyless gRPC sends it, is `Node(..., token=...)`)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        node: Node,
        *,
        nack_when: Callable[[RespT], str | None] | None = None,
        timeout: float = 5.0,
        strict: bool = True,
        token: str = "",
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.channel = channel
        self.node = node
        self.metadata = (*((("authorization", f"Bearer {token}"),) if token else ()), *metadata)
        self.nack_when = nack_when
        self.timeout = timeout
        self.strict = strict
        self.requests: list[ReqT] = []
        self.responses: list[RespT] = []
        self._held: dict[str, dict[str, VersionedResource]] = {}
        self._queue: asyncio.Queue[ReqT | None] | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._reader: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._ended = False
        self._closing = False
        self._node_sent = False
        self._changed = asyncio.Event()

    # Subclasses provide these.
    @property
    def checker(self) -> InvariantChecker:
        raise NotImplementedError

    def _multicallable(self) -> grpc.aio.StreamStreamMultiCallable:
        raise NotImplementedError

    def _check_request(self, req: ReqT) -> None:
        raise NotImplementedError

    def _check_response(self, resp: RespT) -> None:
        raise NotImplementedError

    def _handle(self, resp: RespT) -> None:
        raise NotImplementedError

    def _replay(self) -> None:
        raise NotImplementedError

    # -------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> _AdsClient[ReqT, RespT]:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open a stream; on a reconnect, re-send every subscription with what the client holds."""
        if self._call is not None:
            raise RuntimeError("stream already open; use reconnect()")
        self.checker.start_stream()
        self._error = None
        self._ended = False
        self._closing = False
        self._node_sent = False
        queue: asyncio.Queue[ReqT | None] = asyncio.Queue()
        self._queue = queue
        self._call = self._multicallable()(self._request_iterator(queue), metadata=self.metadata or None)
        self._reader = asyncio.create_task(self._read(self._call))
        self._replay()

    async def close(self) -> None:
        """End the stream (cancels the call) and wait for the reader, never longer than `timeout`."""
        self._closing = True
        if self._queue is not None:
            self._queue.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader], timeout=self.timeout)
        self._call = None
        self._reader = None
        self._queue = None

    async def reconnect(self, channel: grpc.aio.Channel | None = None) -> None:
        """Close the stream and open a new one (on `channel` if given) as Envoy does after a restart."""
        await self.close()
        if channel is not None:
            self.channel = channel
        await self.connect()

    @staticmethod
    async def _request_iterator(queue: asyncio.Queue[ReqT | None]) -> AsyncIterator[ReqT]:
        while (req := await queue.get()) is not None:
            yield req

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            async for resp in call:
                self.responses.append(resp)
                try:
                    self._check_response(resp)
                except InvariantViolation:
                    pass  # recorded in checker.violations; raised by the next wait
                self._handle(resp)
                self._notify()
        except asyncio.CancelledError:
            if not self._closing:
                raise
        except grpc.aio.AioRpcError as exc:
            if not self._closing:
                self._error = exc
        except Exception as exc:
            self._error = exc
        finally:
            self._ended = True
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _node_once(self) -> Node | None:
        if self._node_sent:
            return None
        self._node_sent = True
        return self.node

    def _send(self, req: ReqT) -> None:
        if self._queue is None or self._ended:
            raise Unavailable("ADS stream is not open")
        self._check_request(req)
        self.requests.append(req)
        self._queue.put_nowait(req)

    # --------------------------------------------------------------------------------- queries

    def resources(self, type_url: str) -> dict[str, VersionedResource]:
        """What the client holds now for a type URL, by resource name."""
        return dict(self._held.get(type_url, {}))

    @property
    def violations(self) -> list[InvariantViolation]:
        return self.checker.violations

    @property
    def ended_with(self) -> grpc.StatusCode | None:
        """The status the server ended the stream with (None while it is open or when it ended cleanly)."""
        return self._error.code() if isinstance(self._error, grpc.aio.AioRpcError) else None

    async def wait_ended(self, timeout: float | None = None) -> grpc.StatusCode | None:  # noqa: ASYNC109
        """Until the server ends the stream; returns its status (raises TimeoutError if it stays open)."""
        await self._until(lambda: self._ended, "the stream to end", timeout)
        return self.ended_with

    def _find(self, type_url: str, name: str) -> VersionedResource | None:
        held = self._held.get(type_url, {})
        res = held.get(name)
        if res is not None:
            return res
        return next((r for r in held.values() if name in r.aliases), None)

    def _raise_if_failed(self) -> None:
        if self.strict and self.checker.violations:
            raise self.checker.violations[0]
        if self._error is not None:
            if isinstance(self._error, grpc.aio.AioRpcError):
                raise Unavailable(
                    f"ADS stream failed: {self._error.code().name} {self._error.details()}"
                ) from self._error
            raise Unavailable(f"ADS stream reader failed: {self._error!r}") from self._error
        if self._ended and not self._closing:
            raise Unavailable("ADS stream ended by the server")
        if self._call is None:
            raise Unavailable("ADS stream is not open")

    async def _until(self, ready: Callable[[], object], what: str, seconds: float | None) -> object:
        limit = self.timeout if seconds is None else seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            result = ready()
            if result:
                return result
            self._raise_if_failed()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"waited {limit:.3f}s for {what}; holding "
                    f"{ {t: sorted(h) for t, h in self._held.items()} }, {len(self.responses)} responses"
                )
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_for(
        self,
        type_url: str,
        name: str,
        predicate: Callable[[VersionedResource], bool] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - built in so that a test can never hang
    ) -> VersionedResource:
        """The held resource `name` (or one aliased to it) once it satisfies `predicate`; raises on timeout."""

        def ready() -> VersionedResource | None:
            res = self._find(type_url, name)
            return res if res is not None and (predicate is None or predicate(res)) else None

        result = await self._until(ready, f"{type_url} {name!r}", timeout)
        assert isinstance(result, VersionedResource)
        return result

    async def wait_for_absent(
        self,
        type_url: str,
        name: str,
        timeout: float | None = None,  # noqa: ASYNC109 - built in so that a test can never hang
    ) -> None:
        """Until the client no longer holds `name` (removed or omitted); raises on timeout."""
        await self._until(lambda: self._find(type_url, name) is None, f"{type_url} {name!r} absent", timeout)

    async def wait_for_response(
        self,
        predicate: Callable[[RespT], bool],
        since: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - built in so that a test can never hang
    ) -> RespT:
        """The first response at index >= `since` of `responses` that satisfies `predicate`."""

        def ready() -> list[RespT]:
            return [r for r in self.responses[since:] if predicate(r)][:1]

        result = await self._until(ready, "a matching response", timeout)
        assert isinstance(result, list)
        return result[0]

    async def expect_silence(self, seconds: float, type_url: str | None = None) -> None:
        """Raise AssertionError if any response (of `type_url`, if given) arrives within `seconds`."""
        since = len(self.responses)
        await asyncio.sleep(seconds)
        self._raise_if_failed()
        extra = [r for r in self.responses[since:] if type_url is None or r.type_url == type_url]
        if extra:
            raise AssertionError(f"expected no response for {seconds}s, got {len(extra)}: {extra[0]!r}")


class DeltaAdsClient(_AdsClient[DeltaRequest, DeltaResponse]):
    """A delta ADS client that behaves like Envoy: ACKs every response (NACKs when `nack_when` says)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        node: Node,
        *,
        checker: DeltaInvariantChecker | None = None,
        nack_when: Callable[[DeltaResponse], str | None] | None = None,
        timeout: float = 5.0,
        strict: bool = True,
        token: str = "",
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._checker = checker if checker is not None else DeltaInvariantChecker(raise_on_violation=False)
        self._subs: dict[str, set[str]] = {}
        super().__init__(
            channel, node, nack_when=nack_when, timeout=timeout, strict=strict, token=token, metadata=metadata
        )

    @property
    def checker(self) -> DeltaInvariantChecker:
        return self._checker

    def _multicallable(self) -> grpc.aio.StreamStreamMultiCallable:
        return delta_ads_stream(self.channel)

    def _check_request(self, req: DeltaRequest) -> None:
        self._checker.on_request(req)

    def _check_response(self, resp: DeltaResponse) -> None:
        self._checker.on_response(resp)

    def _wildcard(self, type_url: str) -> bool:
        subs = self._subs.get(type_url)
        return subs is not None and (not subs or WILDCARD in subs)

    async def subscribe(self, type_url: str, names: Iterable[str] = ()) -> None:
        """Subscribe to names (`"*"` for wildcard; no names on a type's first request is legacy wildcard)."""
        names = tuple(names)
        self._subs.setdefault(type_url, set()).update(names)
        self._send(DeltaRequest(type_url=type_url, node=self._node_once(), subscribe=names))

    async def unsubscribe(self, type_url: str, names: Iterable[str]) -> None:
        names = tuple(names)
        subs = self._subs.setdefault(type_url, set())
        subs.difference_update(names)
        held = self._held.setdefault(type_url, {})
        if not self._wildcard(type_url):
            for name in names:
                held.pop(name, None)
        self._send(DeltaRequest(type_url=type_url, node=self._node_once(), unsubscribe=names))

    def _replay(self) -> None:
        for type_url, subs in self._subs.items():
            held = self._held.get(type_url, {})
            self._send(
                DeltaRequest(
                    type_url=type_url,
                    node=self._node_once(),
                    subscribe=tuple(sorted(subs)),
                    initial_resource_versions={name: res.version for name, res in held.items()},
                )
            )

    def _handle(self, resp: DeltaResponse) -> None:
        if self._ended or self._closing:
            return
        error = self.nack_when(resp) if self.nack_when is not None else None
        if error is not None:
            self._send(
                DeltaRequest(
                    type_url=resp.type_url, response_nonce=resp.nonce, error_detail=ErrorDetail(NACK_CODE, error)
                )
            )
            return
        held = self._held.setdefault(resp.type_url, {})
        for res in resp.resources:
            held[res.name] = res
        for name in resp.removed:
            held.pop(name, None)
        self._send(DeltaRequest(type_url=resp.type_url, response_nonce=resp.nonce))


class SotwAdsClient(_AdsClient[SotwRequest, SotwResponse]):
    """A SotW ADS client that behaves like a proxyless gRPC client: full name lists, ACK with version_info."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        node: Node,
        *,
        checker: SotwInvariantChecker | None = None,
        nack_when: Callable[[SotwResponse], str | None] | None = None,
        timeout: float = 5.0,
        strict: bool = True,
        token: str = "",
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._checker = checker if checker is not None else SotwInvariantChecker(raise_on_violation=False)
        self._names: dict[str, list[str]] = {}
        self._legacy_wildcard: set[str] = set()
        self._versions: dict[str, str] = {}
        self._nonces: dict[str, str] = {}
        super().__init__(
            channel, node, nack_when=nack_when, timeout=timeout, strict=strict, token=token, metadata=metadata
        )

    @property
    def checker(self) -> SotwInvariantChecker:
        return self._checker

    def _multicallable(self) -> grpc.aio.StreamStreamMultiCallable:
        return sotw_ads_stream(self.channel)

    def _check_request(self, req: SotwRequest) -> None:
        self._checker.on_request(req)

    def _check_response(self, resp: SotwResponse) -> None:
        self._checker.on_response(resp)

    def _request(self, type_url: str, error: ErrorDetail | None = None) -> SotwRequest:
        return SotwRequest(
            type_url=type_url,
            node=self._node_once(),
            version_info=self._versions.get(type_url, ""),
            resource_names=tuple(self._names.get(type_url, ())),
            response_nonce=self._nonces.get(type_url, ""),
            error_detail=error,
        )

    async def subscribe(self, type_url: str, names: Iterable[str] = ()) -> None:
        """Add names to the type's list and send the full list (no names at first: legacy wildcard)."""
        names = tuple(names)
        if type_url not in self._names and not names:
            self._legacy_wildcard.add(type_url)
        elif names:
            self._legacy_wildcard.discard(type_url)
        current = self._names.setdefault(type_url, [])
        current.extend(n for n in names if n not in current)
        self._send(self._request(type_url))

    async def unsubscribe(self, type_url: str, names: Iterable[str]) -> None:
        drop = set(names)
        self._names[type_url] = [n for n in self._names.get(type_url, []) if n not in drop]
        held = self._held.setdefault(type_url, {})
        for name in drop:
            held.pop(name, None)
        self._send(self._request(type_url))

    def _replay(self) -> None:
        self._nonces.clear()
        for type_url in self._names:
            self._send(self._request(type_url))

    def _handle(self, resp: SotwResponse) -> None:
        if self._ended or self._closing:
            return
        self._nonces[resp.type_url] = resp.nonce
        error = self.nack_when(resp) if self.nack_when is not None else None
        if error is not None:
            self._send(self._request(resp.type_url, ErrorDetail(NACK_CODE, error)))
            return
        names = self._names.get(resp.type_url, [])
        wildcard = resp.type_url in self._legacy_wildcard or WILDCARD in names
        if resp.type_url in (LISTENER, CLUSTER) or wildcard:
            self._held[resp.type_url] = {r.name: r for r in resp.resources}
        else:
            held = self._held.setdefault(resp.type_url, {})
            held.update((r.name, r) for r in resp.resources)
            for name in [n for n in held if n not in names]:
                del held[name]
        self._versions[resp.type_url] = resp.version_info
        self._send(self._request(resp.type_url))
