"""What a stream state machine reads and checks: the ResourceView the host fills, name checks, nonces."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable
from typing import Protocol

from meshactors.xds.types import WILDCARD, Limits, VersionedResource

# A type URL a stream keeps state for (every xDS type URL is far shorter; a client may send megabytes).
MAX_TYPE_URL_LENGTH = 256

# (type URL, name) -> None when the name is acceptable, else the reason it is not.
NameValidator = Callable[[str, str], str | None]


class ResourceView(Protocol):
    """The resources a host can serve, as the state machines read them (never written by them).

    `get` returns None when the resource does not exist or is not loaded yet; the host calls the state
    machine's `on_update` for a (type URL, name) once it knows more (also when it learns the name is
    absent: that is when a resource the client holds is sent as removed). `names` lists every name
    of a type URL and must be complete: it answers wildcard subscriptions.
    """

    def get(self, type_url: str, name: str) -> VersionedResource | None: ...

    def names(self, type_url: str) -> Iterable[str]: ...


class DictView:
    """A ResourceView over a dict: for tests and for hosts that hold every resource in memory."""

    def __init__(self, resources: Iterable[VersionedResource] = ()) -> None:
        self._by_type: dict[str, dict[str, VersionedResource]] = {}
        self.put(*resources)

    def get(self, type_url: str, name: str) -> VersionedResource | None:
        return self._by_type.get(type_url, {}).get(name)

    def names(self, type_url: str) -> Iterable[str]:
        return tuple(self._by_type.get(type_url, {}))

    def put(self, *resources: VersionedResource) -> list[tuple[str, str]]:
        """Store resources; returns the (type URL, name) pairs whose version changed, for `on_update`."""
        changed: list[tuple[str, str]] = []
        for res in resources:
            by_name = self._by_type.setdefault(res.type_url, {})
            old = by_name.get(res.name)
            by_name[res.name] = res
            if old != res:
                changed.append((res.type_url, res.name))
        return changed

    def delete(self, type_url: str, name: str) -> list[tuple[str, str]]:
        """Forget a resource; returns [(type URL, name)] if it existed, for `on_update`."""
        if self._by_type.get(type_url, {}).pop(name, None) is None:
            return []
        return [(type_url, name)]


def check_name(limits: Limits, validator: NameValidator | None, type_url: str, name: str) -> str | None:
    """The reason a subscribed name is refused, or None when it may be stored."""
    if not name:
        return "empty name"
    if name == WILDCARD:
        return None
    if len(name) > limits.max_name_length:
        return f"longer than {limits.max_name_length} characters"
    if validator is not None:
        return validator(type_url, name)
    return None


class NonceSource:
    """Fresh nonces for one stream: a random per-stream part and a counter, so none is ever reused."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"
