"""The chaos convergence check: every actor ready, no xDS session lagging, every VIP at its builder's versions.

It asks the running actors (through meshactors.runtime, never Ray itself) and answers yes, or no with the reason.
"""

from __future__ import annotations

import time

from meshactors import log
from meshactors.errors import MeshError
from meshactors.runtime.calls import call_sync
from meshactors.runtime.ops import call_actor
from meshactors.runtime.topology import (
    CONTROLLER,
    SNAPSHOT_BUILDER,
    XDS_SERVER,
    builder_map,
    kind_of,
    list_names,
    observe,
)

_log = log.get("chaos.convergence")


def converged(namespace: str, vips_hint: list[str] | None = None) -> tuple[bool, str]:
    """Every actor alive and ready, no xDS session lagging, and every held VIP at the registry's versions."""
    names = list_names(namespace)
    try:
        for name in names:
            obs, handle = observe(name, namespace)
            if obs.state != "ALIVE" or handle is None:
                return False, f"{name}: {obs.state}"
            # the controller's own ready() is its last reconcile round's view, which lags by a round: every
            # actor is checked here directly instead
            if name != CONTROLLER and not call_sync(handle, "ready", timeout_s=3):
                return False, f"{name}: not ready"
        held: dict[str, tuple[str, str]] = {}
        for name in names:
            if kind_of(name) != XDS_SERVER:
                continue
            conv = call_actor(name, namespace, "convergence", timeout_s=3)
            if conv["lagging"]:
                return False, f"{name}: sessions lagging {conv['lagging'][:3]}"
            for vip, versions in conv["versions"].items():
                if held.setdefault(vip, versions) != versions:
                    return False, f"xDS servers hold different versions of {vip}"
        builders = [n for n in names if kind_of(n) == SNAPSHOT_BUILDER]
        if builders and held:
            bmap = builder_map(len(builders))
            by_builder: dict[str, list[str]] = {}
            for vip in held:
                by_builder.setdefault(bmap.owner(vip), []).append(vip)
            for builder, vips in by_builder.items():
                want = call_actor(builder, namespace, "versions", vips, timeout_s=3)
                for vip in vips:
                    if tuple(want.get(vip, ())) != tuple(held[vip]):
                        return False, f"{vip}: xDS servers hold an old version"
    except (MeshError, ValueError) as exc:
        return False, str(exc)
    return True, ""


def wait_converged(namespace: str, timeout_s: float) -> float | None:
    start = time.monotonic()
    why = ""
    while time.monotonic() - start < timeout_s:
        ok, why = converged(namespace)
        if ok:
            return time.monotonic() - start
        time.sleep(0.1)
    _log.warning("control plane did not converge", reason=why, timeout_s=timeout_s)
    return None
