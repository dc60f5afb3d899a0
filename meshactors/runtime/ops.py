"""Driver-side operations on a running deployment for the CLI and chaos: join Ray, call and kill actors by name.

Callers outside the runtime (meshactors.cli, meshactors.chaos) never import Ray: this module is their door.
Lookups and names come from meshactors.runtime.topology; calls go through meshactors.runtime.calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from meshactors.errors import Unavailable
from meshactors.runtime.calls import DEFAULT_TIMEOUT_S, call_sync
from meshactors.runtime.hosting import actor_of
from meshactors.runtime.topology import list_names, lookup


def connect(address: str, namespace: str) -> bool:
    """Join the Ray cluster at `address` as a quiet driver; False if this process already is one."""
    if ray.is_initialized():
        return False
    ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level="ERROR")
    return True


def disconnect() -> None:
    if ray.is_initialized():
        ray.shutdown()


@contextmanager
def driver(address: str, namespace: str) -> Iterator[None]:
    """Be a driver of the cluster for the block; leave it after only if the block joined it."""
    joined = connect(address, namespace)
    try:
        yield
    finally:
        if joined:
            disconnect()


def handle_of(name: str, namespace: str) -> Any:
    """The handle of a named actor; Unavailable if no actor has that name."""
    handle = lookup(name, namespace)
    if handle is None:
        raise Unavailable(f"actor {name!r} is not running in namespace {namespace!r}")
    return handle


def call_actor(name: str, namespace: str, method: str, *args: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """Call a method of a named actor from a driver thread (errors mapped like every other call)."""
    return call_sync(handle_of(name, namespace), method, *args, timeout_s=timeout_s)


def kill(handle: Any, restart: bool = True) -> None:
    """Kill an actor's process; with `restart` Ray restarts it (as it would after a crash), else its name is freed.
    A role of a mesh host: the host's process, with every role it runs (what a crash of that process would do)."""
    ray.kill(actor_of(handle), no_restart=not restart)


def actor_names(namespace: str) -> list[str]:
    """The names of the named actors of `namespace` (the deployment's and any other), sorted."""
    return list_names(namespace)


def log_chunk(name: str, namespace: str, inode: int, offset: int, max_bytes: int) -> tuple[int, int, str]:
    """Part of a named actor's own log file, read by the actor (it may run on another node)."""
    inode, offset, text = call_actor(name, namespace, "log_chunk", inode, offset, max_bytes, timeout_s=10.0)
    return int(inode), int(offset), str(text)
