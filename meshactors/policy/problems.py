"""What an accepted policy cannot do with the instances a VIP has now (reported by apply and status, not errors)."""

from __future__ import annotations

from collections.abc import Iterable

from meshactors.policy.model import Policy, format_percent


def version_problems(vip: str, policy: Policy, up_versions: Iterable[str]) -> list[tuple[str, str]]:
    """(field path, reason) for every version the routing of `vip` sends traffic to that no UP instance has.

    `up_versions` are the version labels of `vip`'s UP instances (with repeats, "" for unlabelled ones). A
    version without instances is still compiled: its cluster has no endpoints, so its share of the requests
    gets 503 "no healthy upstream" until an instance of that version comes up.
    """
    labels = set(up_versions)
    routing = policy.routing
    if routing is None:
        return []
    out: list[tuple[str, str]] = []
    for i, entry in enumerate(routing.split or ()):
        if entry.weight and entry.version not in labels:
            out.append(
                (
                    f"routing.split[{i}].version",
                    f"split names version {entry.version} with no UP instance of {vip}: "
                    f"its {format_percent(entry.weight)}% of the requests get 503",
                )
            )
    for i, route in enumerate(routing.routes or ()):
        if route.version not in labels:
            out.append(
                (
                    f"routing.routes[{i}].version",
                    f"route names version {route.version} with no UP instance of {vip}: its requests get 503",
                )
            )
    if routing.split and "" in labels:
        out.append(("routing.split", f"UP instances of {vip} without a version label get no traffic from the split"))
    return out
