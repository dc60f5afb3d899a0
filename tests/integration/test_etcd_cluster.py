"""A 3-member etcd cluster: losing the member the control plane talks to changes nothing for anyone."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshactors.envoy.process import start_generic_envoy, xds_endpoints
from meshactors.errors import MeshError
from meshactors.registry.client import RegistryClient
from meshactors.store.server import EtcdServer, free_port
from meshactors.testing.backends import Backend, get
from meshactors.testing.stack import UpProcess
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def etcd3(session_dir: Path) -> Iterator[list[EtcdServer]]:
    members = [
        EtcdServer(session_dir / "etcd3" / f"m{i}" / "data", name=f"m{i}", client_port=free_port(),
                   peer_port=free_port())
        for i in range(3)
    ]  # fmt: skip
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        m.initial_cluster = cluster
        m.start(wait=False)
    try:
        for m in members:
            m.wait_ready(30)
        yield members
    finally:
        for m in members:
            m.stop()


@pytest.fixture(scope="module")
def stack3(stack: dict[str, Any], etcd3: list[EtcdServer], session_dir: Path) -> Iterator[dict[str, Any]]:
    """A second deployment in the session's Ray (its own namespace) on the 3-member etcd cluster."""
    up = UpProcess(
        session_dir / "stack3",
        args=[
            "--etcd", ",".join(m.url for m in etcd3), "--ray-address", stack["ray_address"],
            "--namespace", "meshtest-etcd3", "--registry-port", "0", "--eureka-port", "0",
            "--dashboard-port", "0", "--xds-port", "0",
            "--shards", "1", "--builders", "1", "--xds-servers", "1",
        ],
    )  # fmt: skip
    info = up.start(timeout_s=120)
    try:
        yield info
    finally:
        up.stop()


def test_losing_one_member_changes_nothing(stack3: dict[str, Any], etcd3: list[EtcdServer], session_dir: Path):
    listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    envoy = start_generic_envoy(
        xds_endpoints(stack3["xds"]), "etcd3", session_dir, listen, admin, name="envoy3", token=stack3["proxy_token"]
    )
    made: list[Backend] = []
    try:
        client = RegistryClient(stack3["registry"], token=stack3["token"], timeout_s=20)
        vips = [f"e3-{uuid.uuid4().hex[:6]}" for _ in range(2)]
        for vip in vips:
            made.append(Backend(vip))
            client.register(pb.Instance(vip=vip, host="127.0.0.1", port=made[-1].port))
            deadline = time.monotonic() + 10
            while get(listen, vip).status != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)

        reg_vip = f"e3-reg-{uuid.uuid4().hex[:6]}"  # a stream of registrations (no traffic goes there)
        stop = threading.Event()
        failures: list[Any] = []
        reg_errors: list[str] = []
        registered: list[str] = []
        sent = [0]

        def load() -> None:
            while not stop.is_set():
                for vip in vips:
                    reply = get(listen, vip)
                    sent[0] += 1
                    if reply.status != 200:
                        failures.append((vip, reply.status))
                time.sleep(0.02)

        def registrations() -> None:
            with RegistryClient(stack3["registry"], token=stack3["token"], timeout_s=20) as c:
                i = 0
                while not stop.is_set():
                    try:
                        c.register(pb.Instance(vip=reg_vip, host="127.0.0.1", port=20000 + i, instance_id=f"r{i}"))
                        registered.append(f"r{i}")
                    except MeshError as exc:
                        reg_errors.append(str(exc))
                    i += 1
                    time.sleep(0.1)

        threads = [threading.Thread(target=load, daemon=True), threading.Thread(target=registrations, daemon=True)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        etcd3[0].proc.kill()  # the member listed first: the one every control-plane channel talks to
        etcd3[0].proc.wait(5)
        before_loss = len(registered)
        time.sleep(6.0)
        late = Backend("late")
        made.append(late)
        late_vip = f"e3-late-{uuid.uuid4().hex[:6]}"
        client.register(pb.Instance(vip=late_vip, host="127.0.0.1", port=late.port))
        start = time.monotonic()
        while get(listen, late_vip).status != 200:
            assert time.monotonic() - start < 2.0, "a registration after losing a member was not routable in 2 s"
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join(30)
        assert sent[0] > 200 and failures == [], failures[:5]
        assert reg_errors == [], reg_errors[:3]
        # registrations went on through the loss: at one every ~0.1-0.2 s, the 6 s after it must have acknowledged
        # many (a count over the whole run was a proxy for this that load on 2 cores made flaky: 40 vs > 40)
        assert len(registered) - before_loss >= 20, (before_loss, len(registered))
        listed = {i.instance_id for i in client.list(vip=reg_vip)[0]}
        assert set(registered) <= listed, "every acknowledged registration is in etcd"
        client.close()
    finally:
        envoy.stop()
        for b in made:
            b.stop()
