"""Creates, finds, waits for and removes the control plane's named actors in a Ray namespace."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import ray

from meshactors import log
from meshactors.errors import NotReady, Unavailable
from meshactors.registry.shardmap import shard_name
from meshactors.runtime.actors import ACTOR_OPTIONS, REGISTRY_API, RegistryApiActor, RegistryShardActor
from meshactors.runtime.calls import call_sync
from meshactors.runtime.xds_actors import SnapshotBuilderActor, XdsServerActor, builder_name, xds_server_name
from meshactors.settings import MeshSettings
from meshactors.store.server import free_port

_log = log.get("runtime.deploy")


def actor_names(settings: MeshSettings) -> list[str]:
    return [
        *(shard_name(i) for i in range(settings.shards)),
        *(builder_name(i) for i in range(settings.builders)),
        *(xds_server_name(i) for i in range(settings.xds_servers)),
        REGISTRY_API,
    ]


def resolve_ports(settings: MeshSettings) -> MeshSettings:
    """Actors must rebind the same address after a restart, so port 0 is resolved once, here."""
    if settings.registry_port == 0:
        settings = dataclasses.replace(settings, registry_port=free_port(settings.registry_host))
    ports = settings.xds_port_list()
    if any(p == 0 for p in ports):
        ports = tuple(p or free_port(settings.xds_host) for p in ports)
        settings = dataclasses.replace(settings, xds_ports=ports)
    return settings


def deploy(settings: MeshSettings, timeout_s: float = 60.0) -> MeshSettings:
    """Create every actor (or reuse the ones already running) and wait until each answers ready()."""
    settings = resolve_ports(settings)
    handles: dict[str, Any] = {}
    for i in range(settings.shards):
        name = shard_name(i)
        handles[name] = RegistryShardActor.options(
            name=name, namespace=settings.namespace, get_if_exists=True, **ACTOR_OPTIONS
        ).remote(settings, name)
    for i in range(settings.builders):
        name = builder_name(i)
        handles[name] = SnapshotBuilderActor.options(
            name=name, namespace=settings.namespace, get_if_exists=True, **ACTOR_OPTIONS
        ).remote(settings, name)
    for i, port in enumerate(settings.xds_port_list()):
        name = xds_server_name(i)
        handles[name] = XdsServerActor.options(
            name=name, namespace=settings.namespace, get_if_exists=True, **ACTOR_OPTIONS
        ).remote(settings, name, port)
    handles[REGISTRY_API] = RegistryApiActor.options(
        name=REGISTRY_API, namespace=settings.namespace, get_if_exists=True, **ACTOR_OPTIONS
    ).remote(settings)
    wait_ready(handles, timeout_s)
    _log.info("control plane deployed", namespace=settings.namespace, actors=sorted(handles))
    return settings


def wait_ready(handles: dict[str, Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(handles)
    while pending:
        for name, handle in list(pending.items()):
            try:
                if call_sync(handle, "ready", timeout_s=max(0.5, deadline - time.monotonic())):
                    del pending[name]
            except Unavailable:
                pass
        if not pending:
            return
        if time.monotonic() > deadline:
            raise NotReady(f"actors not ready after {timeout_s:.0f} s: {sorted(pending)}")
        time.sleep(0.1)


def teardown(settings: MeshSettings) -> None:
    """Kill (without restart) every actor this deployment created; missing ones are fine."""
    for name in actor_names(settings):
        try:
            ray.kill(ray.get_actor(name, namespace=settings.namespace), no_restart=True)
        except ValueError:
            continue
        _log.info("actor stopped", name=name)
