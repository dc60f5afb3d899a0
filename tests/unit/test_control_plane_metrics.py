"""Control-plane metrics bookkeeping: the histogram, convergence from a change to the last ACK, the builder's change
time on its pushes, the scrape config, and the bound on series whatever the number of VIPs and proxies."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from meshactors.errors import ConfigError
from meshactors.model import Instance
from meshactors.resources.snapshot import Snapshot
from meshactors.snapshot.builder import build_vip
from meshactors.snapshot.publisher import Outbox
from meshactors.snapshot.service import snapshot_from_pb, snapshot_to_pb
from meshactors.telemetry import metrics, scrape
from meshactors.telemetry.histogram import LATENCY_BUCKETS_S, Histogram, HistogramData
from meshactors.xds.convergence import ConvergenceTracker
from meshactors.xds.delta import DeltaStream
from meshactors.xds.sotw import SotwStream
from meshactors.xds.types import CLUSTER, ENDPOINT, DeltaRequest, SotwRequest
from meshactors.xds.view import DictView

# ---- histogram ------------------------------------------------------------------------------------------------------


def test_histogram_buckets_are_inclusive_upper_bounds_and_cumulative_when_rendered() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0, -3.0):  # a negative sample (clock step) counts as 0
        h.observe(v)
    data = h.data()
    assert data.counts == (3, 2, 1) and data.count == 6
    assert math.isclose(data.sum, 0.05 + 0.1 + 0.5 + 1.0 + 7.0)
    assert data.cumulative() == [("0.1", 3), ("1.0", 5), ("+Inf", 6)]
    assert HistogramData.from_dict(dataclasses.asdict(data)) == data


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0), (1.0, math.inf)])
def test_histogram_refuses_bounds_that_are_not_finite_and_increasing(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(bounds)


def test_histogram_family_renders_buckets_sum_and_count() -> None:
    h = Histogram()
    h.observe(0.02)
    h.observe(0.3)
    host = {"convergence_time": dataclasses.asdict(h.data()), "streams": []}
    text = metrics.render(metrics.xds_server("xds-server-0", host, [CLUSTER])).decode()
    got = {(s.name, s.labels.get("le")): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert got["meshactors_xds_convergence_time_seconds_count", None] == 2
    assert math.isclose(got["meshactors_xds_convergence_time_seconds_sum", None], 0.32)
    assert got["meshactors_xds_convergence_time_seconds_bucket", "0.025"] == 1
    assert got["meshactors_xds_convergence_time_seconds_bucket", "0.5"] == 2
    assert got["meshactors_xds_convergence_time_seconds_bucket", "+Inf"] == 2
    assert ("meshactors_xds_fetch_time_seconds_count", None) not in got  # no data: no samples, family only


# ---- convergence ----------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tracker() -> tuple[ConvergenceTracker[str, str], set[tuple[str, str]], Clock]:
    caught: set[tuple[str, str]] = set()  # (session, key) that have ACKed what the host holds
    clock = Clock()
    return ConvergenceTracker(lambda s, k: (s, k) in caught, Histogram(), clock), caught, clock


def test_one_sample_when_the_last_session_holding_the_key_acks() -> None:
    tracker, caught, clock = _tracker()
    caught.add(("c", "shop"))  # c holds shop but the change did not touch what it subscribed
    tracker.changed("shop", 999.5, ["a", "b", "c"])
    assert tracker.waiting("shop") == {"a", "b"} and len(tracker) == 1
    clock.now = 1000.2
    caught.add(("a", "shop"))
    tracker.check("a")
    tracker.check("c")  # not waited on: nothing happens
    assert tracker.histogram.count == 0 and tracker.waiting("shop") == {"b"}
    clock.now = 1001.0
    caught.add(("b", "shop"))
    tracker.check("b")
    assert tracker.histogram.count == 1 and math.isclose(tracker.histogram.sum, 1.5)  # change to the LAST ack
    assert len(tracker) == 0


def test_a_newer_change_joins_the_one_converging_and_keeps_its_time() -> None:
    tracker, caught, _ = _tracker()
    tracker.changed("shop", 999.0, ["a"])
    tracker.changed("shop", 999.8, ["a", "b"])  # a second push before anyone ACKed
    tracker.changed("shop", 0.0, ["a", "b"])  # a resend of unknown time joins, starts nothing
    caught.update({("a", "shop"), ("b", "shop")})
    tracker.check("a")
    tracker.check("b")
    assert tracker.histogram.count == 1 and math.isclose(tracker.histogram.sum, 1.0)


def test_unknown_change_time_or_nobody_lagging_measures_nothing() -> None:
    tracker, caught, _ = _tracker()
    tracker.changed("shop", 0.0, ["a"])
    caught.add(("b", "cart"))
    tracker.changed("cart", 999.0, ["b"])
    tracker.changed("idle", 999.0, [])
    assert len(tracker) == 0 and tracker.histogram.count == 0


def test_closed_sessions_are_not_waited_on_and_a_change_nobody_acked_is_abandoned() -> None:
    tracker, caught, _ = _tracker()
    tracker.changed("shop", 999.0, ["a", "b"])
    caught.add(("a", "shop"))
    tracker.check("a")
    tracker.closed("b")  # a acked, b went away: converged for every session still holding it
    assert tracker.histogram.count == 1 and tracker.abandoned == 0
    tracker.changed("cart", 999.0, ["c"])
    tracker.closed("c")
    assert tracker.histogram.count == 1 and tracker.abandoned == 1 and len(tracker) == 0


def test_a_change_never_acked_is_given_up_after_the_bound() -> None:
    tracker, _, clock = _tracker()
    tracker.changed("shop", 1000.0, ["a"])  # e.g. a NACKed version
    clock.now = 1000.0 + tracker.give_up_s - 1
    assert tracker.expire() == 0
    clock.now = 1000.0 + tracker.give_up_s + 1
    assert tracker.expire() == 1 and tracker.abandoned == 1 and len(tracker) == 0
    tracker.check("a")  # nothing left of it
    assert tracker.histogram.count == 0


def test_state_machines_report_the_acked_version_of_a_name() -> None:
    from meshactors.xds.types import VersionedResource

    view = DictView([VersionedResource.of(CLUSTER, "a", b"1")])
    delta = DeltaStream(view)
    out = delta.on_request(DeltaRequest(type_url=CLUSTER, subscribe=("a",)))
    assert delta.acked_version(CLUSTER, "a") is None  # sent, not ACKed
    delta.on_request(DeltaRequest(type_url=CLUSTER, response_nonce=out.responses[0].nonce))
    assert delta.acked_version(CLUSTER, "a") == view.get(CLUSTER, "a").version
    sotw = SotwStream(view)
    out = sotw.on_request(SotwRequest(type_url=CLUSTER, resource_names=("a",)))
    resp = out.responses[0]
    assert sotw.acked_version(CLUSTER, "a") is None
    sotw.on_request(SotwRequest(type_url=CLUSTER, resource_names=("a",), version_info=resp.version_info,
                                response_nonce=resp.nonce))  # fmt: skip
    assert sotw.acked_version(CLUSTER, "a") == view.get(CLUSTER, "a").version
    assert sotw.acked_version(ENDPOINT, "a") is None


# ---- the change time on the builder's pushes ------------------------------------------------------------------------


def _snap(vip: str, *ports: int) -> Snapshot:
    return build_vip(vip, [Instance(app=vip, instance_id=f"i{p}", host="127.0.0.1", vip=vip, port=p) for p in ports])


def test_change_time_travels_over_the_wire_and_takes_no_part_in_comparisons() -> None:
    snap = _snap("shop", 1)
    stamped = snap.stamped(1234.5)
    assert stamped == snap and stamped.versions() == snap.versions()
    assert snapshot_from_pb(snapshot_to_pb(stamped)).changed_at == 1234.5
    assert snapshot_from_pb(snapshot_to_pb(snap)).changed_at == 0.0


def test_a_coalesced_outbox_keeps_the_earliest_change_time() -> None:
    box = Outbox("xds-server-0", "inc")
    box.put(_snap("shop", 1).stamped(10.0))
    box.put(_snap("shop", 1, 2).stamped(11.0))  # latest content wins, the earlier change's time stays
    box.put(_snap("cart", 1).stamped(12.0))
    box.put(_snap("cart", 1, 2).stamped(5.0))
    box.put(_snap("shoes", 1).stamped(3.0))
    box.put(_snap("shoes", 1, 2))  # unknown time
    got = {s.key: s for s in box.pending.values()}
    assert got["shop"].changed_at == 10.0 and len(got["shop"].names(ENDPOINT)) == 1
    assert got["cart"].changed_at == 5.0 and got["shoes"].changed_at == 3.0


# ---- scrape config --------------------------------------------------------------------------------------------------


def test_scrape_config_has_one_labelled_target_per_metrics_url() -> None:
    urls = {"xds-server-0": "http://127.0.0.1:9101/metrics", "controller": "http://127.0.0.1:9100/metrics"}
    cfg = yaml.safe_load(scrape.render(urls, "1s"))
    assert cfg["global"]["scrape_interval"] == "1s"
    (job,) = cfg["scrape_configs"]
    assert job["job_name"] == "meshactors" and job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:9100"], "labels": {"component": "controller"}},
        {"targets": ["127.0.0.1:9101"], "labels": {"component": "xds-server-0"}},
    ]
    assert "authorization" not in job
    (job,) = yaml.safe_load(scrape.render(urls, "1s", credentials_file="/s/proxy-token"))["scrape_configs"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/s/proxy-token"}


@pytest.mark.parametrize(
    ("urls", "interval", "says"),
    [
        ({}, "1s", "lists no metrics URLs"),
        ({"a": "https://h:1/metrics"}, "1s", "metrics['a']"),
        ({"a": "http://h/metrics"}, "1s", "metrics['a']"),
        ({"a": "http://h:1/metrics"}, "soon", "--scrape-interval"),
    ],
)
def test_scrape_config_refuses_what_prometheus_could_not_scrape(urls: dict[str, str], interval: str, says: str) -> None:
    with pytest.raises(ConfigError, match=__import__("re").escape(says)):
        scrape.render(urls, interval)


# ---- cardinality ----------------------------------------------------------------------------------------------------
# Unit, not integration: the series are a pure function of the statistics the actors report, so rendering
# statistics as large as 1,000 VIPs and 100 proxies make is exact and takes milliseconds, where 100 real Envoys
# would not fit this machine. The statistics come from the real state machines and builder.

TYPES = [CLUSTER, ENDPOINT, "type.googleapis.com/envoy.config.listener.v3.Listener"]


def _deployment_series(vips: int, proxies: int) -> int:
    snaps = [_snap(f"vip-{i}", 8000 + i) for i in range(vips)]
    view = DictView([r for s in snaps for r in s.resources])
    held: dict[str, int] = {}
    for s in snaps:
        for r in s.resources:
            held[r.type_url] = held.get(r.type_url, 0) + 1
    streams = []
    for p in range(proxies):
        m = DeltaStream(view)
        names = tuple(f"vip-{(p * 10 + j) % vips}" for j in range(10))
        for t in TYPES:
            m.on_request(DeltaRequest(type_url=t, subscribe=names))
        streams.append({"kind": "delta" if p % 2 else "sotw", "client_kind": "envoy" if p % 3 else "grpc",
                        "protocol": dataclasses.asdict(m.statistics())})  # fmt: skip
    conv = Histogram()
    for i in range(vips):
        conv.observe(i / 100)
    hist = dataclasses.asdict(conv.data())
    host = {"ready": True, "streams": streams, "resources_held_by_type": held,
            "responses_by_type": {t: proxies for t in TYPES}, "nacks_by_type": {CLUSTER: 3, "other": 1},
            "convergence_time": hist, "fetch_time": hist}  # fmt: skip
    builder = {"ready": True, "resources_held_by_type": held, "resources_changed_by_type": held,
               "resources_pushed_by_type": held, "builds": vips}  # fmt: skip
    shard = {"ready": True, "instances": vips, "registered": vips, "watch": {"revision": 1}}
    actors = [{"name": f"a{i}", "state": "ALIVE", "ready": True, "restarts": 1} for i in range(10)]
    families = [
        *metrics.xds_server("xds-server-0", host, TYPES),
        *metrics.snapshot_builder("snapshot-builder-0", builder, 5),
        *metrics.registry_shard("registry-shard-0", shard, 5),
        *metrics.api("registry-api", True, 3),
        *metrics.eureka_api("eureka-api", {"instances": vips}, True, 3, 5),
        *metrics.controller("controller", True, 10, actors),
    ]
    text = metrics.render(families).decode()
    return sum(len(f.samples) for f in text_string_to_metric_families(text))


# One of each actor kind, 10 actors supervised: per xDS server 2 stream kinds + 3 client kinds + 4 statuses and 1
# response, NACK and held count per type URL (+ "other") + 6 refusal reasons + 2 histograms of
# len(LATENCY_BUCKETS_S) + 3 series + a few scalars; the builder 3 families per type URL; the controller 2 per actor.
SERIES_BOUND = 150  # 128 today


def test_series_stay_within_a_bound_independent_of_vips_and_proxies() -> None:
    small = _deployment_series(vips=10, proxies=1)
    large = _deployment_series(vips=1000, proxies=100)
    assert large == small, (small, large)
    assert large <= SERIES_BOUND, large
    assert 2 * (len(LATENCY_BUCKETS_S) + 3) < large  # the histograms are in the count
