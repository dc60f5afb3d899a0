"""Reports the control plane's actors: name, kind, state, restart count, node, and each actor's own statistics."""

from __future__ import annotations

from typing import Any

from meshactors.errors import MeshError
from meshactors.runtime.calls import call_sync
from meshactors.runtime.topology import locate


def actor_status(namespace: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """One record per named actor of the namespace, with its statistics when it is alive."""
    rows = []
    for actor in locate(namespace):
        obs = actor.observed
        row: dict[str, Any] = {
            "name": obs.name,
            "kind": actor.kind,
            "state": obs.state,
            "restarts": obs.restarts,
            "node_id": obs.node_id,
            "pid": obs.pid,
        }
        if obs.state == "ALIVE":
            try:
                row["stats"] = call_sync(actor.handle, "statistics", timeout_s=timeout_s)
            except MeshError as exc:
                row["stats"] = {"error": str(exc)}
        rows.append(row)
    return rows
