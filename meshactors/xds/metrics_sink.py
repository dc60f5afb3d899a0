"""The metrics service an xDS server runs for its proxies' `envoy.stat_sinks.metrics_service`: streams in, sums out.

Every stream is authenticated like an ADS stream (meshactors.xds.auth: `authorization` metadata, which Envoy sends
from the sink's `initial_metadata`, else the node's token); a stream without a valid token is refused before any
of its reports is counted, and a revoked token's streams end. What the streams report goes to one GoldenSignals.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection

import grpc

from meshactors import log
from meshactors.errors import CodecError, PermissionDenied, Unauthenticated, Unavailable
from meshactors.telemetry.golden import CLUSTER_LABEL, GoldenSignals, MetricsReport, vip_of_stat
from meshactors.xds.auth import Authenticate, authorize
from meshactors.xds.types import Node

HCM_PREFIX_LABEL = "envoy.http_conn_manager_prefix"  # emit_tags_as_labels: a listener's HCM stat prefix

DEFAULT_MAX_STREAMS = 20_000  # metrics streams one server holds (one per proxy that reports to it)

_log = log.get("xds.metrics_sink")


def used_vips(report: MetricsReport) -> set[str]:
    """The VIPs a report shows any request to (a per-cluster counter or histogram that moved this flush)."""
    used: set[str] = set()
    for sample in report.samples:
        if sample.value:
            for key, value in sample.labels:
                if key == CLUSTER_LABEL:
                    used.add(vip_of_stat(value))
    return used


def outbound_aborts(report: MetricsReport) -> int:
    """The outbound listener's fault aborts this flush (the known-VIPs guard's 503s, and policy abort faults)."""
    total = 0
    for sample in report.samples:
        if sample.name.endswith("fault.aborts_injected") and (
            "outbound" in sample.name or (HCM_PREFIX_LABEL, "outbound") in sample.labels
        ):
            total += int(sample.value)
    return total


class MetricsSink:
    """Serves StreamMetrics into `signals`. `known` tells the VIP names that exist now (None: not loaded yet,
    nothing is counted); `ready` whether the server accepts streams."""

    def __init__(
        self,
        name: str,
        signals: GoldenSignals,
        authenticate: Authenticate,
        known: Callable[[], Collection[str] | None],
        ready: Callable[[], bool],
        max_streams: int = DEFAULT_MAX_STREAMS,
        on_report: Callable[[str, set[str], int], None] | None = None,
    ) -> None:
        self.name = name
        self.signals = signals
        self._authenticate = authenticate
        self._known = known
        self._ready = ready
        self.max_streams = max_streams
        # (node id, VIPs the report shows requests to, its outbound aborts): what idle collection learns, and what a
        # session shows of its proxy's junk
        self._on_report = on_report
        self._by_token: dict[str, set[asyncio.Task[object]]] = {}
        self.refused: dict[str, int] = {"unauthenticated": 0, "permission": 0, "not_ready": 0, "limit": 0, "bad": 0}

    def revoke(self, token_id: str) -> int:
        """End the streams of a revoked token; how many there were."""
        tasks = self._by_token.pop(token_id, set())
        for task in tasks:
            task.cancel()
        return len(tasks)

    async def _refuse(self, context: grpc.aio.ServicerContext, reason: str, code: grpc.StatusCode, text: str) -> None:
        self.refused[reason] += 1
        _log.info("metrics stream refused", server=self.name, reason=reason, detail=text[:200])
        await context.abort(code, text)

    async def stream(self, reports: AsyncIterator[MetricsReport], context: grpc.aio.ServicerContext) -> None:
        if not self._ready():
            await self._refuse(context, "not_ready", grpc.StatusCode.UNAVAILABLE, f"{self.name} is still loading")
        if self.signals.streams >= self.max_streams:
            await self._refuse(
                context, "limit", grpc.StatusCode.RESOURCE_EXHAUSTED, f"{self.name} holds {self.max_streams} streams"
            )
        token_id, caller, node_id = "", "", ""
        task = asyncio.current_task()
        refused: tuple[str, grpc.StatusCode, str] | None = None
        try:
            async for report in reports:
                if not token_id:
                    node = report.node
                    as_xds = None if node is None else Node(id=node.id, cluster=node.cluster, token=node.token)
                    who = authorize(self._authenticate, context.invocation_metadata(), as_xds)
                    token_id = who.token_id
                    if task is not None:
                        self._by_token.setdefault(token_id, set()).add(task)
                    self.signals.streams += 1
                    caller = self.signals.caller_of(report.node, self._known() or ())
                    node_id = node.id if node is not None else ""
                known = self._known()
                if known is not None:
                    self.signals.absorb(caller, report, known)
                if self._on_report is not None and node_id:
                    self._on_report(node_id, used_vips(report), outbound_aborts(report))
        except Unauthenticated as exc:
            refused = ("unauthenticated", grpc.StatusCode.UNAUTHENTICATED, f"metrics: {exc.message}")
        except PermissionDenied as exc:
            refused = ("permission", grpc.StatusCode.PERMISSION_DENIED, f"metrics: {exc.message}")
        except Unavailable as exc:
            refused = ("not_ready", grpc.StatusCode.UNAVAILABLE, f"metrics: {exc.message}")
        except CodecError as exc:
            refused = ("bad", grpc.StatusCode.INVALID_ARGUMENT, f"metrics: {exc.message[:300]}")
        except asyncio.CancelledError:
            if token_id and token_id not in self._by_token:  # revoked
                refused = ("unauthenticated", grpc.StatusCode.UNAUTHENTICATED, "metrics: the token was revoked")
            else:
                raise
        finally:
            if token_id:
                self.signals.streams -= 1
                held = self._by_token.get(token_id)
                if held is not None and task is not None:
                    held.discard(task)
                    if not held:
                        del self._by_token[token_id]
        if refused is not None:
            await self._refuse(context, *refused)
