"""The intention model: one rule set per destination, the mesh default, validation and the decision rule.

An intention says whether service SOURCE (a SPIFFE identity `spiffe://<trust domain>/svc/SOURCE`, or `*`: any
mesh identity) may call DESTINATION (a VIP/SVIP name). For one caller the most specific rule wins: the caller's
own intention, else the destination's `*` intention, else the mesh default. Without a stored mesh default it is
DEFAULT_ACTION (allow: what SVIPs did before intentions existed); `intention default deny` makes the mesh
closed, so that only what an intention allows gets through.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshactors.errors import CodecError, InvalidArgument
from meshactors.model.validate import validate_vip_name

ANY_SOURCE = "*"
MAX_SOURCES = 256  # intentions one destination may hold (its RBAC config stays small)


class Action(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


DEFAULT_ACTION = Action.ALLOW


def parse_action(value: str, field_name: str = "action") -> Action:
    """`allow` or `deny`; InvalidArgument naming the field otherwise."""
    try:
        return Action(value)
    except ValueError:
        raise InvalidArgument(field_name, f"{value[:40]!r} is not allow or deny") from None


def validate_source(source: str, field_name: str = "source") -> str:
    """A source is a service name (a lowercase DNS name, what a service token's SPIFFE ID ends with) or `*`."""
    if source == ANY_SOURCE:
        return source
    return validate_vip_name(source, field_name)


def validate_destination(destination: str, field_name: str = "destination") -> str:
    """A destination is a VIP/SVIP name (never `*`: the mesh default is set on its own)."""
    if destination == ANY_SOURCE:
        raise InvalidArgument(field_name, "must name one VIP ('*' is no destination: set the mesh default instead)")
    return validate_vip_name(destination, field_name)


@dataclass(frozen=True, slots=True)
class Intention:
    source: str
    destination: str
    action: Action


@dataclass(frozen=True, slots=True)
class Rules:
    """The intentions of one destination: source (or `*`) -> action."""

    destination: str
    sources: Mapping[str, Action] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_destination(self.destination)
        if len(self.sources) > MAX_SOURCES:
            raise InvalidArgument("source", f"{self.destination} would have {len(self.sources)} intentions, "
                                  f"at most {MAX_SOURCES}")  # fmt: skip
        for source, action in self.sources.items():
            validate_source(source)
            if not isinstance(action, Action):
                raise InvalidArgument("action", f"{action!r} is not allow or deny")

    def with_rule(self, source: str, action: Action) -> Rules:
        return Rules(self.destination, {**self.sources, validate_source(source): action})

    def without(self, source: str) -> Rules:
        return Rules(self.destination, {s: a for s, a in self.sources.items() if s != source})

    def intentions(self) -> list[Intention]:
        """`*` first, then by source."""
        order = sorted(self.sources, key=lambda s: (s != ANY_SOURCE, s))
        return [Intention(s, self.destination, self.sources[s]) for s in order]


def decide(rules: Rules | None, default: Action, source: str) -> tuple[Action, str]:
    """What `source` (a service name) may do to the rules' destination, and the rule that says so:
    `source`'s own intention, else `*`, else the mesh default (`default`)."""
    sources = rules.sources if rules is not None else {}
    if source in sources:
        return sources[source], source
    if ANY_SOURCE in sources:
        return sources[ANY_SOURCE], ANY_SOURCE
    return default, "default"


# ---- the stored form (JSON): one document per destination, and one for the mesh default --------------------------


def encode_rules(rules: Rules) -> bytes:
    doc = {"destination": rules.destination, "sources": {s: rules.sources[s].value for s in sorted(rules.sources)}}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode_rules(value: bytes) -> Rules:
    try:
        doc = json.loads(value)
        sources = doc["sources"]
        if not isinstance(sources, dict):
            raise TypeError("sources is not a map")
        return Rules(str(doc["destination"]), {str(s): parse_action(str(a)) for s, a in sources.items()})
    except (ValueError, TypeError, KeyError, InvalidArgument) as exc:
        raise CodecError(f"not an intentions document: {exc}"[:300]) from exc


def encode_default(action: Action) -> bytes:
    return json.dumps({"default": action.value}, separators=(",", ":")).encode()


def decode_default(value: bytes) -> Action:
    try:
        return parse_action(str(json.loads(value)["default"]), "default")
    except (ValueError, TypeError, KeyError, InvalidArgument) as exc:
        raise CodecError(f"not a mesh default document: {exc}"[:300]) from exc
