"""The controller actor: creates every named actor of a deployment and keeps them so, in a loop that never dies."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import ray

from meshactors import defaults, log
from meshactors.aio import TaskSet
from meshactors.auth.guard import Authenticator
from meshactors.errors import MeshError
from meshactors.runtime.actors import (
    EurekaApiActor,
    EurekaApiRole,
    RegistryApiActor,
    RegistryApiRole,
    RegistryShardActor,
    RegistryShardRole,
)
from meshactors.runtime.calls import call
from meshactors.runtime.dashboard_actor import DashboardActor, DashboardRole
from meshactors.runtime.logs import LogSource, configure_actor
from meshactors.runtime.options import actor_options
from meshactors.runtime.servers import scrape_check
from meshactors.runtime.topology import (
    CONTROLLER,
    DASHBOARD,
    EUREKA_API,
    REGISTRY_API,
    builder_name,
    observe,
    shard_name,
    xds_server_name,
)
from meshactors.runtime.xds_actors import SnapshotBuilderActor, SnapshotBuilderRole, XdsServerActor, XdsServerRole
from meshactors.settings import MeshSettings
from meshactors.store.etcd import EtcdStore
from meshactors.supervise import ControllerState, ControllerStatistics, Observed
from meshactors.telemetry import http as metrics_http
from meshactors.telemetry import metrics


def role_specs(settings: MeshSettings) -> dict[str, tuple[type, tuple[Any, ...]]]:
    """Every role of the deployment but the controller: name -> (role class, the arguments of its start)."""
    specs: dict[str, tuple[type, tuple[Any, ...]]] = {}
    for i in range(settings.shards):
        specs[shard_name(i)] = (RegistryShardRole, (settings, shard_name(i)))
    for i in range(settings.builders):
        specs[builder_name(i)] = (SnapshotBuilderRole, (settings, builder_name(i)))
    for i, port in enumerate(settings.xds_port_list()):
        specs[xds_server_name(i)] = (XdsServerRole, (settings, xds_server_name(i), port))
    specs[REGISTRY_API] = (RegistryApiRole, (settings,))
    specs[EUREKA_API] = (EurekaApiRole, (settings,))
    specs[DASHBOARD] = (DashboardRole, (settings,))
    return specs


# the actor class that runs each role in a process of its own (the separate shape)
_ACTOR_OF: dict[type, Any] = {
    RegistryShardRole: RegistryShardActor, SnapshotBuilderRole: SnapshotBuilderActor, XdsServerRole: XdsServerActor,
    RegistryApiRole: RegistryApiActor, EurekaApiRole: EurekaApiActor, DashboardRole: DashboardActor,
}  # fmt: skip


def actor_specs(settings: MeshSettings) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """Every actor of the separate shape but the controller: name -> (actor class, constructor arguments)."""
    return {name: (_ACTOR_OF[role], args) for name, (role, args) in role_specs(settings).items()}


class ControllerRole(LogSource):
    """Reconciles the deployment every `interval_s`: creates missing actors, reports restarts and moves."""

    async def start(self, settings: MeshSettings, interval_s: float = defaults.CONTROLLER_INTERVAL_S) -> None:
        self._log = log.get("runtime.controller")
        self.settings = settings
        self.specs = actor_specs(settings)
        self.state = ControllerState(list(self.specs))
        self.interval_s = interval_s
        self.converged = False
        self._task = asyncio.create_task(self._loop())
        self.store = EtcdStore.from_spec(settings.etcd)  # only for the token table of who may scrape /metrics
        await self.store.connect()
        self._scrapers = Authenticator(self.store, settings.keys, f"{CONTROLLER}-metrics")
        self._tasks = TaskSet()
        self._tasks.spawn(self._scrapers.follow(), name="tokens")
        self.metrics_server, port = await metrics_http.serve(
            settings.registry_host, settings.metrics_port(CONTROLLER), self._metrics, scrape_check(self._scrapers)
        )
        self._metrics_url = f"http://{settings.registry_host}:{port}/metrics"
        self._log.info("controller started", actors=list(self.specs))

    async def _metrics(self) -> bytes:
        stats = asdict(self.state.statistics(self.converged))
        return metrics.render(metrics.controller(CONTROLLER, stats["converged"], stats["rounds"], stats["actors"]))

    async def metrics_url(self) -> str:
        return self._metrics_url

    async def _observe_all(self) -> dict[str, Observed]:
        seen: dict[str, Observed] = {}
        for name in self.specs:
            obs, handle = await asyncio.to_thread(observe, name, self.settings.namespace)
            if handle is not None and obs.state == "ALIVE":
                last = self.state.last.get(name)
                if (
                    last is not None
                    and last.ready
                    and (last.state, last.restarts, last.pid) == (obs.state, obs.restarts, obs.pid)
                ):
                    ready = True  # the same incarnation stays ready: no need to ask it again
                else:
                    try:
                        ready = bool(await call(handle, "ready", timeout_s=2.0))
                    except MeshError:
                        ready = False
                obs = Observed(obs.name, obs.state, obs.restarts, ready, obs.node_id, obs.pid)
            seen[name] = obs
        return seen

    def _create(self, name: str) -> None:
        if self.settings.colocate:  # the mesh host runs every role itself (and restarts one whose start failed)
            self._log.warning("a co-hosted role is missing; its host restarts it", actor=name)
            return
        cls, args = self.specs[name]
        cls.options(
            name=name, namespace=self.settings.namespace, get_if_exists=True, **actor_options(self.settings)
        ).remote(*args)

    async def _loop(self) -> None:
        while True:
            try:
                plan = self.state.reconcile(await self._observe_all())
                for event in plan.events:
                    getattr(self._log, event.level)(event.message, **event.fields)
                for name in plan.create:
                    self._create(name)
                if plan.converged and not self.converged:
                    self._log.info("deployment converged: every actor alive and ready")
                self.converged = plan.converged
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop logs and never dies
                self._log.exception("reconcile failed", error=str(exc))
            await asyncio.sleep(self.interval_s)

    async def ready(self) -> bool:
        return self.converged

    async def statistics(self) -> ControllerStatistics:
        return self.state.statistics(self.converged)


@ray.remote
class ControllerActor(ControllerRole):
    """ControllerRole in a Ray actor of its own (the separate shape; runtime.host co-hosts roles)."""

    async def __init__(self, settings: MeshSettings, interval_s: float = defaults.CONTROLLER_INTERVAL_S) -> None:
        configure_actor(settings)
        await self.start(settings, interval_s)
