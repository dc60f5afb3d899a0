"""On-demand discovery end to end: a real Envoy from the generic bootstrap, the `up` stack, real backends."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from meshactors.envoy.process import EnvoyProcess
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.runtime.calls import call_sync
from meshactors.runtime.ops import handle_of, kill
from meshactors.testing.backends import get, guard_knows
from meshactors.v1 import registry_pb2 as pb
from meshactors.xds.types import CLUSTER, ENDPOINT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# e2e registrations outlive the test session: no lease runs out mid-test and changes a version by itself
LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)


def _vip(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _register(registry: RegistryClient, vip: str, port: int, **kw: Any) -> InstanceRef:
    ref, _ = registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, lease=LONG_LEASE, **kw))
    return ref


def _until(predicate: Any, timeout_s: float, interval_s: float = 0.01) -> float:
    """Poll until predicate() is true; returns the seconds it took; fails loudly on timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)
    return time.monotonic() - start


GUARD_BODY = "fault filter abort"  # what the known-VIPs guard answers a Host that is no registered VIP


def test_first_request_to_a_never_seen_vip_returns_200(registry: RegistryClient, envoy: EnvoyProcess, backends) -> None:
    vip = _vip()
    b = backends("first")
    _register(registry, vip, b.port)
    took = _until(lambda: guard_knows(envoy, vip), timeout_s=1.0)  # the name reaches the guard first
    assert took < 1.0
    before = envoy.stats().get("cluster_manager.odcds.update_success", 0)
    reply = get(envoy.listen, vip)
    assert (reply.status, reply.body) == (200, "first")
    again = get(envoy.listen, f"{vip}:8080")  # the port in Host is stripped: same cluster
    assert (again.status, again.body) == (200, "first")
    assert envoy.stats()["cluster_manager.odcds.update_success"] == before + 1


def test_new_instance_gets_traffic_and_deregistered_one_stops_within_a_second(
    registry: RegistryClient, envoy: EnvoyProcess, backends
) -> None:
    vip = _vip()
    a, b = backends("a"), backends("b")
    ref_a = _register(registry, vip, a.port)
    _until(lambda: guard_knows(envoy, vip), timeout_s=1.0)  # routable once the name reached the guard
    assert get(envoy.listen, vip).body == "a"

    _register(registry, vip, b.port)
    took = _until(lambda: get(envoy.listen, vip).body == "b", timeout_s=1.0)
    assert took < 1.0
    seen = Counter(get(envoy.listen, vip).body for _ in range(20))
    assert set(seen) == {"a", "b"}, seen  # round robin over both

    registry.deregister(ref_a)
    start = time.monotonic()
    _until(lambda: all(get(envoy.listen, vip).body == "b" for _ in range(4)), timeout_s=1.0)
    assert time.monotonic() - start < 1.0
    assert all(get(envoy.listen, vip).body == "b" for _ in range(20))


def test_unknown_vip_fails_fast_every_time_then_works_once_registered(
    registry: RegistryClient, envoy: EnvoyProcess, backends
) -> None:
    vip = _vip("later")
    odcds = envoy.stats().get("cluster_manager.odcds.update_success", 0)
    first, second = get(envoy.listen, vip), get(envoy.listen, vip)
    assert (first.status, second.status) == (503, 503)
    assert first.body == second.body == GUARD_BODY  # answered by the guard: never an on-demand subscription
    assert first.seconds < 0.1 and second.seconds < 0.1, (first.seconds, second.seconds)
    assert envoy.stats().get("cluster_manager.odcds.update_success", 0) == odcds

    b = backends("late")
    _register(registry, vip, b.port)
    _until(lambda: get(envoy.listen, vip).status == 200, timeout_s=2.0)
    assert get(envoy.listen, vip).body == "late"


def _sessions_of(ray: Any, namespace: str, node_id: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in ("xds-server-0", "xds-server-1"):
        try:
            sessions = call_sync(handle_of(name, namespace), "sessions", timeout_s=10)
        except Exception:
            continue
        out[name] = [s for s in sessions if s["node_id"] == node_id]
    return out


def _own_versions(session: dict[str, Any], vips: list[str]) -> tuple[set[tuple[str, str, str]], int]:
    """(type URL, name, version) the session's client has ACKed of resources named for `vips`, and how many of
    them are still unACKed."""
    acked, unacked = set(), 0
    for t in session["protocol"]["types"]:
        acked |= {(t["type_url"], n, v) for n, v in t["acked"] if any(vip in n for vip in vips)}
        unacked += sum(1 for n, _ in t["unacked"] if any(vip in n for vip in vips))
    return acked, unacked


def test_killing_the_attached_xds_server_keeps_traffic_flowing_and_resends_nothing(
    stack: dict[str, Any], registry: RegistryClient, envoy: EnvoyProcess, ray_driver: Any, backends
) -> None:
    ray = ray_driver
    vips = [_vip("chaos"), _vip("chaos")]
    for vip in vips:
        b = backends(vip)
        _register(registry, vip, b.port)
        _until(lambda vip=vip: guard_knows(envoy, vip), timeout_s=1.0)
        assert get(envoy.listen, vip).status == 200

    def attached() -> dict[str, list[dict[str, Any]]]:
        return {k: v for k, v in _sessions_of(ray, stack["namespace"], "e2e-envoy").items() if v}

    def own_settled() -> bool:
        sessions = [s for ss in attached().values() for s in ss]
        return len(sessions) == 1 and _own_versions(sessions[0], vips)[1] == 0

    # what Envoy holds of the test's own VIPs, once it has ACKed all of it
    _until(own_settled, timeout_s=5, interval_s=0.1)
    now = attached()
    assert len(now) == 1, now
    victim, [old_session] = next(iter(now.items()))
    own_before, _ = _own_versions(old_session, vips)
    assert {n for _, n, _ in own_before} >= set(vips), own_before  # their Clusters and assignments at least

    failures: list[Any] = []
    sent = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal sent
        while not stop.is_set():
            for vip in vips:
                reply = get(envoy.listen, vip)
                sent += 1
                if reply.status != 200 or reply.body != vip:
                    failures.append((vip, reply))
            time.sleep(0.01)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    time.sleep(0.5)
    kill(handle_of(victim, stack["namespace"]), restart=True)

    def reattached() -> bool:
        now = _sessions_of(ray, stack["namespace"], "e2e-envoy")
        return any(s["stream_id"] != old_session["stream_id"] for ss in now.values() for s in ss)

    _until(reattached, timeout_s=20, interval_s=0.2)
    time.sleep(1.0)  # traffic keeps flowing after the reconnect too
    stop.set()
    t.join(10)
    assert sent > 50
    assert failures == [], failures[:5]

    now = _sessions_of(ray, stack["namespace"], "e2e-envoy")
    [new_session] = [s for ss in now.values() for s in ss]
    assert new_session["stream_id"] != old_session["stream_id"]
    # Envoy came back with initial_resource_versions for everything it held: nothing it held is sent again. What
    # may be sent is what changed while it was away (versions are content hashes): the known-VIPs guard config
    # changes with any registration that appears or expires anywhere, and so do the assignments of VIPs earlier
    # tests left to expire.
    types = {t["type_url"]: t for t in new_session["protocol"]["types"]}
    sends = {u: (t["sent_new"], t["sent_changed"], t["sent_unchanged"], t["last_sent"]) for u, t in types.items()}
    if new_session["resources_sent"]:
        print(f"\nsent on the new session (new, changed, unchanged, last): {sends}")
    counted = sum(t["sent_new"] + t["sent_changed"] + t["sent_unchanged"] for t in types.values())
    assert new_session["resources_sent"] <= counted, (new_session, sends)
    assert all(t["sent_new"] == 0 for t in types.values()), sends  # it reported holding all it wanted
    rewarmed = types[CLUSTER]["sent_changed"] if CLUSTER in types else 0
    for url, t in types.items():  # an unchanged resend only of an assignment whose Cluster changed (re-warming)
        assert t["sent_unchanged"] <= (rewarmed if url == ENDPOINT else 0), sends
    # the test's own VIPs changed on no server: Envoy holds exactly the versions it held before the kill
    own_after, own_unacked = _own_versions(new_session, vips)
    assert (own_after, own_unacked) == (own_before, 0), (own_before, own_after)
    assert not any(any(v in str(t["last_sent"]) for v in vips) for t in types.values()), sends
    clusters = next(t for t in new_session["protocol"]["types"] if t["type_url"].endswith("Cluster"))
    assert set(vips) <= set(clusters["subscribed"])
    assert envoy.stats()["control_plane.connected_state"] == 1
