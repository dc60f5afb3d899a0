"""The deployment's topology: every actor kind, its actor names, the kind of a name, and finding actors in Ray."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
from ray._private import state as ray_state
from ray.exceptions import RayError

from meshactors.registry.shardmap import shard_name
from meshactors.runtime import hosting
from meshactors.runtime.hosting import HOST, ComponentHandle, LocalHandle
from meshactors.settings import MeshSettings
from meshactors.snapshot.settings import builder_map, builder_name
from meshactors.supervise import MISSING, Observed

# ---- kinds ---------------------------------------------------------------------------------------------------------
# A kind is either indexed (many actors named f"{kind}-{i}") or a singleton (one actor named like its kind).

REGISTRY_SHARD = "registry-shard"
REGISTRY_API = "registry-api"
EUREKA_API = "eureka-api"
SNAPSHOT_BUILDER = "snapshot-builder"
XDS_SERVER = "xds-server"
DASHBOARD = "dashboard"
CONTROLLER = "controller"
OTHER = "other"  # a named actor of the namespace that is not ours

KINDS: tuple[str, ...] = (
    REGISTRY_SHARD, REGISTRY_API, EUREKA_API, SNAPSHOT_BUILDER, XDS_SERVER, DASHBOARD, CONTROLLER,
)  # fmt: skip
INDEXED: frozenset[str] = frozenset({REGISTRY_SHARD, SNAPSHOT_BUILDER, XDS_SERVER})


# ---- names ---------------------------------------------------------------------------------------------------------
# shard_name (registry.shardmap) and builder_name / builder_map (snapshot.publisher) stay next to the pure code that
# routes by them; they are re-exported here so that the runtime has one place to ask.


def xds_server_name(index: int) -> str:
    return f"{XDS_SERVER}-{index}"


def name_of(kind: str, index: int | None = None) -> str:
    """The actor name of `kind` (and `index`, for indexed kinds)."""
    if kind in INDEXED:
        if index is None or index < 0:
            raise ValueError(f"{kind} actors are indexed: give an index >= 0 (got {index})")
        return f"{kind}-{index}"
    if kind not in KINDS:
        raise ValueError(f"unknown actor kind {kind!r}; one of {', '.join(KINDS)}")
    if index is not None:
        raise ValueError(f"{kind} is a single actor: no index")
    return kind


def parse(name: str) -> tuple[str, int | None]:
    """(kind, index) of an actor name (HOST for the mesh host); (OTHER, None) if it is not one of ours."""
    if (name in KINDS and name not in INDEXED) or name == HOST:
        return name, None
    kind, sep, index = name.rpartition("-")
    if sep and kind in INDEXED and index.isdigit() and str(int(index)) == index:
        return kind, int(index)
    return OTHER, None


def kind_of(name: str) -> str:
    """The kind of an actor name (OTHER if it is not one of ours)."""
    return parse(name)[0]


def deployment_names(settings: MeshSettings) -> list[str]:
    """Every actor the controller keeps, in creation order (the controller itself not included)."""
    return [
        *(shard_name(i) for i in range(settings.shards)),
        *(builder_name(i) for i in range(settings.builders)),
        *(xds_server_name(i) for i in range(len(settings.xds_port_list()))),
        REGISTRY_API,
        EUREKA_API,
        DASHBOARD,
    ]


# ---- finding actors ------------------------------------------------------------------------------------------------


def list_names(namespace: str) -> list[str]:
    """The names of every named actor in `namespace`, sorted (ours and any other), with the roles of a mesh host
    as names of their own (the co-hosted shape)."""
    names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == namespace}
    if HOST in names:
        try:
            host = ray.get_actor(HOST, namespace=namespace)
        except ValueError:  # gone since the listing
            return sorted(names)
        names |= set(hosting.local_names(host._actor_id.hex()) or _hosted_by(host))
    return sorted(names)


def names_of_kind(names: list[str], kind: str) -> list[str]:
    return [n for n in names if kind_of(n) == kind]


HOSTED_ASK_S = 15.0  # how long a driver waits for a (restarting) host to say which roles it hosts


def _hosted_by(host: Any) -> frozenset[str]:
    """The roles `host` hosts: asked once per host actor (they are fixed by its settings), then remembered; none
    while the host does not answer (asked again next time)."""
    actor_id = host._actor_id.hex()
    known = hosting.hosted(actor_id)
    if known is None:
        try:
            names = list(ray.get(host.components.remote(), timeout=HOSTED_ASK_S))
        except (RayError, TimeoutError):
            return frozenset()
        known = hosting.remember_hosted(actor_id, names)
    return known


def lookup(name: str, namespace: str) -> Any | None:
    """The handle of a named actor, or None if the name is free (a handle stays valid across restarts). A role of
    a mesh host gives a LocalHandle in the host's process and a ComponentHandle elsewhere (runtime.hosting)."""
    if (here := hosting.local(name)) is not None:
        return here
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        pass
    if name == HOST:
        return None
    try:
        host = ray.get_actor(HOST, namespace=namespace)
    except ValueError:
        return None
    return ComponentHandle(host, name) if name in _hosted_by(host) else None


def observe(name: str, namespace: str) -> tuple[Observed, Any]:
    """Ray's view of one named actor (MISSING if the name is free) and its handle; for a role of a mesh host, the
    host's process (its state, restarts, node and pid)."""
    handle = lookup(name, namespace)
    if handle is None:
        return Observed(name, MISSING), None
    actor_id = handle.actor_id if isinstance(handle, LocalHandle | ComponentHandle) else handle._actor_id.hex()
    info = ray_state.actors(actor_id=actor_id) or {}
    return (
        Observed(
            name=name,
            state=str(info.get("State", MISSING)),
            restarts=int(info.get("NumRestarts", 0)),
            node_id=str((info.get("Address") or {}).get("NodeID", "")),
            pid=int(info.get("Pid", 0) or 0),
        ),
        handle,
    )


@dataclass(frozen=True, slots=True)
class Located:
    """One named actor of a namespace as Ray reports it, with its kind."""

    kind: str
    observed: Observed
    handle: Any


def locate(namespace: str) -> list[Located]:
    """Every named actor of `namespace` that still has a handle, with its kind and Ray's view of it."""
    out = []
    for name in list_names(namespace):
        obs, handle = observe(name, namespace)
        if handle is not None:
            out.append(Located(kind_of(name), obs, handle))
    return out


__all__ = [
    "CONTROLLER",
    "DASHBOARD",
    "EUREKA_API",
    "HOST",
    "INDEXED",
    "KINDS",
    "OTHER",
    "REGISTRY_API",
    "REGISTRY_SHARD",
    "SNAPSHOT_BUILDER",
    "XDS_SERVER",
    "Located",
    "builder_map",
    "builder_name",
    "deployment_names",
    "kind_of",
    "list_names",
    "locate",
    "lookup",
    "name_of",
    "names_of_kind",
    "observe",
    "parse",
    "shard_name",
    "xds_server_name",
]
