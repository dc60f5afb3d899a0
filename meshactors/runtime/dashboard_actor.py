"""The dashboard actor: registrations and policies from etcd, samples of the actors and proxies, and the page."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import ray

from meshactors import log
from meshactors.aio import TaskSet
from meshactors.auth.guard import Authenticator
from meshactors.dashboard import view
from meshactors.errors import NotReady
from meshactors.policy.model import MESH_WIDE
from meshactors.runtime.logs import LogSource, configure_actor
from meshactors.runtime.servers import scrape_check
from meshactors.runtime.topology import DASHBOARD, OTHER
from meshactors.settings import MeshSettings
from meshactors.store.etcd import EtcdStore
from meshactors.store.feed import RegistryFeed
from meshactors.store.policy_feed import PolicyFeed, PolicyTable
from meshactors.telemetry import http as metrics_http
from meshactors.telemetry import metrics
from meshactors.tlsconfig import server_context

AUTH_LOAD_WAIT_S = 10.0
SAMPLE_VIEWED_S = 1.0  # between two samples of the actors and proxies while someone looks at the page ...
SAMPLE_IDLE_S = 10.0  # ... and otherwise (events like self-preservation changes are still caught)
VIEWED_FOR_S = 30.0  # a page counts as looking this long after its last API request


@dataclass(frozen=True, slots=True)
class DashboardStatistics:
    url: str  # the page (no credentials in it)
    instances: int  # registrations in its view of etcd
    policies: int
    events: int  # the last event's sequence number
    samples: int  # samples of the actors and proxies taken
    sample_errors: int


class DashboardRole(LogSource):
    """Serves the dashboard's page and JSON API on a fixed port. Registrations and policies come from etcd (a listing,
    then a watch, reloaded on every restart); actors and proxies from the functions `meshactors status` and
    `proxy-status` use, sampled on a thread. Every API request is checked against the token table it keeps."""

    async def start(self, settings: MeshSettings) -> None:
        # here, not at the top: the controller imports this module for the class, and has no use for the HTTP server
        from meshactors.dashboard import http as dashboard_http

        self._log = log.get("runtime.dashboard")
        self.settings = settings
        self.store = EtcdStore.from_spec(settings.etcd)
        await self.store.connect()
        self.auth = Authenticator(self.store, settings.keys, "dashboard")
        self.registrations = view.Registrations()
        self.policies = PolicyTable()
        self.policies_loaded = False
        self.journal = view.Events()
        self.samples = view.Samples()
        self._actors: list[dict[str, Any]] = []
        self._proxies: list[dict[str, Any]] = []
        self._golden: list[dict[str, Any]] | None = None
        self._sampled = 0
        self._sample_errors = 0
        self._viewed_at = 0.0
        self._wake = asyncio.Event()
        self._tasks = TaskSet()
        self._tasks.spawn(self.auth.follow(), name="tokens")
        self._tasks.spawn(self._follow_registry(), name="registry")
        self._tasks.spawn(self._follow_policies(), name="policies")
        self._tasks.spawn(self._sample_loop(), name="sampler")
        await self.auth.wait_loaded(AUTH_LOAD_WAIT_S)
        tls = server_context(settings.tls_cert, settings.tls_key) if settings.tls else None
        app = dashboard_http.build_app(self, self.auth.token, secure_cookie=settings.tls)
        self.runner = await dashboard_http.serve(app, settings.registry_host, settings.dashboard_port, ssl_context=tls)
        self.metrics_server, mport = await metrics_http.serve(
            settings.registry_host, settings.metrics_port(DASHBOARD), self._metrics, scrape_check(self.auth)
        )
        self._metrics_url = f"http://{settings.registry_host}:{mport}/metrics"
        self._log.info("dashboard listening", url=settings.dashboard_url, tls=settings.tls)

    # ---- feeds and sampling ----------------------------------------------------------------------------------------

    async def _follow_registry(self) -> None:
        feed = RegistryFeed(self.store, self.settings.keys, None, name="dashboard")
        while True:
            try:
                async for change in feed:
                    for c in self.registrations.apply(change):
                        self.journal.add(c.kind, c.detail, vip=c.vip)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop logs and never dies
                self._log.exception("registry watch failed; restarting", error=repr(exc))
                await asyncio.sleep(0.5)

    async def _follow_policies(self) -> None:
        feed = PolicyFeed(self.store, self.settings.keys, None, name="dashboard-policies")
        while True:
            try:
                async for change in feed:
                    touched = self.policies.apply(change)
                    if self.policies_loaded:
                        for vip in sorted(touched):
                            self.journal.add("policy", f"policy of {vip} changed", vip="" if vip == MESH_WIDE else vip)
                    self.policies_loaded = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.exception("policy watch failed; restarting", error=repr(exc))
                await asyncio.sleep(0.5)

    def _sample_blocking(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]] | None]:
        """On a thread: the actor rows, the proxy rows and (when the status module has them) the golden signals."""
        from meshactors.runtime import status  # here, not at the top: the controller imports this module

        namespace = self.settings.namespace
        actors = status.actor_status(namespace, timeout_s=3.0, sessions=False)  # the proxy rows come next
        proxies = status.proxy_status(namespace, timeout_s=3.0)
        golden_signals = getattr(status, "golden_signals", None)
        golden = None
        if golden_signals is not None:
            try:
                golden = list(golden_signals(namespace))
            except Exception as exc:
                self._log.warning("golden signals unavailable", error=repr(exc)[:300])
        return actors, proxies, golden

    async def _sample_loop(self) -> None:
        while True:
            try:
                actors, proxies, golden = await asyncio.to_thread(self._sample_blocking)
                now = time.time()
                actors = [r for r in actors if r.get("kind") != OTHER]
                shaped = view.proxy_rows(proxies, now)
                if self._sampled:
                    for c in view.health_changes(self._actors, actors) + view.nack_changes(self._proxies, shaped):
                        self.journal.add(c.kind, c.detail, vip=c.vip, at=now)
                self._actors, self._proxies, self._golden = actors, shaped, golden
                self.samples.add(now, actors, len(self.registrations.entries))
                self._sampled += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._sample_errors += 1
                self._log.warning("sampling the actors failed", error=repr(exc)[:300])
            pause = SAMPLE_VIEWED_S if time.monotonic() - self._viewed_at < VIEWED_FOR_S else SAMPLE_IDLE_S
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), pause)
            except TimeoutError:
                pass

    # ---- what the API shows (dashboard_http.Data) ------------------------------------------------------------------

    def viewed(self) -> None:
        idle = time.monotonic() - self._viewed_at >= VIEWED_FOR_S
        self._viewed_at = time.monotonic()
        if idle:
            self._wake.set()  # a page just opened: sample now rather than at the end of an idle pause

    def _ready_or_raise(self) -> None:
        if not self.registrations.loaded:
            raise NotReady("the dashboard is still loading the registry")

    def overview(self) -> list[dict[str, Any]]:
        self._ready_or_raise()
        by_vip = {vip: [e.instance for e in entries] for vip, entries in self.registrations.by_vip().items()}
        return view.overview(by_vip, self._golden)

    def vip(self, vip: str) -> dict[str, Any] | None:
        self._ready_or_raise()
        entries = self.registrations.by_vip().get(vip)
        if not entries:
            return None
        return view.vip_detail(
            vip, entries, time.time(), self.policies.documents.get(vip), self.policies.effective(vip)
        )

    def proxies(self) -> dict[str, Any]:
        return {"sessions": self._proxies, "sampled": self._sampled > 0}

    def health(self) -> dict[str, Any]:
        return {**view.health(self._actors), "sampled": self._sampled > 0, "golden_signals": self._golden is not None}

    def events(self, since: int, limit: int) -> dict[str, Any]:
        return {"seq": self.journal.seq, "events": self.journal.since(since, limit)}

    def plots(self) -> dict[str, Any]:
        return view.plots(self.samples, view.xds_histograms(self._actors))

    # ---- actor protocol --------------------------------------------------------------------------------------------

    async def _metrics(self) -> bytes:
        return metrics.render(metrics.api(DASHBOARD, self.auth.ready, len(self.auth.table.records)))

    async def metrics_url(self) -> str:
        return self._metrics_url

    async def ready(self) -> bool:
        return self.auth.ready and self.registrations.loaded

    async def address(self) -> str:
        return self.settings.dashboard_url

    async def statistics(self) -> DashboardStatistics:
        return DashboardStatistics(
            url=self.settings.dashboard_url,
            instances=len(self.registrations.entries),
            policies=len(self.policies.documents),
            events=self.journal.seq,
            samples=self._sampled,
            sample_errors=self._sample_errors,
        )


@ray.remote
class DashboardActor(DashboardRole):
    """DashboardRole in a Ray actor of its own (the separate shape; runtime.host co-hosts roles)."""

    async def __init__(self, settings: MeshSettings) -> None:
        configure_actor(settings)
        await self.start(settings)
