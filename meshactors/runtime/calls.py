"""Every `.remote()` call goes through here: one timeout policy and one mapping of Ray errors into ours."""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray import exceptions as rex

from meshactors.errors import MeshError, Unavailable
from meshactors.runtime.hosting import ComponentHandle, LocalHandle
from meshactors.runtime.topology import lookup

DEFAULT_TIMEOUT_S = 15.0


def _map(exc: BaseException, what: str) -> BaseException:
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause
        if isinstance(cause, MeshError):
            return cause
        return MeshError(f"{what} failed: {cause!r}")
    if isinstance(exc, rex.ActorDiedError | rex.ActorUnavailableError | rex.RayActorError):
        return Unavailable(f"{what}: actor unavailable ({type(exc).__name__}); it is restarting, try again")
    if isinstance(exc, rex.GetTimeoutError | TimeoutError):
        return Unavailable(f"{what}: no answer in time")
    if isinstance(exc, rex.RayError):
        return Unavailable(f"{what}: {exc}")
    return exc


class Handles:
    """Actor handles by name, resolved lazily (a handle stays valid across restarts of its actor)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._cache: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        handle = self._cache.get(name)
        if handle is None:
            handle = lookup(name, self.namespace)
            if handle is None:
                raise Unavailable(f"actor {name!r} is not running in namespace {self.namespace!r}")
            self._cache[name] = handle
        return handle


def _ref(handle: Any, method: str, args: tuple[Any, ...]) -> Any:
    """The Ray call of `method` on an actor or on a role of a host in another process."""
    if isinstance(handle, ComponentHandle):
        return handle.remote(method, *args)
    return getattr(handle, method).remote(*args)


def _local_failure(exc: Exception, what: str) -> MeshError:
    """What a role of this process raised, as a Ray call would have delivered it."""
    return exc if isinstance(exc, MeshError) else MeshError(f"{what} failed: {exc!r}")


async def call(handle: Any, method: str, *args: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """Await an actor method from asyncio code (inside actors); a role of this very process is called directly."""
    what = f"{method}()"
    if isinstance(handle, LocalHandle):
        try:
            return await asyncio.wait_for(handle.invoke(method, *args), timeout_s)
        except TimeoutError as exc:
            raise _map(exc, what) from exc
        except Exception as exc:
            raise _local_failure(exc, what) from exc
    try:
        return await asyncio.wait_for(asyncio.ensure_future(_ref(handle, method, args)), timeout_s)
    except (rex.RayError, TimeoutError) as exc:
        raise _map(exc, what) from exc


def call_sync(handle: Any, method: str, *args: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """Call an actor method from a plain driver thread (CLI, launcher, tests, a host's worker threads)."""
    what = f"{method}()"
    if isinstance(handle, LocalHandle):
        try:
            return handle.invoke_sync(method, *args, timeout_s=timeout_s)
        except TimeoutError as exc:
            raise _map(exc, what) from exc
        except Exception as exc:
            raise _local_failure(exc, what) from exc
    try:
        return ray.get(_ref(handle, method, args), timeout=timeout_s)
    except (rex.RayError, TimeoutError) as exc:
        raise _map(exc, what) from exc
