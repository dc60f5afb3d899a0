"""Ray actor wrappers: each hosts a plain core object, reloads it from etcd in __init__ and forwards calls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
import ray

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.eureka import http as eureka_http
from meshactors.eureka.service import EurekaRegistry, follow
from meshactors.eureka.view import EurekaView
from meshactors.registry.policy_service import PolicyService
from meshactors.registry.routing import GrpcShardBackend
from meshactors.registry.service import RegistryService
from meshactors.registry.shard import RegistryShardCore
from meshactors.registry.shard_service import ShardService
from meshactors.registry.shardmap import ShardMap
from meshactors.runtime.calls import Handles, call
from meshactors.runtime.logs import LogSource, configure_actor
from meshactors.runtime.servers import etcd_revision, start_fixed, start_internal
from meshactors.settings import MeshSettings
from meshactors.store.etcd import EtcdStore
from meshactors.telemetry import http as metrics_http
from meshactors.telemetry import metrics
from meshactors.v1 import policy_pb2_grpc, registry_pb2_grpc

# Detached, named, restarted forever; calls Ray retries on the new instance must be idempotent.
# Ray nices its workers to 15 by default; the control plane answers proxies on their first request's
# critical path, so its actors run at normal priority.
ACTOR_OPTIONS: dict[str, Any] = {
    "lifetime": "detached",
    "max_restarts": -1,
    "max_task_retries": -1,
    "num_cpus": 0,
    "runtime_env": {"env_vars": {"RAY_worker_niceness": "0"}},
}


@ray.remote
class RegistryShardActor(LogSource):
    """Hosts one RegistryShardCore. State is a cache of etcd, reloaded on every (re)start. The registry API
    forwards writes to it over a direct gRPC channel (its address comes from a Ray call)."""

    async def __init__(self, settings: MeshSettings, shard: str) -> None:
        configure_actor(settings)
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.core = RegistryShardCore(
            self.store, settings.keys, ShardMap.of_size(settings.shards), shard, settings.shard
        )
        self._starting = asyncio.create_task(self.core.start())
        self.server, self._address = await start_internal(
            settings.registry_host,
            lambda server: registry_pb2_grpc.add_RegistryServicer_to_server(ShardService(self.core), server),
        )
        self.name = shard
        self.metrics_server, port = await metrics_http.serve(
            settings.registry_host, settings.metrics_port(shard), self._metrics
        )
        self._metrics_url = f"http://{settings.registry_host}:{port}/metrics"

    async def _metrics(self) -> bytes:
        return metrics.render(
            metrics.registry_shard(self.name, self.core.statistics(), await etcd_revision(self.store))
        )

    async def metrics_url(self) -> str:
        return self._metrics_url

    async def ready(self) -> bool:
        return self.core.ready

    async def address(self) -> str:
        return self._address

    async def statistics(self) -> dict[str, Any]:
        return {"address": self._address, **self.core.statistics()}


def shard_backend(settings: MeshSettings) -> GrpcShardBackend:
    """How the APIs reach the shards: direct gRPC to the address each shard actor reports (asked by Ray call)."""
    handles = Handles(settings.namespace)

    async def resolve(shard: str) -> str:
        return str(await call(handles.get(shard), "address", timeout_s=15))

    return GrpcShardBackend(resolve)


@dataclass(frozen=True, slots=True)
class RegistryApiStatistics:
    address: str  # where the Registry gRPC API listens


@ray.remote
class RegistryApiActor(LogSource):
    """Serves the Registry and the PolicyService gRPC APIs on one fixed address, so clients need one address and
    reconnect to it after a restart."""

    async def __init__(self, settings: MeshSettings) -> None:
        configure_actor(settings)
        self._log = log.get("runtime.registry_api")
        self.settings = settings
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        registry_pb2_grpc.add_RegistryServicer_to_server(
            RegistryService(shard_backend(settings), ShardMap.of_size(settings.shards), self.store, settings.keys),
            self.server,
        )
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(PolicyService(self.store, settings.keys), self.server)
        self.port = await start_fixed(self.server, settings.registry_address, "registry API")
        self._log.info("registry API listening", address=f"{settings.registry_host}:{self.port}")

    async def ready(self) -> bool:
        return True

    async def address(self) -> str:
        return f"{self.settings.registry_host}:{self.port}"

    async def statistics(self) -> RegistryApiStatistics:
        return RegistryApiStatistics(address=f"{self.settings.registry_host}:{self.port}")


@dataclass(frozen=True, slots=True)
class EurekaApiStatistics:
    url: str  # the Eureka service URL clients are given
    instances: int  # registrations in the view of etcd
    version: int  # the view's versions__delta
    revision: int  # the last etcd revision the view applied


@ray.remote
class EurekaApiActor(LogSource):
    """Serves the Eureka-compatible REST API on a fixed port: writes go to the shards like the registry API's,
    reads come from a view of etcd that it loads on (re)start and keeps current with a watch."""

    async def __init__(self, settings: MeshSettings) -> None:
        configure_actor(settings)
        self._log = log.get("runtime.eureka_api")
        self.settings = settings
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.view = EurekaView()
        registry = EurekaRegistry(shard_backend(settings), ShardMap.of_size(settings.shards), self.view)
        self._tasks = TaskSet()
        self._tasks.spawn(follow(self.view, self.store, settings.keys, lambda: asyncio.sleep(0.5)), name="eureka-view")
        self.runner = await eureka_http.serve(
            eureka_http.build_app(registry), settings.registry_host, settings.eureka_port
        )
        self._log.info("Eureka API listening", url=settings.eureka_url)

    async def ready(self) -> bool:
        return self.view.loaded

    async def address(self) -> str:
        return self.settings.eureka_url

    async def statistics(self) -> EurekaApiStatistics:
        return EurekaApiStatistics(
            url=self.settings.eureka_url,
            instances=len(self.view),
            version=self.view.version,
            revision=self.view.revision,
        )


def actor_options(settings: MeshSettings) -> dict[str, Any]:
    """ACTOR_OPTIONS plus the deployment's placement resources."""
    if not settings.actor_resources:
        return dict(ACTOR_OPTIONS)
    return {**ACTOR_OPTIONS, "resources": dict(settings.actor_resources)}
