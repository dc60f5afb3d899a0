"""Reports the control plane's actors: name, state, restart count, node, and each actor's own statistics."""

from __future__ import annotations

from typing import Any

import ray

from meshactors.errors import MeshError
from meshactors.runtime.calls import call_sync
from meshactors.runtime.controller import observe


def actor_status(namespace: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """One record per named actor of the namespace, with its statistics when it is alive."""
    rows = []
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == namespace)
    for name in names:
        obs, handle = observe(name, namespace)
        if handle is None:
            continue
        row: dict[str, Any] = {
            "name": name,
            "state": obs.state,
            "restarts": obs.restarts,
            "node_id": obs.node_id,
            "pid": obs.pid,
        }
        if obs.state == "ALIVE":
            try:
                row["stats"] = call_sync(handle, "statistics", timeout_s=timeout_s)
            except MeshError as exc:
                row["stats"] = {"error": str(exc)}
        rows.append(row)
    return rows
