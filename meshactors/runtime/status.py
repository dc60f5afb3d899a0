"""Reports the control plane's actors: name, state, restart count, and each actor's own statistics."""

from __future__ import annotations

from typing import Any

import ray
from ray._private import state as ray_state

from meshactors.errors import MeshError
from meshactors.runtime.calls import call_sync


def actor_status(namespace: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """One record per named actor of the namespace, with its statistics when it is alive."""
    rows = []
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == namespace)
    for name in names:
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:
            continue
        info = ray_state.actors(actor_id=handle._actor_id.hex()) or {}
        row: dict[str, Any] = {
            "name": name,
            "state": info.get("State", "UNKNOWN"),
            "restarts": int(info.get("NumRestarts", 0)),
            "node": (info.get("Address") or {}).get("IPAddress", ""),
            "pid": info.get("Pid", 0),
        }
        if row["state"] == "ALIVE":
            try:
                row["stats"] = call_sync(handle, "statistics", timeout_s=timeout_s)
            except MeshError as exc:
                row["stats"] = {"error": str(exc)}
        rows.append(row)
    return rows
