"""etcd stopped for 10 s: the data plane keeps working, writes fail clearly, and everything catches up after."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors.envoy.process import EnvoyProcess
from meshactors.errors import MeshError, Unavailable
from meshactors.registry.client import RegistryClient
from meshactors.testing.backends import get
from meshactors.testing.stack import bearer
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_etcd_stopped_for_10s(stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, backends) -> None:
    info = json.loads((Path(stack["state_dir"]) / "ready.json").read_text())  # etcd_pid is current here
    etcd_pid = int(info["etcd_pid"])
    lease = pb.LeaseSettings(renewal_interval_seconds=2, duration_seconds=30)
    vips = [f"outage-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    refs = []
    for vip in vips:
        b = backends(vip)
        refs.append(registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=b.port, lease=lease))[0])
        registered_at = time.monotonic()
        while get(envoy.listen, vip).status != 200:  # routable once its name reached the known-VIPs guard
            assert time.monotonic() - registered_at < 1.0, "a registration was not routable in 1 s"
            time.sleep(0.01)

    stop = threading.Event()
    failures: list[Any] = []
    sent = [0]
    beat_errors: list[str] = []

    def load() -> None:
        while not stop.is_set():
            for vip in vips:
                reply = get(envoy.listen, vip)
                sent[0] += 1
                if reply.status != 200 or reply.body != vip:
                    failures.append((vip, reply))
            time.sleep(0.02)

    def heartbeats() -> None:  # the instances keep heartbeating through the outage, as real clients do
        with RegistryClient(stack["registry"], token=stack["token"], timeout_s=15) as client:
            while not stop.wait(2.0):
                for ref in refs:
                    try:
                        client.heartbeat(ref)
                    except MeshError as exc:
                        beat_errors.append(type(exc).__name__)

    threads = [threading.Thread(target=load, daemon=True), threading.Thread(target=heartbeats, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(etcd_pid, signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        time.sleep(1.0)
        b3 = backends("during")
        with grpc.insecure_channel(stack["registry"]) as ch:
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.RegistryStub(ch).Register(
                    pb.RegisterRequest(instance=pb.Instance(vip="during-outage", host="127.0.0.1", port=b3.port)),
                    timeout=20,
                    metadata=bearer(stack),
                )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
        assert "etcd" in err.value.details(), err.value.details()
        time.sleep(max(0.0, 10.0 - (time.monotonic() - paused_at)))
    finally:
        os.kill(etcd_pid, signal.SIGCONT)
    resumed_at = time.monotonic()

    # a registration made now is routable within 2 s
    late_vip = f"after-{uuid.uuid4().hex[:6]}"
    b4 = backends(late_vip)
    while True:
        try:
            registry.register(pb.Instance(vip=late_vip, host="127.0.0.1", port=b4.port, lease=lease))
            break
        except Unavailable:
            assert time.monotonic() - resumed_at < 15, "registry did not recover after etcd returned"
            time.sleep(0.1)
    registered_at = time.monotonic()
    while get(envoy.listen, late_vip).status != 200:
        assert time.monotonic() - registered_at < 2.0, "a registration after the outage was not routable in 2 s"
        time.sleep(0.02)

    time.sleep(2.5)  # a heartbeat round after the outage
    stop.set()
    for t in threads:
        t.join(20)
    assert sent[0] > 200
    assert failures == [], failures[:5]
    for vip in vips:  # instances that kept heartbeating were not expired
        assert len(registry.list(vip=vip)[0]) == 1, vip
    assert "Unavailable" in beat_errors, "heartbeats during the outage should have failed as UNAVAILABLE"
    for ref in refs:
        registry.deregister(ref)
