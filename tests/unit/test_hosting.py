"""Co-hosting's pure parts: role handles in the host's process, the call dispatch on them, and one log per role."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from meshactors import log
from meshactors.errors import MeshError, Unavailable
from meshactors.runtime import hosting
from meshactors.runtime.calls import call, call_sync


@pytest.fixture(autouse=True)
def _no_roles_left_behind() -> Iterator[None]:
    """The roles a test registers are gone after it (the registry is per process, and integration tests that run
    later in the same process look roles up)."""
    yield
    hosting.forget(["role-a", "role-b", "role-c"])


class _Role:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.address = "127.0.0.1:1"  # an attribute named like a method, as the xDS server's

    async def address(self) -> str:  # type: ignore[no-redef]
        return "the method"

    async def ready(self) -> bool:
        return True

    async def add(self, a: int, b: int) -> int:
        self.calls.append(("add", threading.get_ident()))
        return a + b

    async def context(self) -> dict[str, object]:
        return structlog.contextvars.get_contextvars()

    async def broken(self) -> None:
        raise KeyError("inside")

    async def refused(self) -> None:
        raise Unavailable("not now")


async def test_a_local_role_answers_once_started_and_directly_on_the_loop() -> None:
    [handle] = hosting.host_here(["role-a"], "0" * 32, asyncio.get_running_loop()).values()
    assert hosting.local("role-a") is handle and hosting.local_names("0" * 32) == ["role-a"]
    assert hosting.local_names("f" * 32) == []  # this process is not that host
    with pytest.raises(Unavailable, match="role-a is starting"):
        await call(handle, "ready")
    handle.role = role = _Role()
    assert await call(handle, "add", 2, 3) == 5
    assert role.calls == [("add", threading.get_ident())]  # on this very loop: no Ray, no thread
    assert await call(handle, "address") == "the method"  # the class's method, as a Ray call finds it
    with pytest.raises(MeshError, match=r"broken\(\) failed: KeyError"):  # what a Ray call would have raised
        await call(handle, "broken")
    with pytest.raises(Unavailable, match="not now"):  # a MeshError arrives as itself
        await call(handle, "refused")


async def test_a_blocking_call_of_a_local_role_runs_on_the_hosts_loop_from_a_thread() -> None:
    [handle] = hosting.host_here(["role-b"], "1" * 32, asyncio.get_running_loop()).values()
    handle.role = role = _Role()
    assert await asyncio.to_thread(call_sync, handle, "add", 1, 1, timeout_s=5) == 2
    assert role.calls[0][1] == threading.get_ident()  # it ran on the loop's thread
    with pytest.raises(RuntimeError, match="blocking call from the host's own event loop"):
        handle.invoke_sync("ready", timeout_s=1)


async def test_a_call_into_a_role_runs_in_the_roles_context_so_its_records_go_to_its_file() -> None:
    [handle] = hosting.host_here(["role-c"], "2" * 32, asyncio.get_running_loop()).values()
    handle.role = _Role()

    async def role_start() -> None:  # what the host does in the task that starts the role
        structlog.contextvars.bind_contextvars(**{log.ROUTE_KEY: "role-c"})
        handle.context = contextvars.copy_context()

    await asyncio.create_task(role_start())
    structlog.contextvars.bind_contextvars(**{log.ROUTE_KEY: "the-caller"})
    try:
        assert (await call(handle, "context"))[log.ROUTE_KEY] == "role-c"
        assert structlog.contextvars.get_contextvars()[log.ROUTE_KEY] == "the-caller"  # the caller's is untouched
    finally:
        structlog.contextvars.clear_contextvars()


def test_forgotten_roles_are_no_longer_found_here() -> None:
    loop = asyncio.new_event_loop()
    hosting.host_here(["role-a"], "3" * 32, loop)
    hosting.forget(["role-a"])
    loop.close()
    assert hosting.local("role-a") is None and hosting.local_names("3" * 32) == []


def test_a_component_handle_calls_the_hosts_invoke_with_the_role_name() -> None:
    sent: list[tuple[object, ...]] = []

    class _Invoke:
        def remote(self, *args: object) -> str:
            sent.append(args)
            return "ref"

    class _Host:
        invoke = _Invoke()

    handle = hosting.ComponentHandle(_Host(), "xds-server-0")
    assert handle.remote("statistics", False) == "ref" and sent == [("xds-server-0", "statistics", False)]
    assert hosting.actor_of(handle) is handle.host
    loop = asyncio.new_event_loop()
    with pytest.raises(Unavailable, match="hosted by this process"):
        hosting.actor_of(hosting.LocalHandle("x", "", loop))
    loop.close()


@pytest.fixture
def routed_log(tmp_path: Path) -> Iterator[Path]:
    main = tmp_path / "logs" / "mesh-host.log"
    log.configure(file=main, echo="none")
    log.route_by_actor()
    try:
        yield main
    finally:
        structlog.contextvars.clear_contextvars()
        log.configure()


async def test_each_roles_records_go_to_its_own_file_and_the_rest_to_the_hosts(routed_log: Path) -> None:
    async def role(name: str) -> None:
        structlog.contextvars.bind_contextvars(**{log.ROUTE_KEY: name})
        log.get("test").info("from a role", who=name)

        async def spawned() -> None:
            log.get("test").info("from a task the role spawned", who=name)

        await asyncio.create_task(spawned())

    await asyncio.gather(asyncio.create_task(role("registry-shard-0")), asyncio.create_task(role("xds-server-1")))
    await asyncio.create_task(role("Not A Name/../x"))  # not a role name: the host's file
    log.get("test").info("the host's own")
    logs = routed_log.parent

    def events(name: str) -> list[str]:
        return [json.loads(line)["event"] for line in (logs / name).read_text().splitlines()]

    assert events("registry-shard-0.log") == ["from a role", "from a task the role spawned"]
    assert events("xds-server-1.log") == ["from a role", "from a task the role spawned"]
    assert events("mesh-host.log") == ["from a role", "from a task the role spawned", "the host's own"]
    assert sorted(p.name for p in logs.iterdir()) == ["mesh-host.log", "registry-shard-0.log", "xds-server-1.log"]
    assert log.file_path("xds-server-1") == logs / "xds-server-1.log" and log.file_path() == routed_log


def test_routed_files_are_bounded_in_number(routed_log: Path) -> None:
    for i in range(log.MAX_ROUTED_FILES + 5):
        structlog.contextvars.bind_contextvars(**{log.ROUTE_KEY: f"role-{i}"})
        log.get("test").info("one")
    structlog.contextvars.clear_contextvars()
    assert len(list(routed_log.parent.iterdir())) == log.MAX_ROUTED_FILES + 1  # the host's file takes the rest
    assert len(routed_log.read_text().splitlines()) == 5
