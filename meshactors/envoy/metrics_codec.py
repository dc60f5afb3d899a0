"""Envoy's metrics service wire codec: StreamMetricsMessage bytes <-> plain telemetry samples, and its gRPC glue.

xds-protos ships the sink's config protos but not `envoy.service.metrics.v3` nor Prometheus' `MetricFamily`, so
the few messages are declared here (field numbers as in envoy/service/metrics/v3/metrics_service.proto and
io/prometheus/client/metrics.proto) in a descriptor pool of their own. The identifier's Node is kept as bytes in
that pool and parsed with xds-protos' own Node, so nothing clashes with the default pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from meshactors.envoy.bootstrap import NODE_TOKEN_KEY
from meshactors.envoy.codec import _node_token
from meshactors.errors import CodecError
from meshactors.telemetry.golden import MetricsReport, ReportNode, Sample

METRICS_SERVICE = "envoy.service.metrics.v3.MetricsService"
STREAM_METRICS_METHOD = f"/{METRICS_SERVICE}/StreamMetrics"

# io.prometheus.client.MetricType
COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM = 0, 1, 2, 3, 4

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _message(
    file: descriptor_pb2.FileDescriptorProto, name: str, fields: Iterable[tuple[str, int, int, int, str]]
) -> None:
    msg = file.message_type.add(name=name)
    for fname, number, ftype, label, type_name in fields:
        f = msg.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name


def _pool() -> descriptor_pool.DescriptorPool:
    prom = descriptor_pb2.FileDescriptorProto(
        name="meshactors/io/prometheus/client/metrics.proto", package="io.prometheus.client", syntax="proto2"
    )
    p = ".io.prometheus.client."
    _message(prom, "LabelPair", [("name", 1, _F.TYPE_STRING, _OPT, ""), ("value", 2, _F.TYPE_STRING, _OPT, "")])
    _message(prom, "Gauge", [("value", 1, _F.TYPE_DOUBLE, _OPT, "")])
    _message(prom, "Counter", [("value", 1, _F.TYPE_DOUBLE, _OPT, "")])
    _message(prom, "Untyped", [("value", 1, _F.TYPE_DOUBLE, _OPT, "")])
    _message(
        prom,
        "Bucket",
        [("cumulative_count", 1, _F.TYPE_UINT64, _OPT, ""), ("upper_bound", 2, _F.TYPE_DOUBLE, _OPT, "")],
    )
    _message(
        prom,
        "Histogram",
        [
            ("sample_count", 1, _F.TYPE_UINT64, _OPT, ""),
            ("sample_sum", 2, _F.TYPE_DOUBLE, _OPT, ""),
            ("bucket", 3, _F.TYPE_MESSAGE, _REP, p + "Bucket"),
        ],
    )
    _message(
        prom,
        "Metric",
        [
            ("label", 1, _F.TYPE_MESSAGE, _REP, p + "LabelPair"),
            ("gauge", 2, _F.TYPE_MESSAGE, _OPT, p + "Gauge"),
            ("counter", 3, _F.TYPE_MESSAGE, _OPT, p + "Counter"),
            ("untyped", 5, _F.TYPE_MESSAGE, _OPT, p + "Untyped"),
            ("histogram", 7, _F.TYPE_MESSAGE, _OPT, p + "Histogram"),
        ],
    )
    _message(
        prom,
        "MetricFamily",
        [
            ("name", 1, _F.TYPE_STRING, _OPT, ""),
            ("type", 3, _F.TYPE_INT32, _OPT, ""),  # an enum on the wire is a varint; int32 keeps unknown values
            ("metric", 4, _F.TYPE_MESSAGE, _REP, p + "Metric"),
        ],
    )
    svc = descriptor_pb2.FileDescriptorProto(
        name="meshactors/envoy/service/metrics/v3/metrics_service.proto",
        package="envoy.service.metrics.v3",
        syntax="proto3",
        dependency=[prom.name],
    )
    s = ".envoy.service.metrics.v3."
    _message(svc, "StreamMetricsResponse", [])
    _message(svc, "Identifier", [("node", 1, _F.TYPE_BYTES, _OPT, "")])  # a config.core.v3.Node, parsed apart
    _message(
        svc,
        "StreamMetricsMessage",
        [
            ("identifier", 1, _F.TYPE_MESSAGE, _OPT, s + "Identifier"),
            ("envoy_metrics", 2, _F.TYPE_MESSAGE, _REP, p + "MetricFamily"),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(prom)
    pool.Add(svc)
    return pool


_POOL = _pool()
StreamMetricsMessage: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("envoy.service.metrics.v3.StreamMetricsMessage")
)
StreamMetricsResponse: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("envoy.service.metrics.v3.StreamMetricsResponse")
)
MetricFamily: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("io.prometheus.client.MetricFamily"))


def _node(data: bytes) -> ReportNode:
    try:
        node = base_pb2.Node.FromString(data)
    except message.DecodeError as exc:
        raise CodecError(f"identifier.node is not a valid envoy.config.core.v3.Node: {exc}") from exc
    return ReportNode(id=node.id, cluster=node.cluster, token=_node_token(node))


def _sample(family: str, kind: int, metric: Any) -> Sample | None:
    labels = tuple((lp.name, lp.value) for lp in metric.label)
    if kind == HISTOGRAM and metric.HasField("histogram"):
        h = metric.histogram
        return Sample(
            family,
            labels,
            float(h.sample_count),
            histogram=True,
            buckets=tuple((b.upper_bound, int(b.cumulative_count)) for b in h.bucket),
            total=h.sample_sum,
        )
    for field in ("counter", "gauge", "untyped"):
        if metric.HasField(field):
            return Sample(family, labels, getattr(metric, field).value)
    return None  # summaries and empty metrics carry nothing the golden signals use


def decode_stream_metrics(data: bytes) -> MetricsReport:
    """StreamMetricsMessage bytes -> MetricsReport (the node only on a stream's first message)."""
    try:
        msg = StreamMetricsMessage.FromString(data)
    except message.DecodeError as exc:
        raise CodecError(f"not a valid envoy.service.metrics.v3.StreamMetricsMessage: {exc}") from exc
    node = _node(msg.identifier.node) if msg.HasField("identifier") and msg.identifier.node else None
    samples = []
    for fam in msg.envoy_metrics:
        for metric in fam.metric:
            s = _sample(fam.name, fam.type, metric)
            if s is not None:
                samples.append(s)
    return MetricsReport(node=node, samples=tuple(samples), size=len(data))


def encode_stream_metrics(report: MetricsReport) -> bytes:
    """MetricsReport -> StreamMetricsMessage bytes (for test clients: what an Envoy sends)."""
    msg = StreamMetricsMessage()
    if report.node is not None:
        node = base_pb2.Node(id=report.node.id, cluster=report.node.cluster)
        if report.node.token:
            node.metadata.fields[NODE_TOKEN_KEY].string_value = report.node.token
        msg.identifier.node = node.SerializeToString()
    for s in report.samples:
        fam = msg.envoy_metrics.add(name=s.name, type=HISTOGRAM if s.histogram else COUNTER)
        metric = fam.metric.add()
        for k, v in s.labels:
            metric.label.add(name=k, value=v)
        if s.histogram:
            metric.histogram.sample_count = int(s.value)
            metric.histogram.sample_sum = s.total
            for le, n in s.buckets:
                metric.histogram.bucket.add(upper_bound=le, cumulative_count=n)
        else:
            metric.counter.value = s.value
    return msg.SerializeToString()


MetricsHandler = Callable[[AsyncIterator[MetricsReport], "grpc.aio.ServicerContext"], Any]


def metrics_generic_handler(handler: MetricsHandler) -> grpc.GenericRpcHandler:
    """The MetricsService for a grpc.aio server: `handler` receives MetricsReports; its return value is ignored
    (the response is always the empty StreamMetricsResponse)."""

    async def stream_metrics(requests: AsyncIterator[MetricsReport], context: grpc.aio.ServicerContext) -> Any:
        await handler(requests, context)
        return StreamMetricsResponse()

    method = grpc.stream_unary_rpc_method_handler(
        stream_metrics,
        request_deserializer=decode_stream_metrics,
        response_serializer=lambda resp: resp.SerializeToString(),
    )
    return grpc.method_handlers_generic_handler(METRICS_SERVICE, {"StreamMetrics": method})


def stream_metrics_call(channel: grpc.aio.Channel) -> grpc.aio.StreamUnaryMultiCallable:
    """Client side: a callable sending MetricsReports on one StreamMetrics stream (what Envoy's sink does)."""
    return channel.stream_unary(
        STREAM_METRICS_METHOD, request_serializer=encode_stream_metrics, response_deserializer=lambda b: b
    )
