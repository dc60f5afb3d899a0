"""The controller's reconciliation logic, without Ray."""

from __future__ import annotations

from meshactors.supervise import ALIVE, DEAD, MISSING, RESTARTING, ControllerState, Observed


def _obs(name: str, state: str = ALIVE, restarts: int = 0, ready: bool = True, node: str = "n1") -> Observed:
    return Observed(name, state, restarts, ready, node, 100 + restarts)


def test_missing_and_dead_actors_are_created() -> None:
    st = ControllerState(["a", "b", "c"])
    plan = st.reconcile({"a": _obs("a"), "b": _obs("b", DEAD)})
    assert plan.create == ("b", "c") and not plan.converged
    assert st.summary()[1].recreated == 1 and st.summary()[2].state == MISSING


def test_converged_only_when_all_alive_and_ready() -> None:
    st = ControllerState(["a", "b"])
    assert not st.reconcile({"a": _obs("a"), "b": _obs("b", ready=False)}).converged
    assert st.reconcile({"a": _obs("a"), "b": _obs("b")}).converged
    assert not st.reconcile({"a": _obs("a", RESTARTING, ready=False), "b": _obs("b")}).converged


def test_restarts_moves_and_state_changes_are_reported() -> None:
    st = ControllerState(["a"])
    st.reconcile({"a": _obs("a")})
    plan = st.reconcile({"a": _obs("a", restarts=1, node="n2")})
    messages = [e.message for e in plan.events]
    assert "actor restarted" in messages and "actor moved to another node" in messages
    plan = st.reconcile({"a": _obs("a", RESTARTING, restarts=1, ready=False, node="n2")})
    assert [e.message for e in plan.events] == ["actor state changed"]
    plan = st.reconcile({"a": _obs("a", restarts=1, node="n2")})
    assert "actor ready" in [e.message for e in plan.events] and plan.converged
    assert st.reconcile({"a": _obs("a", restarts=1, node="n2")}).events == ()
