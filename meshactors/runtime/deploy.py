"""Creates the controller (which creates everything else), waits for it, and removes a deployment."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import ray

from meshactors import cluster_auth, log
from meshactors.errors import NotReady, Unavailable
from meshactors.runtime.calls import call_sync
from meshactors.runtime.hosting import HOST, ComponentHandle, actor_of
from meshactors.runtime.options import actor_options
from meshactors.runtime.topology import (
    CONTROLLER,
    DASHBOARD,
    EUREKA_API,
    REGISTRY_API,
    REGISTRY_SHARD,
    SNAPSHOT_BUILDER,
    XDS_SERVER,
    deployment_names,
    kind_of,
    lookup,
)
from meshactors.settings import MeshSettings
from meshactors.store.server import stable_port

_log = log.get("runtime.deploy")

# The actor kinds that serve Prometheus /metrics: every kind (each has state worth watching).
METRICS_KINDS = (CONTROLLER, REGISTRY_SHARD, REGISTRY_API, EUREKA_API, SNAPSHOT_BUILDER, XDS_SERVER, DASHBOARD)


def actor_names(settings: MeshSettings) -> list[str]:
    """The controller first, then every actor it creates."""
    return [CONTROLLER, *deployment_names(settings)]


def resolve_ports(settings: MeshSettings) -> MeshSettings:
    """Actors must rebind the same address after a restart, so port 0 is resolved once, here, and every port
    picked is distinct from every other port of the deployment (a free port is only free until someone binds it:
    two picks could otherwise land on one port, and the second actor to bind it fails for good)."""
    taken = {
        p
        for p in (settings.registry_port, settings.eureka_port, settings.dashboard_port, *settings.xds_port_list())
        if p
    }
    taken |= {p for _, p in settings.metrics_ports if p}

    def pick(host: str) -> int:
        for _ in range(100):
            port = stable_port(host)
            if port not in taken:
                taken.add(port)
                return port
        raise Unavailable(f"no free port on {host} distinct from the deployment's other ports")

    if settings.registry_port == 0:
        settings = dataclasses.replace(settings, registry_port=pick(settings.registry_host))
    if settings.eureka_port == 0:
        settings = dataclasses.replace(settings, eureka_port=pick(settings.registry_host))
    if settings.dashboard_port == 0:
        settings = dataclasses.replace(settings, dashboard_port=pick(settings.registry_host))
    ports = settings.xds_port_list()
    if any(p == 0 for p in ports):
        ports = tuple(p or pick(settings.xds_host) for p in ports)
        settings = dataclasses.replace(settings, xds_ports=ports)
    if not settings.metrics_ports:
        served = [n for n in actor_names(settings) if kind_of(n) in METRICS_KINDS]
        hosts = {n: settings.xds_host if kind_of(n) in (SNAPSHOT_BUILDER, XDS_SERVER) else settings.registry_host
                 for n in served}  # fmt: skip
        settings = dataclasses.replace(settings, metrics_ports=tuple((n, pick(hosts[n])) for n in served))
    return settings


def with_cluster_secret(settings: MeshSettings) -> MeshSettings:
    """`settings` with a cluster secret: a new random one unless they carry one. Done once per deployment, here,
    so every actor (and every restart of it, constructed with the same settings) has the same."""
    if settings.cluster_secret:
        return settings
    return dataclasses.replace(settings, cluster_secret=cluster_auth.new_secret())


def deploy(
    settings: MeshSettings, timeout_s: float = 90.0, on_ready: Callable[[str], None] | None = None
) -> MeshSettings:
    """Create the controller (or reuse the running one) and wait until it reports every actor ready.

    `on_ready(name)` is called once for each actor as the controller first reports it ready, the controller last.
    A reused controller keeps the settings it was created with (its actors keep their cluster secret)."""
    settings = with_cluster_secret(resolve_ports(settings))
    if settings.colocate:  # one mesh host runs every role, the controller among them
        from meshactors.runtime.host import MeshHostActor

        host = MeshHostActor.options(
            name=HOST, namespace=settings.namespace, get_if_exists=True, **actor_options(settings)
        ).remote(settings)
        controller: Any = ComponentHandle(host, CONTROLLER)
    else:
        from meshactors.runtime.controller import ControllerActor  # with every actor class it creates

        controller = ControllerActor.options(
            name=CONTROLLER, namespace=settings.namespace, get_if_exists=True, **actor_options(settings)
        ).remote(settings)
    if on_ready is None:
        wait_ready({CONTROLLER: controller}, timeout_s)
    else:
        _wait_reporting(controller, timeout_s, on_ready)
    _log.info("control plane deployed", namespace=settings.namespace, actors=actor_names(settings))
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


def _wait_reporting(controller: Any, timeout_s: float, on_ready: Callable[[str], None]) -> None:
    """Wait for the controller to converge, telling `on_ready` about each actor it reports ready on the way."""
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    while True:
        try:
            stats = call_sync(controller, "statistics", timeout_s=max(0.5, min(5.0, deadline - time.monotonic())))
        except Unavailable:
            stats = None
        if stats is not None:
            for actor in stats.actors:
                if actor.ready and actor.name not in seen:
                    seen.add(actor.name)
                    on_ready(actor.name)
            if stats.converged:
                on_ready(CONTROLLER)
                return
        if time.monotonic() > deadline:
            raise NotReady(f"actors not ready after {timeout_s:.0f} s")
        time.sleep(0.1)


def teardown(settings: MeshSettings) -> None:
    """Kill (without restart) the controller first, then every actor it created, or the mesh host that runs them
    all; missing ones are fine."""
    killed: set[str] = set()
    for name in [HOST, *actor_names(settings)]:
        handle = lookup(name, settings.namespace)
        if handle is None:
            continue
        actor = actor_of(handle)
        if actor._actor_id.hex() in killed:
            continue
        killed.add(actor._actor_id.hex())
        ray.kill(actor, no_restart=True)
        _log.info("actor stopped", name=name)
