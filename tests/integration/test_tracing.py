"""Tracing through two real sidecars: a client and a server span of one trace reach an OTLP gRPC receiver."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from meshactors.envoy.process import EnvoyProcess
from meshactors.registry.client import RegistryClient
from meshactors.store.server import free_port
from meshactors.testing.backends import get, wait_routable
from meshactors.testing.waits import until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@dataclass(frozen=True)
class Span:
    service: str
    span: trace_pb2.Span

    def attribute(self, key: str) -> str:
        for kv in self.span.attributes:
            if kv.key == key:
                return kv.value.string_value
        return ""

    def mentions(self, text: str) -> bool:
        return any(text in kv.value.string_value for kv in self.span.attributes)


def _scope_spans(resource_spans: Any) -> Any:
    """ResourceSpans field 2: `scope_spans` in opentelemetry-proto, `instrumentation_library_spans` in the older
    copy of the same modules that xds-protos also ships. Whichever wheel pip installs last owns the files
    (measured: a fresh `.venv` gets xds-protos' copy), and the field is the same on the wire, so read either."""
    names = {f.name for f in resource_spans.DESCRIPTOR.fields}
    return resource_spans.scope_spans if "scope_spans" in names else resource_spans.instrumentation_library_spans


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP gRPC TraceService in this process: keeps every span it is sent, with its resource's service.name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        got = []
        for rs in request.resource_spans:
            service = next((kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name"), "")
            got += [Span(service, s) for ss in _scope_spans(rs) for s in ss.spans]
        with self._lock:
            self._spans += got
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self, match: Callable[[Span], bool] = lambda _: True) -> list[Span]:
        with self._lock:
            return [s for s in self._spans if match(s)]

    def stop(self) -> None:
        self.server.stop(grace=None)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


@dataclass
class Sidecar:
    proc: subprocess.Popen[str]
    listen: int
    admin: int
    inbound: int | None
    work: Path

    def envoy(self) -> EnvoyProcess:
        """A handle on the sidecar's Envoy for its admin API (this test did not start it: never .stop() it)."""
        return EnvoyProcess(self.work / "envoy.yaml", ("127.0.0.1", self.admin), self.work / "envoy.log")


@contextmanager
def sidecar(
    stack: dict[str, Any], registry: RegistryClient, session_dir: Path, vip: str, app_port: int, *extra: str,
    inbound: bool = False,
) -> Iterator[Sidecar]:  # fmt: skip
    """A real `meshactors sidecar` for `vip` as a child process; yields once the VIP is registered."""
    listen, admin = free_port(), free_port()
    inbound_port = free_port() if inbound else None
    work = session_dir / f"sidecar-{vip}"
    args = [sys.executable, "-m", "meshactors.cli", "sidecar", "--ready-file", str(Path(stack["state_dir"]) /
            "ready.json"), "--vip", vip, "--port", str(app_port), "--listen", f"127.0.0.1:{listen}", "--admin",
            f"127.0.0.1:{admin}", "--work-dir", str(work), *extra]  # fmt: skip
    if inbound_port is not None:
        args += ["--inbound-port", str(inbound_port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not registry.list(vip=vip)[0]:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"the sidecar did not register {vip}"
            time.sleep(0.1)
        yield Sidecar(proc, listen, admin, inbound_port, work)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


def test_a_request_through_two_sidecars_is_one_trace_of_a_client_and_a_server_span(
    stack: dict[str, Any], registry: RegistryClient, backends: Any, session_dir: Path, receiver: Receiver
) -> None:
    tag = uuid.uuid4().hex[:6]
    s_vip, c_vip = f"traced-s-{tag}", f"traced-c-{tag}"
    backend, app_c = backends(s_vip), backends(c_vip)
    otlp = ["--tracing-otlp", f"127.0.0.1:{receiver.port}"]
    with (
        sidecar(stack, registry, session_dir, s_vip, backend.port, *otlp, inbound=True) as server,
        sidecar(stack, registry, session_dir, c_vip, app_c.port, *otlp) as client,
    ):
        # the server's sidecar registered its inbound listener, not the app's own port
        (registered,) = registry.list(vip=s_vip)[0]
        assert registered.port == server.inbound and registered.port != backend.port
        proxy = ("127.0.0.1", client.listen)
        assert wait_routable(proxy, [s_vip], timeout_s=30), f"{s_vip} never answered through {c_vip}'s sidecar"

        path = f"/traced-{uuid.uuid4().hex}"
        reply = get(proxy, s_vip, path)  # app C calls http://S/<path> through its sidecar
        assert (reply.status, reply.body) == (200, s_vip)

        def both() -> tuple[Span, Span] | None:
            mine = receiver.spans(lambda s: s.mentions(path))
            clients = [s for s in mine if s.service == c_vip and s.span.kind == trace_pb2.Span.SPAN_KIND_CLIENT]
            servers = [s for s in mine if s.service == s_vip and s.span.kind == trace_pb2.Span.SPAN_KIND_SERVER]
            return (clients[0], servers[0]) if clients and servers else None

        # Envoy's OpenTelemetry tracer flushes every 5 s
        client_span, server_span = until(both, 30, f"no client and server span for {path}: {receiver.spans()}")
        mine = receiver.spans(lambda s: s.mentions(path))
        assert len(mine) == 2, [(s.service, s.span.kind) for s in mine]
        assert client_span.span.trace_id == server_span.span.trace_id and len(client_span.span.trace_id) == 16
        assert server_span.span.parent_span_id == client_span.span.span_id  # joined by the propagated context
        assert client_span.span.parent_span_id == b""  # app C sent no context: the trace starts at its sidecar

        # the app behind the server sidecar got the context to copy onto its own calls
        (headers,) = [h for p, h in backend.seen if p == path]
        version, trace_id, parent_id, flags = headers["traceparent"].split("-")
        assert (version, flags) == ("00", "01")
        assert trace_id == server_span.span.trace_id.hex()
        assert parent_id == server_span.span.span_id.hex()
        assert headers.get("x-request-id")
        assert server_span.attribute("guid:x-request-id") == headers["x-request-id"]
        for car in (client, server):
            assert car.envoy().stats().get("tracing.opentelemetry.spans_sent", 0) >= 1


def test_without_tracing_otlp_nothing_is_traced_or_exported(
    stack: dict[str, Any], registry: RegistryClient, backends: Any, session_dir: Path, receiver: Receiver
) -> None:
    tag = uuid.uuid4().hex[:6]
    s_vip, c_vip = f"untraced-s-{tag}", f"untraced-c-{tag}"
    backend, app_c = backends(s_vip), backends(c_vip)
    with (
        sidecar(stack, registry, session_dir, s_vip, backend.port, inbound=True) as server,
        sidecar(stack, registry, session_dir, c_vip, app_c.port) as client,
    ):
        proxy = ("127.0.0.1", client.listen)
        assert wait_routable(proxy, [s_vip], timeout_s=30)
        path = f"/untraced-{uuid.uuid4().hex}"
        assert get(proxy, s_vip, path).status == 200
        (headers,) = [h for p, h in backend.seen if p == path]
        assert "traceparent" not in headers and "tracestate" not in headers
        for car in (client, server):
            text = (car.work / "envoy.yaml").read_text()
            assert "opentelemetry" not in text and "otlp" not in text.lower()  # no tracer, no collector cluster
            stats = car.envoy().stats()
            assert not [k for k in stats if k.startswith("tracing.")], "a tracer is configured"
            assert not [k for k, v in stats.items() if ".tracing." in k and k.endswith("random_sampling") and v]
    assert receiver.spans() == []


def test_the_next_sidecar_follows_the_first_sidecars_sampling_decision(
    stack: dict[str, Any], registry: RegistryClient, backends: Any, session_dir: Path, receiver: Receiver
) -> None:
    """The server's sidecar samples 0 %: a request that comes straight to it is not traced, one its caller's
    sidecar sampled is (the decision travels in x-request-id), so a trace is never cut in half."""
    tag = uuid.uuid4().hex[:6]
    s_vip, c_vip = f"sampled-s-{tag}", f"sampled-c-{tag}"
    backend, app_c = backends(s_vip), backends(c_vip)
    otlp = ["--tracing-otlp", f"127.0.0.1:{receiver.port}"]
    with (
        sidecar(stack, registry, session_dir, s_vip, backend.port, *otlp, "--tracing-sampling", "0", inbound=True)
        as server,
        sidecar(stack, registry, session_dir, c_vip, app_c.port, *otlp) as client,
    ):  # fmt: skip
        assert server.inbound is not None
        proxy = ("127.0.0.1", client.listen)
        assert wait_routable(proxy, [s_vip], timeout_s=30)
        direct, through = f"/direct-{uuid.uuid4().hex}", f"/through-{uuid.uuid4().hex}"
        assert get(("127.0.0.1", server.inbound), s_vip, direct).status == 200  # first: flushed no later
        assert get(proxy, s_vip, through).status == 200

        def spans() -> tuple[Span, Span] | None:  # each sidecar flushes on its own 5 s timer
            servers = receiver.spans(lambda s: s.mentions(through) and s.service == s_vip)
            clients = receiver.spans(lambda s: s.mentions(through) and s.service == c_vip)
            return (clients[0], servers[0]) if clients and servers else None

        client_span, span = until(spans, 30, f"the server sidecar did not follow the decision for {through}")
        assert span.span.parent_span_id == client_span.span.span_id
        assert receiver.spans(lambda s: s.mentions(direct)) == []
        (headers,) = [h for p, h in backend.seen if p == direct]
        assert headers["traceparent"].endswith("-00")  # not sampled: the app's next hop is not traced either
