"""Reports the control plane's actors: name, kind, state, restart count, node, and each actor's own statistics.

Actors answer `statistics()` with frozen dataclasses (or, for some still, dicts); `to_json` renders either, and
`format_table` turns the rows into the text `meshactors status` prints.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from meshactors.errors import MeshError
from meshactors.runtime.calls import call_sync
from meshactors.runtime.topology import locate


def to_json(obj: Any) -> Any:
    """A JSON-ready copy of `obj`: dataclasses become dicts (recursively, also inside dicts and sequences), tuples
    and sets become lists, enums their values; anything else that JSON cannot hold becomes its str()."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_json(dataclasses.asdict(obj))
    if isinstance(obj, enum.Enum):
        return to_json(obj.value)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json(v) for v in obj]
    return str(obj)


def actor_status(namespace: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """One record per named actor of the namespace, with its statistics (as `to_json` renders them) when alive."""
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
                row["stats"] = to_json(call_sync(actor.handle, "statistics", timeout_s=timeout_s))
            except MeshError as exc:
                row["stats"] = {"error": str(exc)}
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """One line per actor; the details are the statistics' scalar fields."""
    lines = [f"{'ACTOR':<24} {'STATE':<14} {'RESTARTS':>8}  DETAILS"]
    for row in rows:
        stats = to_json(row.get("stats") or {})
        details = " ".join(f"{k}={v}" for k, v in stats.items() if not isinstance(v, dict | list))
        lines.append(f"{row['name']:<24} {row['state']:<14} {row['restarts']:>8}  {details}")
    return "\n".join(lines)
