"""Co-hosting: the handles of roles that run as components of one host actor, reached by the roles' own names.

In the co-hosted shape (`meshactors up` on one machine) one Ray actor, the mesh host, runs every role of the
deployment (controller, shards, builders, xDS servers, APIs, dashboard) as a component with its own listeners,
metrics port and readiness. A role keeps its actor name: `topology.lookup("registry-shard-0")` gives a
LocalHandle inside the host process (a direct call on the event loop, no Ray hop) and a ComponentHandle anywhere
else (a Ray call of the host's `invoke`). meshactors.runtime.calls dispatches on the handle's type, so callers do
not know which shape they talk to. Killing a role's handle kills the host process, which Ray restarts with every
role reloading from etcd, as a separate actor would.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from meshactors.errors import Unavailable

T = TypeVar("T")
HOST = "mesh-host"  # the Ray actor name of the host (not a role: it has no kind in topology.KINDS)


class LocalHandle:
    """A role hosted by this process. `role` is None until its start has finished (calls answer Unavailable)."""

    def __init__(self, name: str, actor_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.actor_id = actor_id  # the host actor's: what Ray reports about the process
        self.loop = loop
        self.role: Any = None
        self.context: contextvars.Context | None = None  # the role's own (its records go to its log file)

    def run(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """`coro` as the role's own work: in a task of the role's context, whoever awaits it."""
        if self.context is None:
            return coro
        return asyncio.create_task(coro, context=self.context.copy())

    async def invoke(self, method: str, *args: Any) -> Any:
        role = self.role
        if role is None:
            raise Unavailable(f"{self.name} is starting")
        # the method of the role's class, as a Ray actor call finds it (an instance attribute of the same name,
        # like the xDS server's `address`, does not hide it)
        return await self.run(getattr(type(role), method)(role, *args))

    def invoke_sync(self, method: str, *args: Any, timeout_s: float) -> Any:
        """From a thread other than the host's event loop (the dashboard's sampler, `to_thread` code)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError(f"{method}() of {self.name}: a blocking call from the host's own event loop")
        future = asyncio.run_coroutine_threadsafe(self.invoke(method, *args), self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise


class ComponentHandle:
    """A role of a host actor, seen from another process: calls go to the host's `invoke(name, method, ...)`."""

    def __init__(self, host: Any, name: str) -> None:
        self.host = host  # the host's Ray actor handle
        self.name = name

    @property
    def actor_id(self) -> str:
        return str(self.host._actor_id.hex())

    def remote(self, method: str, *args: Any) -> Any:
        return self.host.invoke.remote(self.name, method, *args)


_lock = threading.Lock()
_local: dict[str, LocalHandle] = {}  # the roles this process hosts
_hosted: dict[str, frozenset[str]] = {}  # host actor id -> the role names it hosts (fixed for its lifetime)


def host_here(names: list[str], actor_id: str, loop: asyncio.AbstractEventLoop) -> dict[str, LocalHandle]:
    """This process hosts `names`: their LocalHandles, registered for `local`."""
    handles = {name: LocalHandle(name, actor_id, loop) for name in names}
    with _lock:
        _local.update(handles)
    return handles


def local(name: str) -> LocalHandle | None:
    with _lock:
        return _local.get(name)


def local_names(actor_id: str) -> list[str]:
    """The roles this process hosts as the host actor `actor_id` (none: this process is not that host)."""
    with _lock:
        return sorted(name for name, handle in _local.items() if handle.actor_id == actor_id)


def forget(names: list[str]) -> None:
    """This process no longer hosts `names` (a test's own registrations)."""
    with _lock:
        for name in names:
            _local.pop(name, None)


def remember_hosted(actor_id: str, names: list[str]) -> frozenset[str]:
    with _lock:
        return _hosted.setdefault(actor_id, frozenset(names))


def hosted(actor_id: str) -> frozenset[str] | None:
    with _lock:
        return _hosted.get(actor_id)


def actor_of(handle: Any) -> Any:
    """The Ray actor handle behind `handle` (the host's, for a component)."""
    if isinstance(handle, ComponentHandle):
        return handle.host
    if isinstance(handle, LocalHandle):
        raise Unavailable(f"{handle.name} is hosted by this process: it has no handle of its own")
    return handle
