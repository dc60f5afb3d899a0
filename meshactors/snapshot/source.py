"""VipSource: the per-VIP source an xDS host serves Cluster, ClusterLoadAssignment and gRPC Listener from.

It runs inside the xDS server's process and owns what a name means for these type URLs: every name is a VIP,
except that a gRPC client's Listener may be named `vip:port` (`xds:///vip:port`), which it derives from the
VIP's snapshot. Snapshots come from the snapshot builders through a `BuilderTransport` (direct gRPC in
production, wired by the runtime); the first answer for a never-seen VIP (its Cluster and Listener, which
do not depend on the registry) is given at once, before the endpoints are fetched.
"""

from __future__ import annotations

import re
from typing import Protocol

from meshactors.envoy.resources import renamed_grpc_listener
from meshactors.model.validate import is_valid_vip_name
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import CLUSTER, DEFAULT_KIND, ENDPOINT, LISTENER, VersionedResource
from meshactors.snapshot.builder import listener_for, provisional_vip

# A traffic policy's per-version cluster of a VIP: `vip~version` (`~` is in neither a VIP nor a version label).
_VERSION_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")

VIP_SOURCE = "vip"
VIP_TYPES: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER)


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
    """Why a subscribed name cannot be served as a VIP resource (None: it can)."""
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
    """A `meshactors.resources.source.Source` over the snapshot builders."""

    name = VIP_SOURCE
    type_urls = VIP_TYPES

    def __init__(self, transport: BuilderTransport) -> None:
        self.transport = transport
        # vip -> (`vip:port` name, variant) -> (version of the VIP's listener it came from, the derived Listener)
        self._listeners: dict[str, dict[tuple[str, str], tuple[str, VersionedResource]]] = {}

    def validate(self, type_url: str, name: str) -> str | None:
        return validate_name(type_url, name)

    def key_of(self, type_url: str, name: str) -> str:
        return vip_of(type_url, name)

    def provisional(self, key: str) -> Snapshot | None:
        return provisional_vip(key)

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

    async def fetch(self, keys: list[str]) -> list[Snapshot]:
        return await self.transport.subscribe(keys)

    async def release(self, keys: list[str]) -> None:
        await self.transport.unsubscribe(keys)
