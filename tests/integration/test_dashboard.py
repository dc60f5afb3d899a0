"""The dashboard in a real headless Chromium (Selenium + Debian's chromedriver) against the session stack and Envoy."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from meshactors.envoy.process import EnvoyProcess
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.testing.waits import until
from meshactors.v1 import registry_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)
LIVE_S = 5.0  # how soon a registration must show on an open page, without a reload
WINDOW = (1400, 1000)


def _base(stack: dict[str, Any]) -> str:
    parts = urlsplit(stack["dashboard"])
    return f"{parts.scheme}://{parts.netloc}"


def _get(stack: dict[str, Any], path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(_base(stack) + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)  # fmt: skip
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(*WINDOW)
    try:
        yield driver
    finally:
        driver.quit()


class Registered(list[str]):
    """The VIPs this module registered, in order; `add` registers one more instance (a long lease)."""

    def __init__(self, registry: RegistryClient) -> None:
        super().__init__()
        self.registry = registry
        self.refs: list[InstanceRef] = []

    def add(self, vip: str, port: int) -> None:
        ref, _ = self.registry.register(pb.Instance(vip=vip, host="127.0.0.1", port=port, zone="z1", lease=LONG_LEASE))
        self.refs.append(ref)
        if vip not in self:
            self.append(vip)


@pytest.fixture(scope="module")
def vips(registry: RegistryClient) -> Iterator[Registered]:
    made = Registered(registry)
    yield made
    for ref in made.refs:
        registry.deregister(ref)


# The page re-renders its tables on every poll: read the DOM in one script, never through element handles kept
# across a render (they go stale).
def _js(browser: WebDriver, script: str, *args: Any) -> Any:
    return browser.execute_script(script, *args)


def _row(browser: WebDriver, vip: str) -> bool:
    return bool(_js(browser, "return !!document.querySelector(`#overview-table tr[data-vip='${arguments[0]}']`)", vip))


def _instances(browser: WebDriver, vip: str) -> str:
    return str(
        _js(
            browser,
            """const row = document.querySelector(`#overview-table tr[data-vip='${arguments[0]}']`);
        return row ? row.querySelector('[data-field="instances"]').textContent : "";""",
            vip,
        )
    )


def _badges(browser: WebDriver, node: str) -> list[str]:
    return list(
        _js(
            browser,
            """const row = document.querySelector(`#proxies-table tr[data-node='${arguments[0]}']`);
        return row ? [...row.querySelectorAll('.sync')].map((b) => b.textContent) : [];""",
            node,
        )
    )


def test_the_api_answers_401_without_a_token(stack: dict[str, Any]) -> None:
    for path in ("/api/overview", "/api/vips/x", "/api/proxies", "/api/health", "/api/events", "/api/plots"):
        status, body = _get(stack, path)
        assert status == 401 and "no credentials" in body["error"], (path, status, body)
    assert _get(stack, "/api/overview", token="mesh_not_a_token")[0] == 401
    assert "token=" in stack["dashboard"] and stack["dashboard"].startswith(stack["dashboard_page"])


def test_without_a_token_the_page_asks_for_one(stack: dict[str, Any], browser: WebDriver) -> None:
    browser.get(stack["dashboard_page"])
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "signin").is_displayed())
    assert not browser.find_element(By.ID, "view-overview").is_displayed()
    assert browser.get_cookies() == []


def test_the_overview_lists_vips_and_updates_without_a_reload(
    stack: dict[str, Any], browser: WebDriver, vips: Registered, tmp_path: Path
) -> None:
    first = f"dash-{uuid.uuid4().hex[:6]}"
    vips.add(first, 18001)
    browser.get(stack["dashboard"])
    WebDriverWait(browser, 15).until(lambda d: _instances(d, first) == "1 / 1")
    assert "token" not in browser.current_url, "the page takes the token out of the address bar"
    cookie = next(c for c in browser.get_cookies() if c["name"] == "meshactors_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != stack["token"]
    browser.execute_script("window.__noReload = 1")
    # a new VIP, and a second instance of the first: both show on the open page within a few seconds
    second = f"dash-{uuid.uuid4().hex[:6]}"
    vips.add(second, 18002)
    vips.add(first, 18003)
    shown_at = time.monotonic()
    WebDriverWait(browser, LIVE_S).until(lambda d: _row(d, second) and _instances(d, first) == "2 / 2")
    assert time.monotonic() - shown_at < LIVE_S
    assert browser.execute_script("return window.__noReload") == 1, "the page was not reloaded"
    # the filter box keeps only the matching VIPs
    box = browser.find_element(By.ID, "filter")
    box.send_keys(second)
    WebDriverWait(browser, 5).until(lambda d: not _row(d, first) and _row(d, second))
    box.clear()
    box.send_keys("dash-")
    WebDriverWait(browser, 5).until(lambda d: _row(d, first))
    browser.save_screenshot(str(tmp_path / "dashboard-overview.png"))
    # the VIP detail view: its instances and the endpoints pushed
    _js(browser, "document.querySelector(`#overview-table tr[data-vip='${arguments[0]}'] a`).click()", first)
    WebDriverWait(browser, 10).until(
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#vip-instances tbody tr")) == 2
            and len(d.find_elements(By.CSS_SELECTOR, "#vip-endpoints tbody tr")) == 2
        )
    )
    assert browser.find_element(By.ID, "vip-title").text == first
    assert "z1" in browser.find_element(By.ID, "vip-instances").text


def test_the_api_shapes(stack: dict[str, Any], vips: Registered) -> None:
    token = stack["token"]
    vip = vips[0]
    status, overview = _get(stack, "/api/overview", token)
    assert status == 200
    row = next(r for r in overview["vips"] if r["vip"] == vip)
    assert (row["up"], row["total"]) == (2, 2) and set(row) >= {"rps", "error_pct", "p50_ms", "p99_ms"}
    status, detail = _get(stack, f"/api/vips/{vip}", token)
    assert status == 200 and {i["port"] for i in detail["instances"]} == {18001, 18003}
    assert all(i["registered_by"].startswith("admin:") and i["lease_age_s"] is not None for i in detail["instances"])
    assert sorted(e["port"] for e in detail["endpoints"]) == [18001, 18003]
    assert _get(stack, "/api/vips/no-such-vip", token)[0] == 404
    status, health = _get(stack, "/api/health", token)
    assert status == 200 and {"dashboard", "registry-api", "xds-server-0"} <= {a["name"] for a in health["actors"]}
    _, events = _get(stack, "/api/events?limit=500", token)
    assert any(e["kind"] == "registered" and e["vip"] == vip for e in events["events"])


def test_the_proxies_view_shows_envoy_synced(stack: dict[str, Any], browser: WebDriver, envoy: EnvoyProcess) -> None:
    browser.execute_script("location.hash = '#/proxies'")

    def synced(d: WebDriver) -> bool:  # the generic bootstrap holds the guard's config (ECDS) until traffic comes
        badges = _badges(d, "e2e-envoy")
        return bool(badges) and all(" SYNCED " in f" {b} " for b in badges)

    try:
        WebDriverWait(browser, 40).until(synced)
    except TimeoutException:
        table = browser.find_element(By.ID, "view-proxies").text
        raise AssertionError(
            f"no SYNCED e2e-envoy row; page: {table!r}; API: {_get(stack, '/api/proxies', stack['token'])}"
        ) from None


def test_the_control_plane_view_draws_its_plots(
    stack: dict[str, Any], browser: WebDriver, envoy: EnvoyProcess, tmp_path: Path
) -> None:
    browser.execute_script("location.hash = '#/health'")

    def drawn(d: WebDriver) -> bool:
        points = _js(d, "return [...document.querySelectorAll('#plots polyline')].map((p) => p.points.numberOfItems)")
        heights = _js(d, "return [...document.querySelectorAll('#plots rect')].map((r) => r.height.baseVal.value)")
        return bool(points) and max(points) >= 3 and bool(heights) and max(heights) > 1

    WebDriverWait(browser, 30).until(drawn)
    # the convergence-time and first-request histograms of the xDS servers are among the drawn plots
    titles = _js(browser, "return document.querySelector('#plots').textContent")
    assert "Convergence time" in titles and "First-request fetch time" in titles, titles[:500]
    names = _js(
        browser,
        "return [...document.querySelectorAll('#health-table tbody tr td:first-child')].map((td) => td.textContent)",
    )
    assert "dashboard" in names and "xds-server-0" in names
    browser.execute_script("location.hash = '#/events'")
    WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '#events-list li[data-kind="registered"]')
    )
    browser.execute_script("location.hash = '#/health'")
    WebDriverWait(browser, 10).until(drawn)
    shot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    until(lambda: _get(stack, "/api/overview", stack["token"])[0] == 200, 30, "the dashboard is still listed")
