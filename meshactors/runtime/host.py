"""The mesh host actor: every role of a deployment as a component of one process (the co-hosted shape).

One Ray actor instead of one per role: the embedded default then runs one actor process (~90 MiB PSS) rather than
ten (~610), and the registry API reaches the shards, and the xDS servers the builders, without leaving the
process's event loop for Ray. Each role keeps what it had as an actor: its name (meshactors.runtime.hosting gives
its handle), its listeners on the same fixed addresses, its /metrics port, its readiness and statistics. Ray
restarts the host when its process dies, and every role then reloads from etcd, as separate actors do; a role
whose start fails is started again in place, with a backoff, without touching the others.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any

import ray
import structlog

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.errors import InvalidArgument, NotFound
from meshactors.runtime import hosting
from meshactors.runtime.logs import LogSource, configure_actor
from meshactors.runtime.topology import CONTROLLER
from meshactors.settings import MeshSettings

START_BACKOFF_S = (0.5, 5.0)  # a failed role start is retried after 0.5 s, doubling up to 5 s


@dataclass(frozen=True, slots=True)
class MeshHostStatistics:
    roles: tuple[str, ...]  # every role it hosts
    started: tuple[str, ...]  # those whose start has finished
    start_failures: int  # role starts that raised (and were retried)


def hosted_specs(settings: MeshSettings) -> dict[str, tuple[type, tuple[Any, ...]]]:
    """The host's roles, the controller first: name -> (role class, the arguments of its start). Imported here,
    not at the top: `up` imports this module for the class, and runs none of the roles itself."""
    from meshactors.runtime.controller import ControllerRole, role_specs

    return {CONTROLLER: (ControllerRole, (settings,)), **role_specs(settings)}


@ray.remote
class MeshHostActor(LogSource):
    """Starts every role of `settings` on its event loop and answers calls to them by name (`invoke`)."""

    async def __init__(self, settings: MeshSettings) -> None:
        configure_actor(settings)
        log.route_by_actor()  # each role's records into <log_dir>/<role>.log, as if it were an actor of its own
        self._log = log.get("runtime.host")
        specs = hosted_specs(settings)
        actor_id = ray.get_runtime_context().get_actor_id()
        self.handles = hosting.host_here(list(specs), actor_id, asyncio.get_running_loop())
        self.start_failures = 0
        self._tasks = TaskSet()
        for name, (role, args) in specs.items():
            self._tasks.spawn(self._start(name, role, args), name=f"start {name}")
        self._log.info("mesh host starting its roles", roles=list(specs))

    async def _start(self, name: str, role_class: type, args: tuple[Any, ...]) -> None:
        """Start one role until it has started: logs and never gives up. Runs in a task of its own, so the name
        bound here is in the context of every task the role spawns (its records go to its file)."""
        structlog.contextvars.bind_contextvars(**{log.ROUTE_KEY: name})
        self.handles[name].context = contextvars.copy_context()  # calls into the role run in it too
        backoff = START_BACKOFF_S[0]
        while True:
            role = role_class()
            role.log_name = name
            try:
                await role.start(*args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.start_failures += 1
                self._log.exception("role failed to start; retrying", role=name, error=repr(exc)[:300])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, START_BACKOFF_S[1])
                continue
            self.handles[name].role = role
            self._log.info("role started", role=name)
            return

    async def invoke(self, name: str, method: str, *args: Any) -> Any:
        """`method(*args)` of the role `name` (what a ComponentHandle of another process calls)."""
        handle = self.handles.get(name)
        if handle is None:
            raise NotFound(f"{name!r} is not a role of this mesh host")
        if method.startswith("_") or method == "start":
            raise InvalidArgument(f"method: {method!r} is not a call a role answers")
        return await handle.invoke(method, *args)

    async def components(self) -> list[str]:
        return list(self.handles)

    async def ready(self) -> bool:
        for handle in self.handles.values():
            if handle.role is None or not await handle.role.ready():
                return False
        return True

    async def statistics(self) -> MeshHostStatistics:
        return MeshHostStatistics(
            roles=tuple(self.handles),
            started=tuple(n for n, h in self.handles.items() if h.role is not None),
            start_failures=self.start_failures,
        )
