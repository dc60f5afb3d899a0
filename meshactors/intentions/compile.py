"""Compiles one destination's intentions and the mesh default into the Envoy RBAC filter config, as a plain dict.

The dict is the JSON form of `envoy.extensions.filters.http.rbac.v3.RBAC` (meshactors.envoy turns it into the
ECDS resource). Every caller matches exactly one rule, named after the intention that decides for it:

- enforced `rules` (action DENY): `deny:svc/<source>` per denying intention, and `deny:*` / `deny:mesh-default`
  when the fallback (the `*` intention, else the mesh default) denies every other caller;
- `shadow_rules` (action ALLOW, never enforced): the same for what is allowed (`allow:svc/<source>`, `allow:*`,
  `allow:mesh-default`), so an allowed request is attributed to its rule too.

`track_per_rule_stats` makes Envoy count each rule (`http.<hcm>.rbac.policy.<rule>.denied`, shadow ones as
`shadow_allowed`), and a 403's response details name the rule (`rbac_access_denied_matched_policy[deny:...]`).
A caller is identified by the URI SAN of its client certificate, `spiffe://<trust domain>/svc/<service>`.
"""

from __future__ import annotations

from typing import Any

from meshactors.intentions.model import ANY_SOURCE, Action, Rules

RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
MESH_DEFAULT_RULE = "mesh-default"


def spiffe_id(trust_domain: str, service: str) -> str:
    return f"spiffe://{trust_domain}/svc/{service}"


def rule_name(action: Action, source: str) -> str:
    """The RBAC policy name of the rule deciding for `source` (`*`, or MESH_DEFAULT_RULE for the mesh default)."""
    what = source if source in (ANY_SOURCE, MESH_DEFAULT_RULE) else f"svc/{source}"
    return f"{action.value}:{what}"


def _principal(trust_domain: str, service: str) -> dict[str, Any]:
    return {"authenticated": {"principal_name": {"exact": spiffe_id(trust_domain, service)}}}


def _others(trust_domain: str, exact: list[str]) -> dict[str, Any]:
    """Any caller but those with an intention of their own."""
    if not exact:
        return {"any": True}
    if len(exact) == 1:
        return {"not_id": _principal(trust_domain, exact[0])}
    return {"not_id": {"or_ids": {"ids": [_principal(trust_domain, s) for s in exact]}}}


def _policy(principal: dict[str, Any]) -> dict[str, Any]:
    return {"permissions": [{"any": True}], "principals": [principal]}


def rbac_config(rules: Rules | None, default: Action, trust_domain: str) -> dict[str, Any]:
    """The RBAC filter config of `rules`' destination (None: it has no intentions) under mesh default `default`."""
    sources = dict(rules.sources) if rules is not None else {}
    fallback = sources.pop(ANY_SOURCE, None)
    fallback_rule = ANY_SOURCE if fallback is not None else MESH_DEFAULT_RULE
    fallback = fallback if fallback is not None else default
    exact = sorted(sources)
    policies: dict[Action, dict[str, Any]] = {Action.DENY: {}, Action.ALLOW: {}}
    for source in exact:
        policies[sources[source]][rule_name(sources[source], source)] = _policy(_principal(trust_domain, source))
    policies[fallback][rule_name(fallback, fallback_rule)] = _policy(_others(trust_domain, exact))
    return {
        "@type": RBAC_TYPE,
        "rules": {"action": "DENY", "policies": policies[Action.DENY]},
        "shadow_rules": {"action": "ALLOW", "policies": policies[Action.ALLOW]},
        "track_per_rule_stats": True,
    }
