"""Delta (incremental) ADS state machine of one stream: DeltaRequests and view changes in, DeltaResponses out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from meshactors.errors import InvalidArgument, ResourceExhausted
from meshactors.resources.types import MAX_GENERATIONS, VIRTUAL_HOST, Ref, split_generation
from meshactors.xds.types import (
    CLUSTER,
    ENDPOINT,
    SEND_ORDER,
    WILDCARD,
    DeltaRequest,
    DeltaResponse,
    Limits,
    NackRecord,
    Outcome,
    RejectedName,
    VersionedResource,
)
from meshactors.xds.view import MAX_TYPE_URL_LENGTH, NameValidator, NonceSource, ResourceView, check_name

_ORDER = {type_url: i for i, type_url in enumerate(SEND_ORDER)}


@dataclass(frozen=True, slots=True)
class DeltaTypeStatistics:
    """One type URL of a delta stream, as seen by the server."""

    type_url: str
    wildcard: bool
    subscribed: tuple[str, ...]
    acked: tuple[tuple[str, str], ...]
    # Latest version sent per name and not ACKed yet (None: a removal not ACKed yet).
    unacked: tuple[tuple[str, str | None], ...]
    pending_nonces: tuple[str, ...]
    last_nack: NackRecord | None
    responses: int = 0  # responses sent on this type
    last_ack_at: float | None = None  # the stream clock's time of the last ACK on this type
    last_request_nacked: bool = False  # the last request of this type that answered a response was a NACK
    # Every resource sent on this type, by what the client held of it (reported on (re)connect, or sent here):
    sent_new: int = 0  # nothing
    sent_changed: int = 0  # another version
    sent_unchanged: int = 0  # this very version: only an EDS resent after its cluster changed (re-warming)
    last_sent: tuple[str, str] | None = None  # (name, version) of the latest resource sent on this type
    unacked_since: float | None = None  # when the oldest response not ACKed yet was sent (None: all answered)


@dataclass(frozen=True, slots=True)
class DeltaStatistics:
    stream_id: str
    types: tuple[DeltaTypeStatistics, ...]
    requests: int
    responses: int
    acks: int
    nacks: int
    unknown_nonces: int
    last_nack: NackRecord | None
    clusters_collected: int = 0  # times a VIP's clusters were collected from this stream (Generations)
    names_retired: int = 0  # cluster names the client stays subscribed to after their collection

    def for_type(self, type_url: str) -> DeltaTypeStatistics | None:
        return next((t for t in self.types if t.type_url == type_url), None)


@dataclass(frozen=True, slots=True)
class Generations:
    """What collecting a VIP's clusters from a stream needs from the source serving them.

    Envoy 1.40 never asks again for a cluster name it once asked for on demand, even after the server removed it
    (design.md section 11). So a VIP's clusters are collected by removing them and routing the VIP, for this stream
    only, to a new generation of them (`vip@1`, `vip~v1@1`, ...): a VHDS virtual host whose routes name the next
    generation, which Envoy asks for on the next request like any new cluster. The old names stay subscribed on the
    client ("retired": never sent again, not counted against the stream's bound of names)."""

    vip_of: Callable[[str], str]  # a cluster name (any generation) -> its VIP
    virtual_host: Callable[[str], str]  # a VIP -> the name of its VHDS virtual host
    # (type URL, name, what every stream gets, generation) -> what this stream gets (the generation's virtual host)
    resource: Callable[[str, str, VersionedResource | None, int], VersionedResource | None]


class _TypeState:
    """What one type URL of the stream holds. Keys are subscribed names (a resource may be an alias hit)."""

    __slots__ = (
        "acked", "implied", "last_ack_at", "last_nack", "last_request_nacked", "last_sent", "pending", "rejected",
        "responses", "sent", "sent_at", "sent_changed", "sent_new", "sent_unchanged", "subscribed", "wildcard",
    )  # fmt: skip

    def __init__(self, implied: set[str] | None = None) -> None:
        self.wildcard = False
        self.subscribed: set[str] = set()
        # A companion type (see DeltaStream): the names its wildcard covers, those the stream's subscriptions of
        # other types bring along. None: an ordinary type, whose wildcard covers every name.
        self.implied = implied
        # Version the client has, or will have once the responses in flight land.
        self.sent: dict[str, str] = {}
        self.acked: dict[str, str] = {}
        # name -> version a NACK refused: never sent again (a different version is).
        self.rejected: dict[str, str] = {}
        # nonce -> {name: version sent, None for a removal}, oldest first.
        self.pending: dict[str, dict[str, str | None]] = {}
        self.sent_at: dict[str, float] = {}  # nonce -> when it was sent, for every nonce in `pending`
        self.last_nack: NackRecord | None = None
        self.responses = 0
        self.last_ack_at: float | None = None
        self.last_request_nacked = False
        self.sent_new = 0
        self.sent_changed = 0
        self.sent_unchanged = 0
        self.last_sent: tuple[str, str] | None = None

    def covers(self, name: str) -> bool:
        if name in self.subscribed:
            return True
        return self.wildcard and (self.implied is None or name in self.implied)

    def forget(self, name: str) -> None:
        self.sent.pop(name, None)
        self.acked.pop(name, None)
        self.rejected.pop(name, None)


class DeltaStream:
    """The server side of one delta ADS stream, every type URL of it. Pure and synchronous.

    The host feeds it each request (`on_request`) and each change of its ResourceView (`on_update`) and
    sends the responses it returns, in order. Semantics follow design.md section 5; the notable ones:

    - A name subscribed but absent from the view is remembered and sent by `on_update` once it appears.
      Absence seen in `on_request` never removes an explicitly subscribed name the client holds (the
      host may not have loaded it yet); absence seen in `on_update` does. Wildcard-only names follow
      `view.names`, which must be complete.
    - After a NACK the rejected (name, version) pairs are never sent again; the session keeps the last
      ACKed version as what the client has, and sends again when the content changes.
    - A ClusterLoadAssignment is held back while the Cluster of the same name is wanted on this stream
      but not sent yet (CDS before EDS); cluster removals go in a response of their own, last.
    - Companions (`companions(type URL, name)`, given by the host's sources): resources a subscribed name
      brings along on a type the client opened, sent *before* it (Envoy's VHDS virtual host of a VIP goes
      ahead of the VIP's Cluster, so the request that asked for the Cluster takes the virtual host's routes).
      On a companion type (`companion_types`) a wildcard covers only the companions of the stream's own
      subscriptions: one proxy never receives what another proxy's subscriptions brought.
    - A first wildcard request with nothing to send is still answered, on a companion type by removing the
      type's placeholder (`companion_types[type URL]`, a name in the client's namespace that is never served).
    - Pushed refs (`pushed_refs(resource)`, given by the host's sources): resources a resource needs that the client
      never asks for itself (Envoy never discovers a route's mirror cluster on demand). On a pushed type
      (`pushed_types`, each with its placeholder) the client's wildcard covers only what the resources it holds push;
      a resource is sent only after every ref it pushes (sent ahead, unasked, on that wildcard) and held back while
      one is not in the view yet; a ref no resource pushes any more is removed after what stopped pushing it (cluster
      removals last). Without a wildcard subscription of the pushed type nothing is pushed, and nothing held back.
      The names that become, or stop being, of interest this way are reported by `take_pushed`.
    """

    def __init__(
        self,
        view: ResourceView,
        limits: Limits | None = None,
        stream_id: str = "",
        name_validator: NameValidator | None = None,
        clock: Callable[[], float] = time.time,
        companions: Callable[[str, str], tuple[Ref, ...]] | None = None,
        companion_types: Mapping[str, str] | None = None,
        pushed_refs: Callable[[VersionedResource], tuple[Ref, ...]] | None = None,
        pushed_types: Mapping[str, str] | None = None,
        generations: Generations | None = None,
    ) -> None:
        self._view = view
        self._generations = generations
        self._generation: dict[str, int] = {}  # VIP -> the generation of its clusters this stream is routed to
        self._vhost_generation: dict[str, int] = {}  # that VIP's virtual host name -> the same generation
        self._retired: set[str] = set()  # cluster names collected (or superseded): never sent again
        self._collected = 0
        self._companions = companions
        # companion type URL -> the names the stream's subscriptions bring (shared with that type's state)
        self._implied: dict[str, set[str]] = {t: set() for t in companion_types or {}}
        self._first = frozenset(companion_types or {})  # companions go ahead of the types that bring them
        self._placeholders = dict(companion_types or {})
        self._pushed_refs = pushed_refs if pushed_types else None
        self._pushed_types = frozenset(pushed_types or {})
        for type_url in self._pushed_types:
            self._implied.setdefault(type_url, set())  # a pushed type's wildcard covers what is pushed
        self._placeholders.update(pushed_types or {})
        self._pushes: dict[Ref, tuple[Ref, ...]] = {}  # a resource the client has or is sent -> the refs it pushes
        self._pushers: dict[Ref, set[Ref]] = {}  # a pushed ref -> the resources pushing it
        self._waiting: dict[Ref, set[Ref]] = {}  # a pushed ref not in the view yet -> the resources held back for it
        self._late: dict[str, set[str]] = {}  # refs no longer pushed, to remove from the client in the next response
        self._pushed_added: list[Ref] = []
        self._pushed_removed: list[Ref] = []
        self._limits = limits or Limits()
        self.stream_id = stream_id
        self._validator = name_validator
        self._clock = clock
        self._nonces = NonceSource()
        self._types: dict[str, _TypeState] = {}
        self._last_nack: NackRecord | None = None
        self._requests = 0
        self._responses = 0
        self._acks = 0
        self._nacks = 0
        self._unknown_nonces = 0

    # ------------------------------------------------------------------------------------- requests

    def on_plain_ack(self, req: DeltaRequest) -> bool:
        """The request every response brings, at the least cost: on a type the stream has opened, no error and
        nothing (un)subscribed. True when `req` is one: applied exactly as `on_request` applies it (an ACK of a
        nonce in flight, or a stale nonce counted; never a response). False when it is not: nothing was done,
        `on_request` takes it."""
        if req.error_detail is not None or req.subscribe or req.unsubscribe:
            return False
        ts = self._types.get(req.type_url)
        if ts is None:
            return False
        self._requests += 1
        nonce = req.response_nonce
        if nonce in ts.pending:
            self._apply_ack(ts, nonce)
            ts.last_ack_at = self._clock()
            ts.last_request_nacked = False
        elif nonce:
            self._unknown_nonces += 1
        return True

    def on_request(self, req: DeltaRequest) -> Outcome[DeltaResponse]:
        """Apply one DeltaRequest: ACK/NACK bookkeeping, then (even for a stale nonce) its subscriptions."""
        if not req.type_url:
            raise InvalidArgument("type_url", "must not be empty")
        if len(req.type_url) > MAX_TYPE_URL_LENGTH:
            raise InvalidArgument("type_url", f"{len(req.type_url)} characters, at most {MAX_TYPE_URL_LENGTH}")
        self._requests += 1
        type_url = req.type_url
        ts = self._types.get(type_url)
        first = ts is None
        if ts is None:
            if len(self._types) >= self._limits.max_type_urls:
                raise ResourceExhausted(
                    f"stream {self.stream_id!r} already uses {len(self._types)} type URLs "
                    f"(limit {self._limits.max_type_urls}); refused {type_url!r}"
                )
            ts = self._types[type_url] = _TypeState(self._implied.get(type_url))

        nack: NackRecord | None = None
        ack = False
        known_nonce = req.response_nonce in ts.pending
        if req.response_nonce and not known_nonce:
            self._unknown_nonces += 1
        if req.error_detail is not None:
            nack = self._apply_nack(type_url, ts, req)
            ts.last_request_nacked = True
        elif known_nonce:
            self._apply_ack(ts, req.response_nonce)
            ack = True
            ts.last_ack_at = self._clock()
            ts.last_request_nacked = False

        stale = bool(req.response_nonce) and not known_nonce
        if not first and not req.subscribe and not req.unsubscribe:
            # the common case, a plain ACK (or NACK): nothing to subscribe, nothing to send
            return Outcome(responses=(), ack=ack, nack=nack, stale=stale)

        added: list[tuple[str, str]] = []
        dropped: list[tuple[str, str]] = []
        rejected: list[RejectedName] = []
        candidates: set[str] = set()

        if first and not req.subscribe:
            ts.wildcard = True  # legacy wildcard: the first request of a type names nothing
            added.append((type_url, WILDCARD))
            candidates.update(n for n in self._view.names(type_url) if ts.covers(n))
        for name in req.subscribe:
            if name == WILDCARD:
                if not ts.wildcard:
                    ts.wildcard = True
                    added.append((type_url, WILDCARD))
                    candidates.update(n for n in self._view.names(type_url) if ts.covers(n))
                continue
            if name in ts.subscribed:
                candidates.add(name)  # re-subscribed: sent again only if the client lacks this version
                continue
            reason = check_name(self._limits, self._validator, type_url, name)
            live = len(ts.subscribed) - (len(self._retired) if type_url == CLUSTER else 0)
            if reason is None and live >= self._limits.max_names_per_type:
                reason = f"more than {self._limits.max_names_per_type} names subscribed for this type URL"
            if reason is not None:
                rejected.append(RejectedName(type_url, name, reason))
                continue
            ts.subscribed.add(name)
            added.append((type_url, name))
            candidates.add(name)
            self._imply(type_url, name, True)

        if type_url == CLUSTER and self._generations is not None and added:
            self._follow_generations([n for _t, n in added if n != WILDCARD], candidates)
        if type_url == VIRTUAL_HOST and first:
            candidates.update(n for n in self._vhost_generation if ts.covers(n))

        for name in req.unsubscribe:
            if name == WILDCARD:
                if ts.wildcard:
                    ts.wildcard = False
                    dropped.append((type_url, WILDCARD))
                    for held in [*ts.sent, *ts.rejected]:
                        if held not in ts.subscribed:
                            self._forget(ts, type_url, held)
                            candidates.discard(held)
                continue
            if name in ts.subscribed:
                ts.subscribed.discard(name)
                if not self._pushers.get((type_url, name)):
                    dropped.append((type_url, name))  # still of interest while something pushes it
                self._imply(type_url, name, False)
                if not ts.covers(name):
                    self._forget(ts, type_url, name)
                    candidates.discard(name)

        if first:
            # Reconnect: what the client already holds. Only names it is interested in are kept, and
            # wildcard-only names only as many as could be subscribed.
            room = self._limits.max_names_per_type
            for name, version in req.initial_resource_versions.items():
                if name not in ts.subscribed:
                    # a companion type keeps what the client holds whether or not it is brought yet: told removed
                    # once its bringer is looked at, if it is gone
                    if not ts.wildcard or room <= 0 or check_name(self._limits, None, type_url, name):
                        continue
                    room -= 1
                ts.sent[name] = version
                ts.acked[name] = version
                candidates.add(name)

        refused = [r.name for r in rejected]
        responses = self._compute({type_url: candidates}, from_update=False, refused={type_url: refused})
        if first and ts.wildcard and not any(r.type_url == type_url for r in responses):
            # A wildcard subscription with nothing to send yet is still answered: Envoy waits for a first response
            # of every wildcard type before it starts serving. Envoy's VHDS watches a namespace (its route table's
            # name) and only an answer that names something in it counts: an empty one left every proxy's listener
            # warming for the 15 s initial fetch timeout, removing a never-served name lets it start at once
            # (measured with Envoy 1.40: 15.1 s -> 0.1 s from start to LIVE).
            placeholder = self._placeholders.get(type_url)
            responses.append(self._respond(ts, type_url, (), (placeholder,) if placeholder else (), {}))
        return Outcome(
            responses=tuple(responses),
            interest_added=tuple(added),
            interest_removed=tuple(dropped),
            rejected=tuple(rejected),
            ack=ack,
            nack=nack,
            stale=stale,
        )

    def _imply(self, type_url: str, name: str, subscribed: bool) -> None:
        """Track the companions `name` brings. One no longer brought is forgotten, not removed from the client
        (as an unsubscribed name is): what it routes to was unsubscribed by the client itself."""
        if self._companions is None:
            return
        for companion_type, companion in self._companions(type_url, name):
            implied = self._implied.get(companion_type)
            if implied is None:
                continue
            if subscribed:
                implied.add(companion)
                continue
            implied.discard(companion)
            cts = self._types.get(companion_type)
            if cts is not None and not cts.covers(companion):
                self._forget(cts, companion_type, companion)

    def _forget(self, ts: _TypeState, type_url: str, name: str) -> None:
        """The client is no longer told about `name`: what it pushed stops being pushed by it."""
        ts.forget(name)
        self._push_refs((type_url, name), ())

    # ------------------------------------------------------------------------------------- pushed refs

    def take_pushed(self) -> tuple[list[Ref], list[Ref]]:
        """The refs that became of interest to this stream by being pushed, and those that stopped, since the last
        call (the host fetches and releases what holds them as for subscriptions)."""
        added, removed = self._pushed_added, self._pushed_removed
        self._pushed_added, self._pushed_removed = [], []
        return added, removed

    def _push_refs(self, pusher: Ref, refs: tuple[Ref, ...]) -> None:
        """`pusher` now pushes `refs` (the resource the client has or is sent: its refs on the pushed types)."""
        old = self._pushes.pop(pusher, ())
        if refs:
            self._pushes[pusher] = refs
        if old == refs:
            return
        for ref in refs:
            if ref in old:
                continue
            pushers = self._pushers.setdefault(ref, set())
            if not pushers:
                self._implied[ref[0]].add(ref[1])
                pts = self._types.get(ref[0])
                if pts is None or ref[1] not in pts.subscribed:
                    self._pushed_added.append(ref)
            pushers.add(pusher)
        for ref in old:
            if ref in refs:
                continue
            waiting = self._waiting.get(ref)
            if waiting is not None:
                waiting.discard(pusher)
                if not waiting:
                    del self._waiting[ref]
            pushers = self._pushers.get(ref)
            if pushers is None:
                continue
            pushers.discard(pusher)
            if pushers:
                continue
            del self._pushers[ref]
            self._implied[ref[0]].discard(ref[1])
            pts = self._types.get(ref[0])
            if pts is None or not pts.covers(ref[1]):
                if pts is None or ref[1] not in pts.subscribed:
                    self._pushed_removed.append(ref)
                if pts is not None:
                    if ref[1] in pts.sent:
                        self._late.setdefault(ref[0], set()).add(ref[1])
                    self._forget(pts, *ref)

    def _pushable(self, res: VersionedResource) -> tuple[Ref, ...]:
        """The refs `res` pushes to this client: those on a pushed type it opened with a wildcard."""
        if self._pushed_refs is None:
            return ()
        out = []
        for ref in self._pushed_refs(res):
            pts = self._types.get(ref[0])
            if ref[0] in self._pushed_types and pts is not None and pts.wildcard and ref not in out:
                out.append(ref)
        return tuple(out)

    def _apply_ack(self, ts: _TypeState, nonce: str) -> None:
        """ACK of `nonce`; responses sent before it were processed first (in order) and count as ACKed."""
        self._acks += 1
        while ts.pending:
            sent_nonce, entry = next(iter(ts.pending.items()))
            del ts.pending[sent_nonce]
            ts.sent_at.pop(sent_nonce, None)
            self._ack_entry(ts, entry)
            if sent_nonce == nonce:
                return

    @staticmethod
    def _ack_entry(ts: _TypeState, entry: dict[str, str | None]) -> None:
        for name, version in entry.items():
            if version is None:
                ts.acked.pop(name, None)
            elif name in ts.sent:
                ts.acked[name] = version

    def _apply_nack(self, type_url: str, ts: _TypeState, req: DeltaRequest) -> NackRecord:
        self._nacks += 1
        refused: list[tuple[str, str]] = []
        if req.response_nonce in ts.pending:
            while ts.pending:
                sent_nonce, entry = next(iter(ts.pending.items()))
                del ts.pending[sent_nonce]
                ts.sent_at.pop(sent_nonce, None)
                if sent_nonce != req.response_nonce:
                    self._ack_entry(ts, entry)
                    continue
                for name, version in entry.items():
                    if version is None:
                        continue  # a refused removal is not re-sent either: the name stays dropped
                    refused.append((name, version))
                    ts.rejected[name] = version
                    if ts.sent.get(name) == version:  # no newer version is in flight: back to last good
                        good = ts.acked.get(name)
                        if good is None:
                            ts.sent.pop(name, None)
                        else:
                            ts.sent[name] = good
                break
        assert req.error_detail is not None
        record = NackRecord(
            type_url=type_url,
            nonce=req.response_nonce,
            code=req.error_detail.code,
            message=req.error_detail.message,
            rejected=tuple(sorted(refused)),
            at=self._clock(),
        )
        ts.last_nack = record
        self._last_nack = record
        return record

    # -------------------------------------------------------------------------------------- updates

    def on_update(self, changed: Iterable[tuple[str, str]]) -> list[DeltaResponse]:
        """The view changed for these (type URL, name) pairs: the responses that bring the client up to date.

        Here a name the view does not have is gone: if the client holds it, it is sent as removed.
        """
        candidates: dict[str, set[str]] = {}
        for type_url, name in changed:
            ts = self._types.get(type_url)
            if ts is not None and name != WILDCARD and ts.covers(name):
                candidates.setdefault(type_url, set()).add(name)
        return self._compute(candidates, from_update=True, refused={})

    # ---------------------------------------------------------------------------------- collection

    def _get(self, type_url: str, name: str) -> VersionedResource | None:
        """The view's resource, or this stream's own one: a collected VIP's virtual host names its generation."""
        res = self._view.get(type_url, name)
        if type_url == VIRTUAL_HOST and self._vhost_generation and self._generations is not None:
            generation = self._vhost_generation.get(name)
            if generation:
                return self._generations.resource(type_url, name, res, generation)
        return res

    def _route_to(self, vip: str, generation: int) -> str:
        """Route `vip` to `generation` of its clusters on this stream; the name of its virtual host."""
        assert self._generations is not None
        vhost = self._generations.virtual_host(vip)
        self._generation[vip] = generation
        self._vhost_generation[vhost] = generation
        implied = self._implied.get(VIRTUAL_HOST)
        if implied is not None:
            implied.add(vhost)  # the stream's VHDS wildcard covers it, as a companion of the VIP's Cluster
        return vhost

    def _follow_generations(self, names: list[str], candidates: set[str]) -> None:
        """Newly subscribed cluster names that carry a generation (asked for after a collection, or re-sent on a
        reconnect to a server that never saw the collection): the highest generation of a VIP is the live one,
        every name of the VIP below it is retired."""
        assert self._generations is not None
        cs = self._types[CLUSTER]
        newest: dict[str, int] = {}
        for name in names:
            generation = split_generation(name)[1]
            if generation > 0:
                vip = self._generations.vip_of(name)
                newest[vip] = max(newest.get(vip, 0), generation)
        for vip, generation in newest.items():
            if generation > self._generation.get(vip, 0):
                self._route_to(vip, generation)  # its virtual host goes out as the new name's companion
        for held in cs.subscribed:  # one pass, however many VIPs a reconnect names generations of
            vip = self._generations.vip_of(held)
            if vip in newest and split_generation(held)[1] < self._generation[vip] and held not in self._retired:
                self._retired.add(held)
                candidates.discard(held)

    def collectable(self) -> list[str]:
        """The VIPs whose clusters could be collected from this stream now: the client holds (ACKed) every cluster
        of the VIP it was sent, it opened VHDS (so it can be routed to a new generation), no resource of the
        stream pushes them (a mirror), and the VIP has generations left."""
        cs = self._types.get(CLUSTER)
        vs = self._types.get(VIRTUAL_HOST)
        if self._generations is None or cs is None or vs is None or not vs.wildcard:
            return []
        blocked: set[str] = set()
        live: set[str] = set()
        for name, version in cs.sent.items():
            vip = self._generations.vip_of(name)
            if (
                cs.acked.get(name) != version
                or self._pushers.get((CLUSTER, name))
                or self._generation.get(vip, 0) >= MAX_GENERATIONS
                or split_generation(name)[1] != self._generation.get(vip, 0)
            ):
                blocked.add(vip)
            else:
                live.add(vip)
        return sorted(live - blocked)

    def collect(self, vip: str) -> list[DeltaResponse]:
        """Remove `vip`'s clusters from the client, routing it to their next generation first (see Generations):
        the virtual host goes out ahead of the removal, so a request in between already asks for the new name.
        Nothing when the VIP is not collectable (any more)."""
        if vip not in self.collectable():
            return []
        cs = self._types[CLUSTER]
        assert self._generations is not None
        generation = self._generation.get(vip, 0)
        gone = sorted(n for n in cs.sent if self._generations.vip_of(n) == vip)
        for name in cs.subscribed:
            if self._generations.vip_of(name) == vip:
                self._retired.add(name)  # asked for but never sent (a version cluster): superseded as well
        self._retired.update(gone)
        vhost = self._route_to(vip, generation + 1)
        responses = self._compute({VIRTUAL_HOST: {vhost}}, from_update=True, refused={})
        removals: dict[str, str | None] = {}
        for name in gone:
            del cs.sent[name]
            self._push_refs((CLUSTER, name), ())
            removals[name] = None
        responses.append(self._respond(cs, CLUSTER, (), tuple(removals), removals))
        self._collected += 1
        return responses

    # ------------------------------------------------------------------------------------ computing

    def _cluster_pending(self, name: str) -> bool:
        """True while the Cluster `name` is wanted on this stream but not sent: its EDS must wait."""
        cs = self._types.get(CLUSTER)
        if cs is None or name in cs.sent or name in self._retired:
            return False
        return name in cs.subscribed or (cs.covers(name) and self._view.get(CLUSTER, name) is not None)

    def _compute(
        self, candidates: dict[str, set[str]], *, from_update: bool, refused: dict[str, list[str]]
    ) -> list[DeltaResponse]:
        """Responses for the candidate names, one per type URL in SEND_ORDER (what a resource pushes just ahead of
        it), cluster removals last."""
        responses: list[DeltaResponse] = []
        cluster_removals: dict[str, str | None] = {}
        # EDS clusters the client held and gets a new version of: Envoy warms the new cluster until it receives
        # its ClusterLoadAssignment again, so that is resent even when unchanged (measured with Envoy 1.40: an
        # updated cluster otherwise stays warming and the old one keeps serving).
        rewarm: set[str] = set()
        # only a stream that opened a companion type can be brought anything (a per-name call on every push else)
        if self._companions is not None and any(t in self._types for t in self._first):
            for type_url, names in list(candidates.items()):
                for name in names:
                    for companion_type, companion in self._companions(type_url, name):
                        cts = self._types.get(companion_type)
                        if cts is not None and cts.covers(companion):
                            candidates.setdefault(companion_type, set()).add(companion)
        todo = set(candidates) | {t for t, names in refused.items() if names}
        while todo:
            # companion types go first (a virtual host before the Cluster that brings it), then the send order
            type_url = min(todo, key=lambda t: (t not in self._first, _ORDER.get(t, len(_ORDER)), t))
            todo.discard(type_url)
            ts = self._types[type_url]
            resources: dict[str, VersionedResource] = {}
            removed: dict[str, None] = dict.fromkeys(refused.get(type_url, ()))
            entry: dict[str, str | None] = {}
            # what the resources of this type push and the client lacks: sent in responses of their own, just ahead
            ahead: dict[str, tuple[dict[str, VersionedResource], dict[str, str | None]]] = {}
            for name in sorted(candidates.pop(type_url, ())):
                if type_url == CLUSTER and name in self._retired:
                    continue
                res = self._get(type_url, name)
                have = ts.sent.get(name)
                if res is None:
                    # Absent: a removal only when we know it is gone (see the class docstring); a companion's
                    # absence is only known from an update, like a subscribed name's.
                    if have is not None and (from_update or (name not in ts.subscribed and ts.implied is None)):
                        del ts.sent[name]
                        self._push_refs((type_url, name), ())
                        if type_url == CLUSTER:
                            cluster_removals[name] = None
                        elif name not in resources:
                            entry[name] = None
                            removed[name] = None
                    continue
                if ts.rejected.get(name) == res.version:
                    continue
                held_back = False
                if self._pushed_refs is not None:
                    pushes = self._pushable(res)
                    self._push_refs((type_url, name), pushes)
                    for ref in pushes:
                        pts = self._types[ref[0]]
                        if ref[1] in pts.sent:
                            continue
                        pushed = self._view.get(*ref)
                        if pushed is None or pts.rejected.get(ref[1]) == pushed.version:
                            self._waiting.setdefault(ref, set()).add((type_url, name))
                            held_back = True  # sent once what it pushes is
                            continue
                        got, got_entry = ahead.setdefault(ref[0], ({}, {}))
                        self._sent(pts, ref[1], pushed, None, got, got_entry)
                        self._sent_follows(ref[0], ref[1], None, candidates, todo, rewarm)
                if res.version == have and not (type_url == ENDPOINT and name in rewarm):
                    continue
                if held_back:
                    continue
                if type_url == ENDPOINT and self._cluster_pending(name):
                    continue  # goes out with (after) its Cluster
                self._sent(ts, name, res, have, resources, entry)
                removed.pop(res.name, None)
                self._sent_follows(type_url, name, have, candidates, todo, rewarm)
            for ahead_type in sorted(ahead, key=lambda t: (_ORDER.get(t, len(_ORDER)), t)):
                got, got_entry = ahead[ahead_type]
                pts = self._types[ahead_type]
                responses.append(self._respond(pts, ahead_type, tuple(got.values()), (), got_entry))
            if resources or removed:
                responses.append(self._respond(ts, type_url, tuple(resources.values()), tuple(removed), entry))
        late, self._late = self._late, {}
        for type_url in sorted(late, key=lambda t: (_ORDER.get(t, len(_ORDER)), t)):
            gone = {n: None for n in sorted(late[type_url]) if n not in self._types[type_url].sent}
            if type_url == CLUSTER:
                cluster_removals.update(gone)
            elif gone:
                ts = self._types[type_url]
                responses.append(self._respond(ts, type_url, (), tuple(gone), dict(gone)))
        if cluster_removals:
            cs = self._types[CLUSTER]
            responses.append(self._respond(cs, CLUSTER, (), tuple(cluster_removals), cluster_removals))
        return responses

    @staticmethod
    def _sent(
        ts: _TypeState,
        name: str,
        res: VersionedResource,
        have: str | None,
        resources: dict[str, VersionedResource],
        entry: dict[str, str | None],
    ) -> None:
        """`res` goes into the response being built for its type."""
        ts.sent[name] = res.version
        entry[name] = res.version
        if have is None:
            ts.sent_new += 1
        elif have == res.version:
            ts.sent_unchanged += 1
        else:
            ts.sent_changed += 1
        ts.last_sent = (name, res.version)
        resources.setdefault(res.name, res)

    def _sent_follows(
        self,
        type_url: str,
        name: str,
        have: str | None,
        candidates: dict[str, set[str]],
        todo: set[str],
        rewarm: set[str],
    ) -> None:
        """What sending (type URL, name) lets go out after it: its ClusterLoadAssignment, what waited for it."""
        if type_url == CLUSTER:
            es = self._types.get(ENDPOINT)
            if es is not None and es.covers(name):
                candidates.setdefault(ENDPOINT, set()).add(name)
                todo.add(ENDPOINT)
                if have is not None:
                    rewarm.add(name)
        for waiter_type, waiter in self._waiting.pop((type_url, name), ()):
            candidates.setdefault(waiter_type, set()).add(waiter)
            todo.add(waiter_type)

    def _respond(
        self,
        ts: _TypeState,
        type_url: str,
        resources: tuple[VersionedResource, ...],
        removed: tuple[str, ...],
        entry: dict[str, str | None],
    ) -> DeltaResponse:
        nonce = self._nonces.next()
        ts.pending[nonce] = entry
        ts.sent_at[nonce] = self._clock()
        ts.responses += 1
        self._responses += 1
        return DeltaResponse(type_url=type_url, nonce=nonce, resources=resources, removed=removed)

    # ----------------------------------------------------------------------------------- statistics

    def retired(self, type_url: str, name: str) -> bool:
        """True for a cluster name collected from the client (see Generations): subscribed, never served again."""
        return type_url == CLUSTER and name in self._retired

    def acked_version(self, type_url: str, name: str) -> str | None:
        """The version of `name` the client last ACKed (None: none, or it ACKed its removal)."""
        ts = self._types.get(type_url)
        return ts.acked.get(name) if ts is not None else None

    def statistics(self) -> DeltaStatistics:
        types = []
        for type_url in sorted(self._types, key=lambda t: (_ORDER.get(t, len(_ORDER)), t)):
            ts = self._types[type_url]
            unacked: dict[str, str | None] = {}
            for entry in ts.pending.values():
                unacked.update(entry)
            types.append(
                DeltaTypeStatistics(
                    type_url=type_url,
                    wildcard=ts.wildcard,
                    subscribed=tuple(sorted(ts.subscribed - self._retired if type_url == CLUSTER else ts.subscribed)),
                    acked=tuple(sorted(ts.acked.items())),
                    unacked=tuple(sorted(unacked.items())),
                    pending_nonces=tuple(ts.pending),
                    last_nack=ts.last_nack,
                    responses=ts.responses,
                    last_ack_at=ts.last_ack_at,
                    last_request_nacked=ts.last_request_nacked,
                    sent_new=ts.sent_new,
                    sent_changed=ts.sent_changed,
                    sent_unchanged=ts.sent_unchanged,
                    last_sent=ts.last_sent,
                    unacked_since=ts.sent_at.get(next(iter(ts.pending)), None) if ts.pending else None,
                )
            )
        return DeltaStatistics(
            stream_id=self.stream_id,
            types=tuple(types),
            requests=self._requests,
            responses=self._responses,
            acks=self._acks,
            nacks=self._nacks,
            unknown_nonces=self._unknown_nonces,
            clusters_collected=self._collected,
            names_retired=len(self._retired),
            last_nack=self._last_nack,
        )
