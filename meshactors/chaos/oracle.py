"""The chaos command's convergence oracle: what every xDS session should have ACKed, computed from etcd alone.

Independent of the components it checks: the expected versions come from the registrations read from etcd and
built with the pure per-VIP builder (the same code, none of the builders' or xDS servers' state), and are
compared with what each session reports it ACKed. Pure: the caller reads etcd and the sessions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshactors.envoy.resources import KNOWN_VIPS_FILTER
from meshactors.policy.model import Policy
from meshactors.resources.snapshot import Snapshot
from meshactors.resources.types import ENDPOINT, EXTENSION_CONFIG, zone_variant
from meshactors.snapshot.builder import build_known_vips, build_vip
from meshactors.snapshot.mesh import MeshView
from meshactors.snapshot.source import VIP_TYPES, VipSource, validate_name, vip_of
from meshactors.store.feed import Registered
from meshactors.store.policy_feed import effective
from meshactors.xds.types import WILDCARD


class _NoTransport:
    """The oracle builds, it never fetches."""

    async def subscribe(self, vips: list[str]) -> list[Snapshot]:
        raise AssertionError("the oracle does not fetch")

    async def unsubscribe(self, vips: list[str]) -> None:
        raise AssertionError("the oracle does not fetch")


class Expected:
    """The resources etcd's registrations and policy documents give each VIP (and the known-names guard), built
    on first use."""

    def __init__(self, registrations: Iterable[Registered], policies: Mapping[str, Policy] | None = None) -> None:
        self._view = MeshView()
        for reg in registrations:
            self._view.put(reg.ref, reg.instance)
        self._policies = dict(policies or {})
        self._built: dict[str, Snapshot] = {}
        self._source = VipSource(_NoTransport())

    def version(self, type_url: str, name: str, kind: str, zone: str = "") -> str | None:
        """The version a client of `kind` in `zone` should hold of (type URL, name); None for names no VIP source
        serves. A ClusterLoadAssignment's variant for the zone comes first (locality failover), then the kind's."""
        if validate_name(type_url, name) is not None:
            return None
        if type_url == EXTENSION_CONFIG and name == KNOWN_VIPS_FILTER:
            known = build_known_vips(self._view.names()).get(EXTENSION_CONFIG, KNOWN_VIPS_FILTER)
            return known.version if known is not None else None
        if type_url not in VIP_TYPES:
            return None
        vip = vip_of(type_url, name)
        snap = self._built.get(vip)
        if snap is None:
            snap = self._built[vip] = build_vip(vip, self._view.instances(vip), effective(self._policies, vip))
        wanted = zone_variant(zone)
        if wanted and type_url == ENDPOINT:
            res = self._source.resolve(snap, type_url, name, wanted)
            if res is not None and res.variant == wanted:
                return res.version
        res = self._source.resolve(snap, type_url, name, kind)
        return res.version if res is not None else None


def session_lag(expected: Expected, session: Mapping[str, Any]) -> list[str]:
    """Why one session (as `XdsServer.sessions()` reports it) is not at etcd's state; empty when it is."""
    out: list[str] = []
    stream = session.get("stream_id", "?")
    kind = session.get("client_kind", "")
    zone = session.get("zone", "")
    for t in session.get("protocol", {}).get("types", ()):
        type_url = t["type_url"]
        if t.get("unacked") or t.get("unacked_version_info"):
            out.append(f"{stream}: {type_url.rsplit('.', 1)[-1]} sent but not ACKed")
            continue
        acked = {name: version for name, version in t.get("acked", ())}
        names = t.get("subscribed") if "subscribed" in t else t.get("names", ())
        for name in names or ():
            if name == WILDCARD:
                continue
            want = expected.version(type_url, name, kind, zone)
            if want is not None and acked.get(name) != want:
                out.append(
                    f"{stream}: {type_url.rsplit('.', 1)[-1]} {name!r} ACKed {acked.get(name)!r}, etcd gives {want!r}"
                )
    return out


def lagging(
    registrations: Iterable[Registered],
    sessions: Iterable[Mapping[str, Any]],
    policies: Mapping[str, Policy] | None = None,
) -> list[str]:
    """Every way the sessions differ from what etcd's registrations and policies give (empty: converged)."""
    return lagging_behind(Expected(registrations, policies), sessions)


def lagging_behind(expected: Expected, sessions: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every way the sessions differ from `expected` (which may be reused while etcd's revision stays)."""
    out: list[str] = []
    for session in sessions:
        out.extend(session_lag(expected, session))
    return out
