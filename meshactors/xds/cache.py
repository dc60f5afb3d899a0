"""ResourceCache: the VIP resources one xDS host holds for its sessions (filled on demand, updated by pushes)."""

from __future__ import annotations

from collections.abc import Iterable

from meshactors.model.validate import is_valid_vip_name
from meshactors.snapshot.builder import VipResources, cluster_for, listener_for
from meshactors.xds.types import CLUSTER, ENDPOINT, LISTENER, VersionedResource

SERVED_TYPES = (CLUSTER, ENDPOINT, LISTENER)


def vip_of(type_url: str, name: str) -> str:
    """The VIP a resource name belongs to: listeners may be named `vip:port` (gRPC's `xds:///vip:port`)."""
    if type_url == LISTENER:
        return name.rsplit(":", 1)[0] if ":" in name else name
    return name


def validate_name(type_url: str, name: str) -> str | None:
    """Why a subscribed name cannot be served (None: it can). Bounds what a client can make us hold."""
    if type_url not in SERVED_TYPES:
        return f"type {type_url} is not served by meshactors"
    vip = vip_of(type_url, name)
    if not is_valid_vip_name(vip):
        return f"{vip!r} is not a VIP name (lowercase DNS name)"
    if type_url == LISTENER and vip != name:
        port = name.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"{name!r}: the port must be a number 1-65535"
    return None


class ResourceCache:
    """A ResourceView over the VIPs this host holds. Pure: the host decides what to fetch and when."""

    def __init__(self) -> None:
        self._vips: dict[str, VipResources] = {}
        # VIPs asked for but not fetched yet: their Cluster and Listener do not depend on the registry, so
        # they are answered at once while the endpoints are fetched (the ClusterLoadAssignment waits).
        self._provisional: set[str] = set()
        self._listeners: dict[str, dict[str, VersionedResource]] = {}  # vip -> listener name -> resource

    def __contains__(self, vip: object) -> bool:
        return vip in self._vips

    def __len__(self) -> int:
        return len(self._vips)

    def vips(self) -> list[str]:
        return list(self._vips)

    def versions(self) -> dict[str, tuple[str, str]]:
        return {v: (r.cluster.version, r.load_assignment.version) for v, r in self._vips.items()}

    def provisional(self, vip: str) -> bool:
        """Serve `vip`'s Cluster and Listener before its endpoints arrive. False if it is already held."""
        if vip in self._vips or vip in self._provisional:
            return False
        self._provisional.add(vip)
        return True

    def drop_provisional(self, vip: str) -> None:
        self._provisional.discard(vip)

    def is_provisional(self, vip: str) -> bool:
        return vip in self._provisional

    def get(self, type_url: str, name: str) -> VersionedResource | None:
        vip = vip_of(type_url, name)
        res = self._vips.get(vip)
        if res is None:
            if vip not in self._provisional:
                return None
            if type_url == CLUSTER:
                return cluster_for(vip)
            if type_url == LISTENER:
                return self._listener(vip, name)
            return None
        if type_url == CLUSTER:
            return res.cluster
        if type_url == ENDPOINT:
            return res.load_assignment
        if type_url == LISTENER:
            return res.listener if name == vip else self._listener(vip, name)
        return None

    def _listener(self, vip: str, name: str) -> VersionedResource:
        by_name = self._listeners.setdefault(vip, {})
        lis = by_name.get(name)
        if lis is None:
            lis = by_name[name] = listener_for(name, vip)
        return lis

    def names(self, type_url: str) -> Iterable[str]:
        if type_url not in SERVED_TYPES:
            return ()
        if type_url == LISTENER:
            return [n for vip in self._vips for n in (vip, *self._listeners.get(vip, {}))]
        return list(self._vips)

    def apply(self, res: VipResources) -> list[tuple[str, str]]:
        """Store a VIP's resources; returns the (type URL, name) pairs whose version changed."""
        old = self._vips.get(res.vip)
        self._vips[res.vip] = res
        self._provisional.discard(res.vip)
        changed: list[tuple[str, str]] = []
        if old is None or old.cluster.version != res.cluster.version:
            changed.append((CLUSTER, res.vip))
        if old is None or old.load_assignment.version != res.load_assignment.version:
            changed.append((ENDPOINT, res.vip))
        if old is None:
            changed.append((LISTENER, res.vip))
            changed.extend((LISTENER, n) for n in self._listeners.get(res.vip, {}))
        return changed

    def evict(self, vip: str) -> None:
        self._vips.pop(vip, None)
        self._provisional.discard(vip)
        self._listeners.pop(vip, None)
