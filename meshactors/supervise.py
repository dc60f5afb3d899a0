"""ControllerState: the pure reconciliation logic of the controller (desired actors vs what Ray reports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALIVE = "ALIVE"
DEAD = "DEAD"
MISSING = "MISSING"
RESTARTING = "RESTARTING"


@dataclass(frozen=True, slots=True)
class Observed:
    """What the controller saw of one actor in one round."""

    name: str
    state: str  # a Ray actor state (ALIVE, RESTARTING, DEAD, PENDING_CREATION, ...) or MISSING
    restarts: int = 0
    ready: bool = False
    node_id: str = ""
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    level: str  # "info" | "warning"
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActorSummary:
    """The controller's last word on one desired actor (for `meshactors status`)."""

    name: str
    state: str
    ready: bool
    restarts: int
    recreated: int  # times the controller created it again after it went missing or DEAD
    node_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class ControllerStatistics:
    converged: bool  # every desired actor ALIVE and ready in the last round
    rounds: int
    actors: tuple[ActorSummary, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    create: tuple[str, ...]
    events: tuple[Event, ...]
    converged: bool


class ControllerState:
    """Remembers the last observation of every desired actor and turns a new one into a plan.

    An actor that is missing or DEAD is (re)created; a restart Ray performed by itself, a node move and a
    state change are reported as events; `converged` means every desired actor is ALIVE and ready.
    """

    def __init__(self, desired: list[str]) -> None:
        self.desired = list(desired)
        self.last: dict[str, Observed] = {}
        self.recreated: dict[str, int] = {}
        self.rounds = 0

    def reconcile(self, observed: dict[str, Observed]) -> Plan:
        self.rounds += 1
        create: list[str] = []
        events: list[Event] = []
        for name in self.desired:
            now = observed.get(name, Observed(name, MISSING))
            before = self.last.get(name)
            if now.state in (MISSING, DEAD):
                create.append(name)
                self.recreated[name] = self.recreated.get(name, 0) + 1
                if before is None and now.state == MISSING:  # the first creation of a deployment is no alarm
                    events.append(Event("info", "creating actor", {"actor": name}))
                else:
                    events.append(Event("warning", "actor missing; creating it", {"actor": name, "state": now.state}))
            elif before is not None:
                if now.restarts > before.restarts:
                    events.append(
                        Event("warning", "actor restarted", {"actor": name, "restarts": now.restarts, "pid": now.pid})
                    )
                elif now.state != before.state:
                    events.append(Event("info", "actor state changed", {"actor": name, "from": before.state,
                                                                        "to": now.state}))  # fmt: skip
                if now.node_id and before.node_id and now.node_id != before.node_id:
                    events.append(Event("warning", "actor moved to another node", {"actor": name,
                                                                                 "node": now.node_id}))  # fmt: skip
                if now.ready and not before.ready and now.state == ALIVE:
                    events.append(Event("info", "actor ready", {"actor": name}))
            self.last[name] = now
        converged = not create and all(
            (o := self.last.get(n)) is not None and o.state == ALIVE and o.ready for n in self.desired
        )
        return Plan(tuple(create), tuple(events), converged)

    def summary(self) -> tuple[ActorSummary, ...]:
        out = []
        for name in self.desired:
            o = self.last.get(name, Observed(name, MISSING))
            out.append(
                ActorSummary(
                    name=name,
                    state=o.state,
                    ready=o.ready,
                    restarts=o.restarts,
                    recreated=self.recreated.get(name, 0),
                    node_id=o.node_id,
                    pid=o.pid,
                )
            )
        return tuple(out)

    def statistics(self, converged: bool) -> ControllerStatistics:
        return ControllerStatistics(converged=converged, rounds=self.rounds, actors=self.summary())
