"""VipSource: the per-VIP source an xDS host serves Cluster, ClusterLoadAssignment and gRPC Listener from.

It runs inside the xDS server's process and owns what a name means for these type URLs: every name is a VIP,
except that a gRPC client's Listener may be named `vip:port` (`xds:///vip:port`), which it derives from the
VIP's snapshot. Snapshots come from the snapshot builders through a `BuilderTransport` (direct gRPC in
production, wired by the runtime); the first answer for a never-seen VIP (its Cluster and Listener, which
do not depend on the registry) is given at once, before the endpoints are fetched.

It also serves the known-VIPs guard (ECDS, one name, key KNOWN_VIPS_KEY, never provisional: Envoy's listener
warms until the real answer) and learns the known names from it (`observe`): a VIP key whose name has no
registration counts against a budget per xDS server, so clients that are not Envoy cannot make it hold
unbounded junk either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from meshactors import log
from meshactors.envoy.resources import KNOWN_VIPS_FILTER, known_vips_names, renamed_grpc_listener
from meshactors.model.validate import is_valid_vip_name
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import CLUSTER, DEFAULT_KIND, ENDPOINT, EXTENSION_CONFIG, LISTENER, VersionedResource
from meshactors.snapshot.builder import KNOWN_VIPS_KEY, listener_for, provisional_vip

# A traffic policy's per-version cluster of a VIP: `vip~version` (`~` is in neither a VIP nor a version label).
_VERSION_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")

VIP_SOURCE = "vip"
VIP_TYPES: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER)
SOURCE_TYPES: tuple[str, ...] = (*VIP_TYPES, EXTENSION_CONFIG)

_log = log.get("snapshot.source")


@dataclass(frozen=True, slots=True)
class VipSourceSettings:
    # VIP keys one xDS server holds whose name has no registration; past it a new unknown name is refused
    max_unknown_vips: int = 10_000


@dataclass(frozen=True, slots=True)
class VipSourceStatistics:
    known_names: int  # -1 until the known-names snapshot was first seen
    vip_keys_held: int
    unknown_vip_keys_held: int
    unknown_vip_budget: int
    refused_by_budget: int


class BuilderTransport(Protocol):
    """How a VipSource reaches the snapshot builders owning the VIPs."""

    async def subscribe(self, vips: list[str]) -> list[Snapshot]: ...

    async def unsubscribe(self, vips: list[str]) -> None: ...


def vip_of(type_url: str, name: str) -> str:
    """The VIP a resource name belongs to: listeners may be named `vip:port` (gRPC's `xds:///vip:port`), clusters
    and their assignments `vip~version` (a traffic policy's per-version cluster)."""
    if type_url == LISTENER and ":" in name:
        return name.rsplit(":", 1)[0]
    if type_url in (CLUSTER, ENDPOINT) and "~" in name:
        return name.split("~", 1)[0]
    return name


def validate_name(type_url: str, name: str) -> str | None:
    """Why a subscribed name cannot be served as a VIP resource or the guard's config (None: it can)."""
    if type_url == EXTENSION_CONFIG:
        return (
            None if name == KNOWN_VIPS_FILTER else f"{name[:100]!r}: the only extension config is {KNOWN_VIPS_FILTER}"
        )
    if type_url not in VIP_TYPES:
        return f"type {type_url} is not served by the VIP source"
    vip = vip_of(type_url, name)
    if not is_valid_vip_name(vip):
        return f"{vip[:100]!r} is not a VIP name (lowercase DNS name)"
    if type_url == LISTENER and vip != name:
        port = name.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"{name[:120]!r}: the port must be a number 1-65535"
    if type_url in (CLUSTER, ENDPOINT) and vip != name and not _VERSION_RE.match(name.split("~", 1)[1]):
        return f"{name[:120]!r}: a version cluster is vip~version (letters, digits and . _ + -, at most 64)"
    return None


class VipSource:
    """A `meshactors.resources.source.Source` over the snapshot builders.

    The unknown-VIP budget: every VIP key the host holds or is about to hold (from the first answer on,
    `provisional`, until `forget`) is tracked; those whose name is not known (no registration, as the last
    known-names snapshot `observe`d says) count against `max_unknown_vips`. Past it `validate` refuses a new
    unknown name; a known name, or one already held, is never refused by it."""

    name = VIP_SOURCE
    type_urls = SOURCE_TYPES

    def __init__(self, transport: BuilderTransport, settings: VipSourceSettings | None = None) -> None:
        self.transport = transport
        self.settings = settings or VipSourceSettings()
        # vip -> (`vip:port` name, variant) -> (version of the VIP's listener it came from, the derived Listener)
        self._listeners: dict[str, dict[tuple[str, str], tuple[str, VersionedResource]]] = {}
        self._known: frozenset[str] | None = None  # None: not seen yet (every name counts as unknown)
        self._known_version = ""
        self._held: set[str] = set()  # VIP keys held or being fetched
        self._unknown: set[str] = set()  # those of them whose name is not known
        self.refused_by_budget = 0

    def _is_known(self, vip: str) -> bool:
        return self._known is not None and vip in self._known

    def validate(self, type_url: str, name: str) -> str | None:
        reason = validate_name(type_url, name)
        if reason is not None or type_url == EXTENSION_CONFIG:
            return reason
        vip = vip_of(type_url, name)
        if vip in self._held or self._is_known(vip) or len(self._unknown) < self.settings.max_unknown_vips:
            return None
        self.refused_by_budget += 1
        if self.refused_by_budget == 1 or self.refused_by_budget % 1000 == 0:
            _log.warning("unknown VIP refused: the budget of this xDS server is spent", vip=vip[:100],
                         refused=self.refused_by_budget, budget=self.settings.max_unknown_vips)  # fmt: skip
        return (
            f"{vip[:100]!r} has no registration and this xDS server already holds "
            f"{self.settings.max_unknown_vips} VIPs that have none (--xds-max-unknown-vips)"
        )

    def key_of(self, type_url: str, name: str) -> str:
        if type_url == EXTENSION_CONFIG:
            return KNOWN_VIPS_KEY
        return vip_of(type_url, name)

    def _hold(self, key: str) -> None:
        if key == KNOWN_VIPS_KEY:
            return
        self._held.add(key)
        if not self._is_known(key):
            self._unknown.add(key)

    def provisional(self, key: str) -> Snapshot | None:
        if key == KNOWN_VIPS_KEY:
            return None  # the guard waits for the real names: a wrong first config would cost every request
        self._hold(key)
        return provisional_vip(key)

    def observe(self, snapshot: Snapshot) -> None:
        """Learn the known names from the known-names snapshot the host applied; other snapshots teach nothing."""
        if snapshot.key != KNOWN_VIPS_KEY:
            return
        res = snapshot.get(EXTENSION_CONFIG, KNOWN_VIPS_FILTER)
        if res is None or res.body is None or res.version == self._known_version:
            return
        try:
            known = known_vips_names(res.body)
        except ValueError as exc:  # a builder bug: keep the names we had
            _log.error("known-names snapshot unreadable; keeping the last names", error=str(exc)[:300])
            return
        self._known, self._known_version = known, res.version
        self._unknown = {k for k in self._held if k not in known}

    def statistics(self) -> VipSourceStatistics:
        return VipSourceStatistics(
            known_names=len(self._known) if self._known is not None else -1,
            vip_keys_held=len(self._held),
            unknown_vip_keys_held=len(self._unknown),
            unknown_vip_budget=self.settings.max_unknown_vips,
            refused_by_budget=self.refused_by_budget,
        )

    def resolve(self, snapshot: Snapshot, type_url: str, name: str, kind: str) -> VersionedResource | None:
        if type_url == LISTENER and name != snapshot.key:
            base = snapshot.get(LISTENER, snapshot.key, kind)
            if base is None:
                return None
            by_name = self._listeners.setdefault(snapshot.key, {})
            held = by_name.get((name, base.variant))
            if held is not None and held[0] == base.version:
                return held[1]
            # derived from the VIP's own listener for this kind (with its policy's routes, if any)
            if base.variant == DEFAULT_KIND:
                found = listener_for(name, snapshot.key)
            else:
                body = renamed_grpc_listener(base.body or b"", name)
                found = VersionedResource.of(LISTENER, name, body, variant=base.variant, refs=base.refs)
            by_name[(name, base.variant)] = (base.version, found)
            return found
        return snapshot.get(type_url, name, kind)

    def derived_names(self, snapshot: Snapshot, type_url: str) -> list[str]:
        if type_url != LISTENER:
            return []
        return list(dict.fromkeys(name for name, _variant in self._listeners.get(snapshot.key, ())))

    def forget(self, key: str) -> None:
        self._listeners.pop(key, None)
        self._held.discard(key)
        self._unknown.discard(key)

    async def fetch(self, keys: list[str]) -> list[Snapshot]:
        for key in keys:
            self._hold(key)
        return await self.transport.subscribe(keys)

    async def release(self, keys: list[str]) -> None:
        await self.transport.unsubscribe(keys)
