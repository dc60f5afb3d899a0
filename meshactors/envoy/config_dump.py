"""What an Envoy holds, per xDS type URL and resource name, from its admin `/config_dump?include_eds` JSON."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from meshactors.errors import InvalidArgument, Unavailable
from meshactors.resources.types import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, SECRET

_DUMP = "type.googleapis.com/envoy.admin.v3."
MAX_DUMP_BYTES = 64 << 20  # an Envoy holding more than this is not shown


@dataclass(frozen=True, slots=True)
class Held:
    """One dynamic resource an Envoy holds: its version as Envoy reports it, its state, and the resource JSON."""

    type_url: str
    name: str
    version: str
    state: str  # active, warming, or error (a listener that failed to apply)
    resource: dict[str, Any]


def _entries(dump_type: str, cfg: Mapping[str, Any]) -> Iterator[tuple[str, str, str, Mapping[str, Any]]]:
    """(type URL, state, version, resource) of one config dump section."""
    if dump_type == "ClustersConfigDump":
        for state, key in (("active", "dynamic_active_clusters"), ("warming", "dynamic_warming_clusters")):
            for e in cfg.get(key) or ():
                yield CLUSTER, state, e.get("version_info", ""), e.get("cluster") or {}
    elif dump_type == "EndpointsConfigDump":
        for e in cfg.get("dynamic_endpoint_configs") or ():
            yield ENDPOINT, "active", e.get("version_info", ""), e.get("endpoint_config") or {}
    elif dump_type == "ListenersConfigDump":
        for e in cfg.get("dynamic_listeners") or ():
            for state in ("active", "warming"):
                st = e.get(f"{state}_state")
                if st:
                    yield LISTENER, state, st.get("version_info", ""), st.get("listener") or {}
            if e.get("error_state"):
                failed = e["error_state"]
                yield LISTENER, "error", failed.get("version_info", ""), failed.get("failed_configuration") or {}
    elif dump_type == "RoutesConfigDump":
        for e in cfg.get("dynamic_route_configs") or ():
            yield ROUTE, "active", e.get("version_info", ""), e.get("route_config") or {}
    elif dump_type == "SecretsConfigDump":
        for state, key in (("active", "dynamic_active_secrets"), ("warming", "dynamic_warming_secrets")):
            for e in cfg.get(key) or ():
                yield SECRET, state, e.get("version_info", ""), e.get("secret") or {}
    elif dump_type == "EcdsConfigDump":
        for e in cfg.get("ecds_filters") or ():
            yield EXTENSION_CONFIG, "active", e.get("version_info", ""), e.get("ecds_filter") or {}


def _name(type_url: str, resource: Mapping[str, Any]) -> str:
    return str(resource.get("cluster_name" if type_url == ENDPOINT else "name", ""))


def held_resources(dump: Mapping[str, Any]) -> dict[str, dict[str, Held]]:
    """type URL -> name -> what Envoy holds (the active state wins over a warming one of the same name)."""
    out: dict[str, dict[str, Held]] = {}
    for cfg in dump.get("configs") or ():
        dump_type = str(cfg.get("@type", "")).removeprefix(_DUMP)
        for type_url, state, version, resource in _entries(dump_type, cfg):
            name = _name(type_url, resource)
            by_name = out.setdefault(type_url, {})
            if name in by_name and by_name[name].state == "active":
                continue
            by_name[name] = Held(type_url, name, str(version), state, dict(resource))
    return out


def fetch(admin: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """GET http://ADMIN/config_dump?include_eds from an Envoy admin address HOST:PORT."""
    host, sep, port = admin.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidArgument("--envoy-admin", f"{admin[:80]!r} is not HOST:PORT")
    url = f"http://{admin}/config_dump?include_eds"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            data = resp.read(MAX_DUMP_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"Envoy admin {admin}: {exc}") from exc
    if len(data) > MAX_DUMP_BYTES:
        raise Unavailable(f"Envoy admin {admin}: the config dump is larger than {MAX_DUMP_BYTES >> 20} MiB")
    try:
        dump = json.loads(data)
    except ValueError as exc:
        raise Unavailable(f"Envoy admin {admin}: /config_dump is not JSON ({exc})") from exc
    if not isinstance(dump, dict):
        raise Unavailable(f"Envoy admin {admin}: /config_dump is not a JSON object")
    return dump
