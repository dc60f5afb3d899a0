"""The dashboard's JSON shaping (pure functions and bounded state) and its HTTP guard, without a deployment."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from meshactors.auth.model import Identity, Role
from meshactors.dashboard import http as dashboard_http
from meshactors.dashboard import view
from meshactors.errors import Unauthenticated
from meshactors.model import Instance, InstanceRef, Status
from meshactors.policy.load import from_document
from meshactors.store.feed import Batch, Loaded, Registered, Removed


def inst(vip: str, iid: str, status: Status = Status.UP, **kw: Any) -> Instance:
    return Instance(app=vip, instance_id=iid, host="10.0.0.1", vip=vip, port=8080, status=status, **kw)


def reg(i: Instance, revision: int = 5) -> Registered:
    return Registered(i.ref, i, revision, lease=7)


def test_registrations_report_loads_registrations_status_changes_and_removals() -> None:
    r = view.Registrations()
    a, b = inst("a", "a1"), inst("b", "b1")
    assert [c.kind for c in r.apply(Loaded((reg(a),), 5))] == ["loaded"]
    changes = r.apply(Batch((reg(b, 6), reg(a.with_status(Status.DOWN), 7)), 7))
    assert [(c.kind, c.vip) for c in changes] == [("registered", "b"), ("updated", "a")]
    assert "DOWN" in changes[1].detail
    assert r.apply(Batch((reg(b, 8),), 8)) == []  # a re-put without a status change (a renewal) is no news
    gone = r.apply(Batch((Removed(InstanceRef("b", "b1"), 9, b),), 9))
    assert [(c.kind, c.vip) for c in gone] == [("removed", "b")]
    relisted = r.apply(Loaded((reg(inst("c", "c1")),), 12))  # after a compaction: what the listing changed
    assert sorted((c.kind, c.vip) for c in relisted) == [("registered", "c"), ("removed", "a")]
    assert set(r.by_vip()) == {"c"} and r.revision == 12


def test_overview_sorts_worst_first_and_merges_golden_signals_by_vip() -> None:
    by_vip = {
        "healthy": [inst("healthy", "1"), inst("healthy", "2")],
        "half": [inst("half", "1"), inst("half", "2", Status.DOWN)],
        "dead": [inst("dead", "1", Status.DOWN)],
        "erroring": [inst("erroring", "1")],
    }
    golden = [{"vip": "erroring", "rps": 12.5, "error_pct": 4.0, "p50_ms": 3, "p99_ms": float("nan")}]
    rows = view.overview(by_vip, golden)
    assert [r["vip"] for r in rows] == ["dead", "erroring", "half", "healthy"]
    erroring = rows[1]
    assert (erroring["up"], erroring["total"], erroring["rps"], erroring["p50_ms"]) == (1, 1, 12.5, 3.0)
    assert erroring["p99_ms"] is None, "a number JSON cannot carry shows as unknown"
    assert rows[3] == {"vip": "healthy", "up": 2, "total": 2, "rps": None, "error_pct": None, "p50_ms": None,
                       "p99_ms": None}  # fmt: skip
    assert view.overview(by_vip, None)[0]["rps"] is None  # no golden signals yet: every signal unknown


def test_vip_detail_shows_instances_the_endpoints_pushed_and_the_policy() -> None:
    now = 1_000_000.0
    up = inst("pay", "p1", zone="z1", version_label="v2", weight=3, registered_at_ms=int((now - 42) * 1000),
              registered_by="service:pay")  # fmt: skip
    down = inst("pay", "p2", Status.DOWN)
    named = Instance(app="pay", instance_id="p3", host="db.local", vip="pay", port=81)
    entries = [view.Entry(i, 7, 5) for i in (up, down, named)]
    policy = from_document({"vip": "pay", "destination": {"connectTimeout": "2s"}})
    d = view.vip_detail("pay", entries, now, policy, policy)
    assert [i["instance_id"] for i in d["instances"]] == ["p1", "p2", "p3"]
    first = d["instances"][0]
    assert (first["zone"], first["version"], first["weight"], first["registered_by"]) == ("z1", "v2", 3, "service:pay")
    assert first["lease_age_s"] == 42.0 and d["instances"][1]["lease_age_s"] is None
    assert [(e["host"], e["port"], e["weight"]) for e in d["endpoints"]] == [("10.0.0.1", 8080, 3)]
    assert [s["instance_id"] for s in d["skipped"]] == ["p3"], "a host name is not pushed, and says why"
    assert d["policy"]["vip"] == "pay" and d["policy"]["destination"]["connectTimeout"] == "2s"
    json.dumps(d)


def _proxy(nack_at: float | None = None, message: str = "") -> dict[str, Any]:
    url = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    return {
        "node_id": "n1", "xds_server": "xds-server-0", "stream_id": "s1", "stream": "delta", "client_kind": "envoy",
        "peer": "ipv4:127.0.0.1:1", "opened_at": 1.0,
        "types": {url: {"type_url": url, "status": "ERROR" if nack_at else "SYNCED", "responses": 2, "names": 1,
                        "last_ack_at": 90.0, "last_nack_at": nack_at, "last_nack": message}},
    }  # fmt: skip


def test_proxy_rows_have_ages_and_a_nack_is_an_event_once() -> None:
    rows = view.proxy_rows([_proxy(), {"xds_server": "xds-server-1", "error": "x" * 1000}], now=100.0)
    t = rows[0]["types"][0]
    assert (t["type"], t["status"], t["last_ack_age_s"], t["last_nack_age_s"]) == ("Cluster", "SYNCED", 10.0, None)
    assert len(rows[1]["error"]) < 400, "a server's error is bounded"
    nacked = view.proxy_rows([_proxy(95.0, "bad cluster")], now=100.0)
    changes = view.nack_changes(rows, nacked)
    assert [(c.kind, "bad cluster" in c.detail) for c in changes] == [("nack", True)]
    assert view.nack_changes(nacked, view.proxy_rows([_proxy(95.0, "bad cluster")], now=101.0)) == []


def test_health_changes_see_restarts_self_preservation_and_expiries() -> None:
    before = [{"name": "registry-shard-0", "state": "ALIVE", "restarts": 0,
               "stats": {"self_preservation": False, "expired": 1}}]  # fmt: skip
    after = [{"name": "registry-shard-0", "state": "ALIVE", "restarts": 1,
              "stats": {"self_preservation": True, "expired": 3}}]  # fmt: skip
    kinds = [c.kind for c in view.health_changes(before, after)]
    assert kinds == ["restart", "self-preservation", "expired"]
    assert view.health_changes(after, after) == []
    assert view.health(after) == {"actors": after, "restarts": 1, "not_alive": []}


def test_events_are_a_bounded_ring_polled_by_sequence() -> None:
    events = view.Events(limit=3)
    for i in range(5):
        events.add("registered", f"i{i}" + "x" * 1000, vip="v", at=float(i))
    assert [e["seq"] for e in events.since(0)] == [5, 4, 3], "newest first, the oldest forgotten"
    assert [e["seq"] for e in events.since(4)] == [5]
    assert len(events.since(0)[0]["detail"]) <= view.MAX_TEXT + 3
    assert events.since(0, limit=1)[0]["seq"] == 5


def test_samples_give_line_plots_and_any_histogram_rows() -> None:
    samples = view.Samples(limit=2)
    cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    for t in (1.0, 2.0, 3.0):
        actors = [{"name": "xds-server-0", "kind": "xds-server",
                   "stats": {"host": {"sessions": t, "responses_by_type": {cluster: 10 * t}}}}]  # fmt: skip
        samples.add(t, actors, instances=4)
    got = view.plots(samples, [{"title": "convergence", "unit": "ms", "cumulative": True,
                                "buckets": [(10, 2), (100, 5), ("+Inf", 6)]}])  # fmt: skip
    sessions = got["lines"][0]
    assert sessions["series"][0]["points"] == [[2.0, 2.0], [3.0, 3.0]], "bounded: the oldest sample is gone"
    assert got["histograms"][0]["bars"] == [{"label": "Cluster", "count": 30.0}]
    assert got["histograms"][1]["bars"] == [
        {"label": "≤10", "count": 2.0}, {"label": "≤100", "count": 3.0}, {"label": "+Inf", "count": 1.0}
    ]  # fmt: skip


def test_sessions_are_bounded_and_expire() -> None:
    s = dashboard_http.Sessions(limit=2, ttl_s=10)
    first, second, third = s.open("t1", now=0), s.open("t2", now=0), s.open("t3", now=0)
    assert s.token(first, now=1) is None and s.token(second, now=1) == "t2" and len(s) == 2
    assert s.token(third, now=11) is None, "expired"
    assert s.token(None) is None and s.token("unknown") is None


class FakeData:
    def __init__(self) -> None:
        self.views = 0

    def overview(self) -> list[dict[str, Any]]:
        return [{"vip": "a", "up": 1, "total": 1}]

    def vip(self, vip: str) -> dict[str, Any] | None:
        return {"vip": vip} if vip == "a" else None

    def proxies(self) -> dict[str, Any]:
        return {"sessions": []}

    def health(self) -> dict[str, Any]:
        return {"actors": []}

    def events(self, since: int, limit: int) -> dict[str, Any]:
        return {"seq": since, "events": [], "limit": limit}

    def plots(self) -> dict[str, Any]:
        return {"lines": [], "histograms": []}

    def viewed(self) -> None:
        self.views += 1


def authenticate(token: str | None) -> Identity:
    if token == "good":
        return Identity("t1", Role.PROXY)
    raise Unauthenticated("unknown token")


async def test_the_api_needs_a_token_and_the_page_trades_one_for_an_httponly_cookie() -> None:
    data = FakeData()
    async with TestClient(TestServer(dashboard_http.build_app(data, authenticate))) as client:
        page = await client.get("/")
        assert page.status == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert "/app.js" in await page.text()
        for path in ("/api/overview", "/api/vips/a", "/api/proxies", "/api/health", "/api/events", "/api/plots"):
            denied = await client.get(path)
            assert denied.status == 401, path
            assert "error" in await denied.json()
        assert (await client.get("/api/overview", headers={"Authorization": "Bearer bad"})).status == 401
        assert (await client.get("/api/overview", headers={"Authorization": "Bearer good"})).status == 200
        assert data.views == 1
        assert (await client.post("/api/session", json={"token": "bad"})).status == 401
        assert (await client.post("/api/session", data=b"not json")).status == 400
        signed = await client.post("/api/session", json={"token": "good"})
        assert signed.status == 200 and (await signed.json())["role"] == "proxy"
        cookie = signed.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "good" not in cookie
        assert (await (await client.get("/api/overview")).json())["vips"][0]["vip"] == "a"
        assert (await client.get("/api/vips/nope")).status == 404
        assert (await client.get("/api/vips/" + "x" * 300)).status == 400
        assert (await client.get("/api/events?since=-1")).status == 400
        assert (await (await client.get("/api/events?since=3&limit=7")).json())["limit"] == 7
        await client.delete("/api/session")
        assert (await client.get("/api/overview")).status == 401, "signed out"


def test_the_xds_servers_convergence_and_fetch_histograms_are_summed_for_the_plots() -> None:
    def server(conv: list[int], fetch: list[int]) -> dict[str, Any]:
        hist = lambda counts: {"bounds": [0.01, 0.1], "counts": counts, "sum": 1.0, "count": sum(counts)}  # noqa: E731
        return {"kind": "xds-server", "stats": {"host": {"convergence_time": hist(conv), "fetch_time": hist(fetch)}}}

    rows = [server([1, 2, 0], [3, 0, 0]), server([0, 1, 4], [1, 1, 1]), {"kind": "registry-api", "stats": {}}]
    conv, fetch = view.xds_histograms(rows)
    assert conv["title"].startswith("Convergence time") and conv["unit"] == "s"
    assert conv["buckets"] == [("≤0.01", 1.0), ("≤0.1", 3.0), ("+Inf", 4.0)]
    assert fetch["buckets"] == [("≤0.01", 4.0), ("≤0.1", 1.0), ("+Inf", 1.0)]
    drawn = view.plots(view.Samples(), [conv, fetch])["histograms"]
    assert [b["count"] for b in drawn[-2]["bars"]] == [1.0, 3.0, 4.0]
    assert view.xds_histograms([{"kind": "xds-server", "stats": {"host": {}}}]) == []
