"""Ray actor wrappers: each hosts a plain core object, reloads it from etcd in __init__ and forwards calls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.auth.guard import Authenticator
from meshactors.registry.shard import RegistryShardCore
from meshactors.registry.shard_service import ShardService
from meshactors.registry.shardmap import ShardMap
from meshactors.runtime import hosting
from meshactors.runtime.calls import Handles, call
from meshactors.runtime.logs import LogSource, configure_actor
from meshactors.runtime.servers import etcd_revision, public_credentials, scrape_check, start_fixed, start_internal
from meshactors.runtime.topology import EUREKA_API, REGISTRY_API
from meshactors.settings import MeshSettings
from meshactors.store.etcd import EtcdStore
from meshactors.telemetry import http as metrics_http
from meshactors.telemetry import metrics
from meshactors.v1 import registry_pb2_grpc

if TYPE_CHECKING:
    from meshactors.registry.service import ShardBackend

# Every actor class of this module runs in a Ray worker process of its own (the separate shape; the mesh host runs
# the roles instead), and that process imports this module to load its class. What only one role serves (the
# Eureka REST app, the registry API's services and their policy and token code) is imported in that role's start,
# so a shard's process does not carry them (~12 MB RSS each).

AUTH_LOAD_WAIT_S = 10.0  # how long an API waits for its token table before listening anyway (answering UNAVAILABLE)


class RegistryShardRole(LogSource):
    """Hosts one RegistryShardCore. State is a cache of etcd, reloaded on every (re)start. The registry API
    forwards writes to it over a direct gRPC channel (its address comes from a Ray call), or, co-hosted, by a
    direct call (registry.local)."""

    async def start(self, settings: MeshSettings, shard: str) -> None:
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.core = RegistryShardCore(
            self.store, settings.keys, ShardMap.of_size(settings.shards), shard, settings.shard
        )
        self._starting = asyncio.create_task(self.core.start())
        self.server, self._address = await start_internal(
            settings.registry_host,
            lambda server: registry_pb2_grpc.add_RegistryServicer_to_server(ShardService(self.core), server),
            settings.cluster_secret,
        )
        self.name = shard
        self._tasks = TaskSet()
        self._scrapers = Authenticator(self.store, settings.keys, f"{shard}-metrics")  # who may scrape /metrics
        self._tasks.spawn(self._scrapers.follow(), name="tokens")
        self.metrics_server, port = await metrics_http.serve(
            settings.registry_host, settings.metrics_port(shard), self._metrics, scrape_check(self._scrapers)
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


def shard_backend(settings: MeshSettings) -> ShardBackend:
    """How the APIs reach the shards: in the co-hosted shape by a direct call to the shard of this very process;
    else by direct gRPC to the address each shard actor reports (asked by Ray call)."""
    if settings.colocate:
        from meshactors.registry.local import LocalShardBackend

        def core_of(shard: str) -> RegistryShardCore | None:
            here = hosting.local(shard)
            role = here.role if here is not None else None
            return role.core if isinstance(role, RegistryShardRole) else None

        def enter(shard: str, coro: Coroutine[Any, Any, Any]) -> Awaitable[Any]:
            here = hosting.local(shard)
            return here.run(coro) if here is not None else coro

        return LocalShardBackend(core_of, enter=enter)
    from meshactors.registry.routing import GrpcShardBackend

    handles = Handles(settings.namespace)

    async def resolve(shard: str) -> str:
        return str(await call(handles.get(shard), "address", timeout_s=15))

    return GrpcShardBackend(resolve, settings.cluster_secret)


@dataclass(frozen=True, slots=True)
class RegistryApiStatistics:
    address: str  # where the Registry gRPC API listens


class RegistryApiRole(LogSource):
    """Serves the Registry, PolicyService, IntentionService, TokenService and CertificateService (the mesh CA) gRPC
    APIs on one fixed address, so clients need one address and reconnect to it after a restart. Every call is
    checked against the token table it keeps. The CA reloads its root from etcd on every (re)start."""

    async def start(self, settings: MeshSettings) -> None:
        import grpc

        from meshactors.registry.cert_service import CertificateService
        from meshactors.registry.intention_service import IntentionService
        from meshactors.registry.policy_service import PolicyService
        from meshactors.registry.service import RegistryService
        from meshactors.registry.token_service import TokenService
        from meshactors.v1 import auth_pb2_grpc, certificate_pb2_grpc, intention_pb2_grpc, policy_pb2_grpc

        self._log = log.get("runtime.registry_api")
        self.settings = settings
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.auth = Authenticator(self.store, settings.keys, "registry-api")
        self._tasks = TaskSet()
        self._tasks.spawn(self.auth.follow(), name="tokens")
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        registry_pb2_grpc.add_RegistryServicer_to_server(
            RegistryService(
                shard_backend(settings), ShardMap.of_size(settings.shards), self.store, settings.keys, self.auth
            ),
            self.server,
        )
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(
            PolicyService(self.store, settings.keys, self.auth), self.server
        )
        intention_pb2_grpc.add_IntentionServiceServicer_to_server(
            IntentionService(self.store, settings.keys, self.auth), self.server
        )
        auth_pb2_grpc.add_TokenServiceServicer_to_server(
            TokenService(self.store, settings.keys, self.auth), self.server
        )
        self.certs = CertificateService(
            self.store, settings.keys, self.auth, settings.trust_domain, settings.ca_key_file, settings.cert_ttl_s
        )
        certificate_pb2_grpc.add_CertificateServiceServicer_to_server(self.certs, self.server)
        self._tasks.spawn(self.certs.run(), name="ca")
        await self.auth.wait_loaded(AUTH_LOAD_WAIT_S)
        self.port = await start_fixed(
            self.server, settings.registry_address, "registry API", public_credentials(settings)
        )
        self.metrics_server, mport = await metrics_http.serve(
            settings.registry_host, settings.metrics_port(REGISTRY_API), self._metrics, scrape_check(self.auth)
        )
        self._metrics_url = f"http://{settings.registry_host}:{mport}/metrics"
        self._log.info("registry API listening", address=f"{settings.registry_host}:{self.port}", tls=settings.tls)

    async def _metrics(self) -> bytes:
        return metrics.render(metrics.api(REGISTRY_API, self.auth.ready, len(self.auth.table.records)))

    async def metrics_url(self) -> str:
        return self._metrics_url

    async def ready(self) -> bool:
        return self.auth.ready

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


class EurekaApiRole(LogSource):
    """Serves the Eureka-compatible REST API on a fixed port: writes go to the shards like the registry API's,
    reads come from a view of etcd that it loads on (re)start and keeps current with a watch. Every request is
    checked against the token table it keeps (basic auth with the token as the password, or a Bearer token)."""

    async def start(self, settings: MeshSettings) -> None:
        from meshactors.eureka import http as eureka_http
        from meshactors.eureka.service import EurekaRegistry, follow
        from meshactors.eureka.view import EurekaView
        from meshactors.tlsconfig import server_context

        self._log = log.get("runtime.eureka_api")
        self.settings = settings
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.view = EurekaView()
        self.auth = Authenticator(self.store, settings.keys, "eureka-api")
        registry = EurekaRegistry(shard_backend(settings), ShardMap.of_size(settings.shards), self.view)
        self._tasks = TaskSet()
        self._tasks.spawn(self.auth.follow(), name="tokens")
        self._tasks.spawn(follow(self.view, self.store, settings.keys, lambda: asyncio.sleep(0.5)), name="eureka-view")
        tls = server_context(settings.tls_cert, settings.tls_key) if settings.tls else None
        await self.auth.wait_loaded(AUTH_LOAD_WAIT_S)  # as the registry API: no 503 to every client after a restart
        self.runner = await eureka_http.serve(
            eureka_http.build_app(registry, self.auth), settings.registry_host, settings.eureka_port, ssl_context=tls
        )
        self.metrics_server, mport = await metrics_http.serve(
            settings.registry_host, settings.metrics_port(EUREKA_API), self._metrics, scrape_check(self.auth)
        )
        self._metrics_url = f"http://{settings.registry_host}:{mport}/metrics"
        self._log.info("Eureka API listening", url=settings.eureka_url, tls=settings.tls)

    async def _metrics(self) -> bytes:
        stats = {"instances": len(self.view), "version": self.view.version, "revision": self.view.revision}
        return metrics.render(
            metrics.eureka_api(
                EUREKA_API, stats, self.auth.ready, len(self.auth.table.records), await etcd_revision(self.store)
            )
        )

    async def metrics_url(self) -> str:
        return self._metrics_url

    async def ready(self) -> bool:
        return self.view.loaded and self.auth.ready

    async def address(self) -> str:
        return self.settings.eureka_url

    async def statistics(self) -> EurekaApiStatistics:
        return EurekaApiStatistics(
            url=self.settings.eureka_url,
            instances=len(self.view),
            version=self.view.version,
            revision=self.view.revision,
        )


@ray.remote
class RegistryShardActor(RegistryShardRole):
    """RegistryShardRole in a Ray actor of its own (the separate shape; runtime.host co-hosts roles)."""

    async def __init__(self, settings: MeshSettings, shard: str) -> None:
        configure_actor(settings)
        await self.start(settings, shard)


@ray.remote
class RegistryApiActor(RegistryApiRole):
    """RegistryApiRole in a Ray actor of its own (the separate shape; runtime.host co-hosts roles)."""

    async def __init__(self, settings: MeshSettings) -> None:
        configure_actor(settings)
        await self.start(settings)


@ray.remote
class EurekaApiActor(EurekaApiRole):
    """EurekaApiRole in a Ray actor of its own (the separate shape; runtime.host co-hosts roles)."""

    async def __init__(self, settings: MeshSettings) -> None:
        configure_actor(settings)
        await self.start(settings)
