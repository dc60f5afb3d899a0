"""`meshactors status --json` renders typed statistics (frozen dataclasses, nested) and plain dicts alike."""

from __future__ import annotations

import dataclasses
import enum
import json

import pytest

from meshactors.runtime.actors import EurekaApiStatistics, RegistryApiStatistics
from meshactors.runtime.status import format_table, to_json
from meshactors.supervise import ALIVE, ControllerState, ControllerStatistics, Observed


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Inner:
    n: int
    tags: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner
    by_name: dict[str, Inner]
    color: Color


def test_dataclasses_become_dicts_recursively_and_dicts_stay_dicts() -> None:
    obj = {"typed": Outer(Inner(1, ("a",)), {"x": Inner(2, ())}, Color.RED), "plain": {"k": (1, 2)}, 3: None}
    assert to_json(obj) == {
        "typed": {"inner": {"n": 1, "tags": ["a"]}, "by_name": {"x": {"n": 2, "tags": []}}, "color": "red"},
        "plain": {"k": [1, 2]},
        "3": None,
    }
    json.dumps(to_json(obj))  # JSON-ready
    assert to_json(object.__new__(object)).startswith("<object")  # anything else: its str()


def test_controller_statistics_are_frozen_and_render() -> None:
    st = ControllerState(["a"])
    st.reconcile({"a": Observed("a", ALIVE, 0, True, "n1", 42)})
    stats = st.statistics(converged=True)
    assert isinstance(stats, ControllerStatistics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.rounds = 7  # type: ignore[misc]
    assert to_json(stats) == {
        "converged": True,
        "rounds": 1,
        "actors": [{"name": "a", "state": ALIVE, "ready": True, "restarts": 0, "recreated": 0, "node_id": "n1",
                    "pid": 42}],
    }  # fmt: skip


def test_api_statistics_render_and_the_table_shows_their_scalars() -> None:
    rows = [
        {"name": "registry-api", "state": ALIVE, "restarts": 0, "stats": RegistryApiStatistics("127.0.0.1:7070")},
        {"name": "eureka-api", "state": ALIVE, "restarts": 1, "stats": EurekaApiStatistics("http://h/eureka", 3, 4, 5)},
        {"name": "xds-server-0", "state": ALIVE, "restarts": 0, "stats": {"address": "h:1", "streams": []}},
    ]
    assert to_json(rows[1]["stats"]) == {"url": "http://h/eureka", "instances": 3, "version": 4, "revision": 5}
    table = format_table(rows).splitlines()
    assert table[0].split() == ["ACTOR", "STATE", "RESTARTS", "DETAILS"]
    assert "address=127.0.0.1:7070" in table[1]
    assert "instances=3 version=4 revision=5" in table[2]
    assert "address=h:1" in table[3] and "streams" not in table[3]
