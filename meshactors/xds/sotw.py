"""State-of-the-world ADS state machine of one stream: SotwRequests and view changes in, SotwResponses out."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from meshactors.errors import InvalidArgument, ResourceExhausted
from meshactors.xds.types import (
    CLUSTER,
    SEND_ORDER,
    WILDCARD,
    Limits,
    NackRecord,
    Outcome,
    RejectedName,
    SotwRequest,
    SotwResponse,
    VersionedResource,
)
from meshactors.xds.view import MAX_TYPE_URL_LENGTH, NameValidator, NonceSource, ResourceView, check_name

_ORDER = {type_url: i for i, type_url in enumerate(SEND_ORDER)}


def sotw_version_info(resources: Iterable[VersionedResource]) -> str:
    """The version_info of a SotW response: a hash over the (name, version) pairs it carries."""
    digest = hashlib.blake2b(digest_size=8)
    for name, version in sorted((r.name, r.version) for r in resources):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(version.encode())
        digest.update(b"\n")
    return digest.hexdigest()


_EMPTY_VERSION = sotw_version_info(())


@dataclass(frozen=True, slots=True)
class SotwTypeStatistics:
    """One type URL of a SotW stream, as seen by the server."""

    type_url: str
    wildcard: bool
    names: tuple[str, ...]
    last_nonce: str | None
    acked_version_info: str | None
    acked: tuple[tuple[str, str], ...]
    # Content of the latest response when it is not ACKed yet, else None.
    unacked_version_info: str | None
    unacked: tuple[tuple[str, str], ...]
    last_nack: NackRecord | None
    responses: int = 0  # responses sent on this type
    last_ack_at: float | None = None  # the stream clock's time of the last ACK on this type
    last_request_nacked: bool = False  # the last (current-nonce) request of this type was a NACK
    unacked_since: float | None = None  # when the first response not ACKed since the last ACK/NACK was sent


@dataclass(frozen=True, slots=True)
class SotwStatistics:
    stream_id: str
    types: tuple[SotwTypeStatistics, ...]
    requests: int
    responses: int
    acks: int
    nacks: int
    stale_requests: int
    last_nack: NackRecord | None

    def for_type(self, type_url: str) -> SotwTypeStatistics | None:
        return next((t for t in self.types if t.type_url == type_url), None)


class _TypeState:
    __slots__ = (
        "acked",
        "acked_version",
        "last_ack_at",
        "last_nack",
        "last_nonce",
        "last_request_nacked",
        "legacy_wildcard",
        "names",
        "rejected",
        "rejected_version",
        "responses",
        "sent",
        "sent_version",
        "unacked_since",
        "wildcard",
    )

    def __init__(self) -> None:
        self.wildcard = False
        self.legacy_wildcard = False
        self.names: set[str] = set()
        self.last_nonce: str | None = None
        # Content of the latest response (what the client will have), keyed by requested name.
        self.sent: dict[str, VersionedResource] = {}
        self.sent_version: str | None = None  # None: nothing sent on this type yet
        self.acked: dict[str, VersionedResource] = {}
        self.acked_version: str | None = None
        # name -> version a NACK refused (never sent again), and the refused response's version_info.
        self.rejected: dict[str, str] = {}
        self.rejected_version: str | None = None
        self.last_nack: NackRecord | None = None
        self.responses = 0
        self.last_ack_at: float | None = None
        self.last_request_nacked = False
        self.unacked_since: float | None = None

    def covers(self, name: str) -> bool:
        return self.wildcard or name in self.names or name in self.sent


class SotwStream:
    """The server side of one SotW ADS stream, every type URL of it. Pure and synchronous.

    Each request carries the full list of names of its type. Requests whose nonce is not the latest
    sent for the type are ignored. A response is sent only when its content (the subscribed names that
    exist, with their versions) differs from the last one sent; an ACK alone never gets an answer. A
    type with explicit names that has nothing to send yet stays silent (the names are remembered and
    sent when they appear); a wildcard type always gets a first response, empty if need be.
    """

    def __init__(
        self,
        view: ResourceView,
        limits: Limits | None = None,
        stream_id: str = "",
        name_validator: NameValidator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._view = view
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
        self._stale = 0

    # ------------------------------------------------------------------------------------- requests

    def on_request(self, req: SotwRequest) -> Outcome[SotwResponse]:
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
            ts = self._types[type_url] = _TypeState()
        elif ts.last_nonce is not None and req.response_nonce != ts.last_nonce:
            self._stale += 1
            return Outcome(stale=True)

        ack = False
        nack: NackRecord | None = None
        if req.error_detail is not None:
            nack = self._apply_nack(type_url, ts, req)
            ts.last_request_nacked = True
        elif ts.last_nonce is not None:
            ts.acked = ts.sent
            ts.acked_version = ts.sent_version
            self._acks += 1
            ack = True
            ts.last_ack_at = self._clock()
            ts.last_request_nacked = False
        ts.unacked_since = None  # an ACK or a NACK of the latest nonce answers every response sent before

        rejected: list[RejectedName] = []
        names: set[str] = set()
        wildcard = False
        for name in req.resource_names:
            if name == WILDCARD:
                wildcard = True
                continue
            if name in names:
                continue
            reason = check_name(self._limits, self._validator, type_url, name)
            if reason is None and len(names) >= self._limits.max_names_per_type:
                reason = f"more than {self._limits.max_names_per_type} names subscribed for this type URL"
            if reason is not None:
                rejected.append(RejectedName(type_url, name, reason))
                continue
            names.add(name)
        legacy = not req.resource_names and (first or ts.legacy_wildcard)
        wildcard = wildcard or legacy
        added = [(type_url, n) for n in sorted(names - ts.names)]
        dropped = [(type_url, n) for n in sorted(ts.names - names)]
        if wildcard and not ts.wildcard:
            added.insert(0, (type_url, WILDCARD))
        elif ts.wildcard and not wildcard:
            dropped.insert(0, (type_url, WILDCARD))
        ts.names, ts.wildcard, ts.legacy_wildcard = names, wildcard, legacy
        if dropped:
            self._forget_dropped(ts)

        response = self._maybe_respond(type_url, ts)
        return Outcome(
            responses=(response,) if response is not None else (),
            interest_added=tuple(added),
            interest_removed=tuple(dropped),
            rejected=tuple(rejected),
            ack=ack,
            nack=nack,
        )

    @staticmethod
    def _forget_dropped(ts: _TypeState) -> None:
        """The client drops what it unsubscribed: that alone never calls for a response."""
        if ts.wildcard:
            return  # every name is still of interest; deletions are told by omission

        def keep(content: dict[str, VersionedResource]) -> dict[str, VersionedResource]:
            return {name: res for name, res in content.items() if name in ts.names}

        for name in [n for n in ts.rejected if n not in ts.names]:
            del ts.rejected[name]
        if ts.sent_version is not None and len(kept := keep(ts.sent)) != len(ts.sent):
            ts.sent = kept
            ts.sent_version = sotw_version_info(kept.values())
        if ts.acked_version is not None and len(kept := keep(ts.acked)) != len(ts.acked):
            ts.acked = kept
            ts.acked_version = sotw_version_info(kept.values())

    def _apply_nack(self, type_url: str, ts: _TypeState, req: SotwRequest) -> NackRecord:
        self._nacks += 1
        refused: list[tuple[str, str]] = []
        version_info = ""
        if ts.last_nonce is not None:
            version_info = ts.sent_version or ""
            for name, res in ts.sent.items():
                good = ts.acked.get(name)
                if good is None or good.version != res.version:
                    refused.append((res.name, res.version))
                    ts.rejected[name] = res.version
            ts.rejected_version = ts.sent_version
            # The client keeps what it had: the last ACKed content (nothing, if it never ACKed).
            ts.sent = ts.acked
            ts.sent_version = ts.acked_version if ts.acked_version is not None else _EMPTY_VERSION
        assert req.error_detail is not None
        record = NackRecord(
            type_url=type_url,
            nonce=req.response_nonce,
            code=req.error_detail.code,
            message=req.error_detail.message,
            rejected=tuple(sorted(refused)),
            at=self._clock(),
            version_info=version_info,
        )
        ts.last_nack = record
        self._last_nack = record
        return record

    # -------------------------------------------------------------------------------------- updates

    def on_update(self, changed: Iterable[tuple[str, str]]) -> list[SotwResponse]:
        """The view changed for these (type URL, name) pairs: responses for every type whose content changed.

        A CDS response that drops a cluster goes last (make before break).
        """
        types: set[str] = set()
        for type_url, name in changed:
            ts = self._types.get(type_url)
            if ts is not None and ts.covers(name):
                types.add(type_url)
        responses: list[SotwResponse] = []
        last: list[SotwResponse] = []
        for type_url in sorted(types, key=lambda t: (_ORDER.get(t, len(_ORDER)), t)):
            ts = self._types[type_url]
            before = set(ts.sent)
            response = self._maybe_respond(type_url, ts)
            if response is None:
                continue
            if type_url == CLUSTER and before - set(ts.sent):
                last.append(response)
            else:
                responses.append(response)
        return responses + last

    # ------------------------------------------------------------------------------------ computing

    def _content(self, type_url: str, ts: _TypeState) -> dict[str, VersionedResource]:
        names = set(ts.names)
        if ts.wildcard:
            names.update(self._view.names(type_url))
        content: dict[str, VersionedResource] = {}
        seen: set[str] = set()
        for name in sorted(names):
            res = self._view.get(type_url, name)
            if res is None or res.body is None:
                continue
            if ts.rejected.get(name) == res.version:
                good = ts.acked.get(name)  # keep serving the last good version, never the refused one
                if good is None:
                    continue
                res = good
            if res.name in seen:
                continue
            seen.add(res.name)
            content[name] = res
        return content

    def _maybe_respond(self, type_url: str, ts: _TypeState) -> SotwResponse | None:
        content = self._content(type_url, ts)
        version = sotw_version_info(content.values())
        if ts.sent_version is None:
            if not content and not ts.wildcard:
                return None  # nothing of what was asked exists (yet): stay silent, remember the names
        elif version == ts.sent_version:
            return None
        if version == ts.rejected_version:
            return None
        nonce = self._nonces.next()
        ts.last_nonce = nonce
        if ts.unacked_since is None:
            ts.unacked_since = self._clock()
        ts.sent = content
        ts.sent_version = version
        ts.responses += 1
        self._responses += 1
        resources = tuple(sorted(content.values(), key=lambda r: r.name))
        return SotwResponse(type_url=type_url, version_info=version, nonce=nonce, resources=resources)

    # ----------------------------------------------------------------------------------- statistics

    def acked_version(self, type_url: str, name: str) -> str | None:
        """The version of `name` in the client's last ACKed response (None: not in it, or nothing ACKed)."""
        ts = self._types.get(type_url)
        res = ts.acked.get(name) if ts is not None else None
        return res.version if res is not None else None

    def statistics(self) -> SotwStatistics:
        types = []
        for type_url in sorted(self._types, key=lambda t: (_ORDER.get(t, len(_ORDER)), t)):
            ts = self._types[type_url]
            unacked = ts.last_nonce is not None and ts.sent_version != ts.acked_version
            types.append(
                SotwTypeStatistics(
                    type_url=type_url,
                    wildcard=ts.wildcard,
                    names=tuple(sorted(ts.names)),
                    last_nonce=ts.last_nonce,
                    acked_version_info=ts.acked_version,
                    acked=tuple(sorted((r.name, r.version) for r in ts.acked.values())),
                    unacked_version_info=ts.sent_version if unacked else None,
                    unacked=tuple(sorted((r.name, r.version) for r in ts.sent.values())) if unacked else (),
                    last_nack=ts.last_nack,
                    responses=ts.responses,
                    last_ack_at=ts.last_ack_at,
                    last_request_nacked=ts.last_request_nacked,
                    unacked_since=ts.unacked_since if unacked else None,
                )
            )
        return SotwStatistics(
            stream_id=self.stream_id,
            types=tuple(types),
            requests=self._requests,
            responses=self._responses,
            acks=self._acks,
            nacks=self._nacks,
            stale_requests=self._stale,
            last_nack=self._last_nack,
        )
