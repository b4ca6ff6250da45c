"""
The dashboard in a real headless browser (Debian's chromium, driven over the
DevTools protocol): loaded from the admin listener of a running gateway with
traffic, it shows every route, draws the last minutes, and its buttons drain
and undrain a target, reload the configuration (a refused reload shows its
errors) and manage API keys, with a confirmation first; a target that fails its health checks shows as down
within seconds; no console error, nothing loaded from anywhere else.
Screenshots (1280x800 light and dark, the whole page, a phone) are kept as
the run's artifacts in build/artifacts/dashboard/ ($TWISTGATE_ARTIFACTS/dashboard
when set), which outlives pytest's temporary directories.  With CI set, a
missing chromium is a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Dict

import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.devtools import Browser
from tests.ops.live import TOKEN, LiveGateway, request, require_tool

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: integration-token}
auth:
  keys: {type: api_key, store: "sqlite:{keys}"}
upstreams:
  app:
    targets: [{url: "http://127.0.0.1:{a}", weight: 2}, {url: "http://127.0.0.1:{b}"}]
    health_check: {path: /health, interval: 500ms, timeout: 400ms, healthy_threshold: 1, unhealthy_threshold: 1}
routes:
  - {name: catalogue, path: "/catalogue/*", upstream: app}
  - {name: idle, path: "/idle/*", upstream: app}
  - {name: keyed, path: "/keyed/*", upstream: app, auth: [keys]}
"""
ADDED = '  - {name: added, path: "/added/*", upstream: app}\n'
BROKEN = '  - {name: broken, path: "/broken/*", upstream: nowhere}\n'
SCREENSHOTS = ("dashboard-1280x800.png", "dashboard-full.png", "dashboard-dark.png", "dashboard-phone.png")


def artifacts() -> Path:
    """Where the run's screenshots are kept: $TWISTGATE_ARTIFACTS/dashboard, or build/artifacts/dashboard in the tree."""
    root = os.environ.get("TWISTGATE_ARTIFACTS") or str(Path(__file__).resolve().parents[2] / "build" / "artifacts")
    return Path(root) / "dashboard"


class Target(Resource):
    """An upstream target that counts what it serves; its health check fails while `failing`."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.served = 0
        self.failing = False

    def render(self, request: Any) -> bytes:
        if request.path == b"/health":
            request.setResponseCode(503 if self.failing else 200)
            return b"health"
        self.served += 1
        if request.path.endswith(b"/missing"):
            request.setResponseCode(404)
        return b"item"


def traffic(port: int, stop: threading.Event) -> int:
    count = 0
    while not stop.is_set():
        request(port, "GET", "/catalogue/missing" if count % 5 == 4 else "/catalogue/item")
        count += 1
        stop.wait(0.02)
    return count


def served_while(browser: Browser, a: Target, b: Target, seconds: float = 1.0) -> Dict[str, int]:
    before = (a.served, b.served)
    time.sleep(seconds)
    return {"a": a.served - before[0], "b": b.served - before[1]}


def click_and_confirm(browser: Browser, selector: str, verb: str) -> str:
    """Click `selector`, check the confirmation dialog, confirm; the notice that follows."""
    browser.evaluate(f"document.querySelector({selector!r}).click()")
    browser.wait_for("document.getElementById('confirm').open", what="the confirmation dialog")
    assert browser.evaluate("document.getElementById('confirm-ok').textContent") == verb
    assert browser.evaluate("document.activeElement.id") == "confirm-cancel"  # the safe choice has the focus
    browser.evaluate("document.getElementById('confirm-ok').click()")
    return browser.wait_for(
        "!document.getElementById('notice').hidden && document.getElementById('notice').textContent",
        what=f"the result of {verb}",
    )


def row_state(url: str) -> str:
    return f"(document.querySelector('tr[data-target=\"{url}\"]') || {{dataset: {{}}}}).dataset.state"


def drive(chromium: str, gateway: LiveGateway, a: Target, b: Target, urls: Dict[str, str], tmp: Any) -> Dict[str, Any]:
    """The whole browser session (in a thread): what it saw, for the test to assert."""
    seen: Dict[str, Any] = {}
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    browser = Browser(chromium, str(tmp / "profile"))
    try:
        browser.viewport(1280, 800)
        browser.open(f"{admin}/admin/#token={TOKEN}&interval=1000")
        browser.wait_for("Number(document.getElementById('refreshes').dataset.count) >= 1", what="the first refresh")
        seen["address"] = browser.evaluate("location.href")
        seen["routes"] = browser.evaluate(
            "Array.from(document.querySelectorAll('#routes tbody tr')).map(r => [r.dataset.route, r.dataset.idle, r.textContent])")
        # The charts move while traffic runs.
        rate = "Number(document.querySelector('#chart-total-rate svg').dataset.sum)"
        first = browser.wait_for(rate, what="a drawn request rate")
        seen["chart_moved"] = browser.wait_for(f"{rate} > {first} && {rate}", what="the rate chart to move")
        seen["drawn"] = browser.evaluate(
            "document.querySelectorAll('#chart-total-rate svg circle.dot, #chart-total-rate svg path.line[d^=M]').length")
        seen["route_chart"] = browser.evaluate(
            "[document.getElementById('charts-route').dataset.route, Number(document.querySelector('#chart-route-rate svg').dataset.points)]")
        seen["axis"] = browser.evaluate("Array.from(document.querySelectorAll('#chart-total-latency text')).map(t => t.textContent)")
        # Escape cancels a confirmation: nothing is drained.
        browser.evaluate(f"document.querySelector('tr[data-target=\"{urls['a']}\"] button').focus()")
        browser.page("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13, text="\r")
        browser.page("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)
        browser.wait_for("document.getElementById('confirm').open", what="the dialog opened with the keyboard")
        browser.page("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape", windowsVirtualKeyCode=27)
        browser.page("Input.dispatchKeyEvent", type="keyUp", key="Escape", code="Escape", windowsVirtualKeyCode=27)
        browser.wait_for("!document.getElementById('confirm').open", what="Escape to close the dialog")
        seen["after_escape"] = browser.evaluate(row_state(urls["a"]))
        # Drain target a: traffic moves to b; undrain: both serve again.
        seen["drain_notice"] = click_and_confirm(browser, f"tr[data-target=\"{urls['a']}\"] button[data-action=drain]", "Drain")
        browser.wait_for(f"{row_state(urls['a'])} === 'draining'", what="a shown draining")
        seen["drained_traffic"] = served_while(browser, a, b)
        seen["undrain_notice"] = click_and_confirm(browser, f"tr[data-target=\"{urls['a']}\"] button[data-action=undrain]", "Undrain")
        browser.wait_for(f"{row_state(urls['a'])} === 'up'", what="a shown up again")
        seen["undrained_traffic"] = served_while(browser, a, b)
        # The reload button reloads (a route added to the file shows up, idle) and the last reload says what changed.
        gateway.path.write_text(gateway.path.read_text() + ADDED)
        seen["reload_notice"] = click_and_confirm(browser, "#reload-button", "Reload")
        browser.wait_for("!!document.querySelector('tr[data-route=added]')", what="the added route")
        seen["last_reload"] = browser.evaluate(
            "[document.getElementById('last-reload').dataset.trigger, document.getElementById('last-reload').textContent]")
        # A broken file: the reload is refused, the notice and the last reload show its errors, the old one serves on.
        good = gateway.path.read_text()
        gateway.path.write_text(good + BROKEN)
        seen["refused_notice"] = click_and_confirm(browser, "#reload-button", "Reload")
        browser.wait_for("document.getElementById('last-reload').dataset.ok === 'false'", what="the refused reload shown")
        seen["refused_reload"] = browser.evaluate("document.getElementById('last-reload').textContent")
        gateway.path.write_text(good)
        # A target failing its health checks shows down within seconds.
        b.failing = True
        started = time.monotonic()
        browser.wait_for(f"{row_state(urls['b'])} === 'down'", timeout=10, what="b shown down")
        seen["down_after"] = time.monotonic() - started
        # API keys: create (the secret shown once), then revoke.
        browser.wait_for("!document.getElementById('keys-panel').hidden", what="the keys view")
        browser.evaluate("document.getElementById('key-consumer').value = 'acme'")
        browser.evaluate("document.getElementById('key-form').requestSubmit()")
        browser.wait_for("document.getElementById('confirm').open", what="the key confirmation")
        browser.evaluate("document.getElementById('confirm-ok').click()")
        seen["secret"] = browser.wait_for("document.getElementById('secret').open && document.getElementById('secret-key').value")
        browser.evaluate("document.getElementById('secret-close').click()")
        seen["secret_after"] = browser.evaluate("document.getElementById('secret-key').value")
        key_id = browser.wait_for("(document.querySelector('#keys tbody tr[data-key]') || {dataset: {}}).dataset.key", what="the key listed")
        seen["key_page"] = browser.evaluate("document.body.innerText")
        seen["revoke_notice"] = click_and_confirm(browser, f"#keys tr[data-key=\"{key_id}\"] button", "Revoke")
        browser.wait_for(f"document.querySelector('#keys tr[data-key=\"{key_id}\"]').textContent.includes('revoked')", what="revoked")
        browser.wait_for("document.querySelectorAll('#audit tbody tr[data-action]').length >= 5", what="the audit rows")
        seen["audit"] = browser.evaluate(
            "Array.from(document.querySelectorAll('#audit tbody tr')).map(r => [r.dataset.action, r.dataset.outcome])")
        # Screenshots: 1280x800 light and dark, and a phone (no sideways scrolling).
        # TWISTGATE_SCREENSHOT_AFTER=120 lets the traffic run that long first (docs/dashboard.png).
        time.sleep(float(os.environ.get("TWISTGATE_SCREENSHOT_AFTER", "0")))
        browser.evaluate("window.scrollTo(0, 0)")
        browser.screenshot(str(tmp / "dashboard-1280x800.png"))
        browser.screenshot(str(tmp / "dashboard-full.png"), full_page=True)
        browser.viewport(1280, 800, dark=True)
        seen["dark_background"] = browser.evaluate("getComputedStyle(document.body).backgroundColor")
        browser.screenshot(str(tmp / "dashboard-dark.png"))
        browser.viewport(390, 844, mobile=True)
        time.sleep(0.3)
        seen["phone_overflow"] = browser.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        browser.screenshot(str(tmp / "dashboard-phone.png"))
        seen["problems"] = browser.problems()
        seen["requested"] = browser.requested()
        # A wrong token gets the login form back, not data.
        browser.open("about:blank")  # a new document: only the fragment would differ
        browser.wait_for("location.href === 'about:blank'")
        browser.open(f"{admin}/admin/#token=wrong")
        seen["refused"] = browser.wait_for("document.getElementById('login-error').textContent", what="the login form")
    finally:
        browser.close()
    return seen


@pytest_twisted.inlineCallbacks
def test_the_dashboard_is_an_operators_cockpit(reactor, tmp_path):
    chromium = require_tool("chromium")
    started_at = time.time() - 1
    a, b = Target(), Target()
    ports = []
    for target in (a, b):
        site = Site(target)
        site.log = lambda request: None
        ports.append(reactor.listenTCP(0, site, interface="127.0.0.1"))
    pa, pb = (p.getHost().port for p in ports)
    urls = {"a": f"http://127.0.0.1:{pa}", "b": f"http://127.0.0.1:{pb}"}
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", CONFIG, a=pa, b=pb, keys=str(tmp_path / "keys.db"))
    yield gateway.start()
    stop = threading.Event()
    try:
        load = deferToThread(traffic, gateway.port, stop)
        seen = yield deferToThread(drive, chromium, gateway, a, b, urls, tmp_path)
        stop.set()
        sent = yield load
    finally:
        stop.set()
        yield gateway.stop()
        for port in ports:
            yield port.stopListening()
    kept = artifacts()
    kept.mkdir(parents=True, exist_ok=True)
    for name in SCREENSHOTS:
        if (tmp_path / name).exists():
            shutil.copyfile(tmp_path / name, kept / name)
    print(f"dashboard screenshots: {kept}/dashboard-*.png")
    assert sent > 10
    assert TOKEN not in seen["address"]  # the fragment was cleared from the address
    routes = {name: idle for name, idle, _ in seen["routes"]}
    assert routes == {"catalogue": "false", "idle": "true", "keyed": "true"}  # every route, idle ones too
    assert any("api_key" in text or "auth" in text for name, _, text in seen["routes"] if name == "keyed")  # with its policies
    assert seen["chart_moved"] > 0 and seen["drawn"] > 0 and seen["route_chart"][0] == "catalogue" and seen["route_chart"][1] > 0
    assert "now" in seen["axis"] and "-15 min" in seen["axis"] and "-5 min" in seen["axis"]
    assert seen["after_escape"] == "up"
    assert seen["drain_notice"].startswith("Drained " + urls["a"])
    assert seen["drained_traffic"]["a"] == 0 and seen["drained_traffic"]["b"] > 5
    assert seen["undrain_notice"].startswith("Undrained " + urls["a"])
    assert seen["undrained_traffic"]["a"] > 5
    assert seen["reload_notice"].startswith("Reloaded: generation 2")
    assert seen["last_reload"][0] == "API" and "routes added: added" in seen["last_reload"][1]
    assert seen["down_after"] < 5
    assert seen["secret"].startswith("tg_") and seen["secret_after"] == ""
    assert seen["secret"] not in seen["key_page"]  # shown once, in the dialog only
    assert seen["revoke_notice"].startswith("Revoked key")
    actions = [action for action, _ in seen["audit"]]
    for action in ("drain", "undrain", "reload", "key_create", "key_revoke"):
        assert action in actions
    assert seen["refused_notice"].startswith("Reload refused:") and "nowhere" in seen["refused_notice"]
    assert "refused" in seen["refused_reload"] and "generation 2 keeps serving" in seen["refused_reload"]
    assert "gw.yaml:" in seen["refused_reload"] and "nowhere" in seen["refused_reload"]  # the errors, with file and line
    assert ["reload", "refused"] in seen["audit"]
    assert all(outcome == "ok" for action, outcome in seen["audit"] if action != "reload" or outcome != "refused")
    assert seen["dark_background"] != "rgb(243, 244, 247)"
    assert seen["phone_overflow"] <= 0
    # The page logs nothing; the one entry allowed is Chromium's own network note on the refused reload's 400.
    refused_load = [p for p in seen["problems"] if p.startswith("log (network): Failed to load resource: the server responded with a status of 400")
                    and p.endswith("/admin/reload")]
    assert len(refused_load) == 1 and [p for p in seen["problems"] if p not in refused_load] == [], seen["problems"]
    admin = f"http://127.0.0.1:{gateway.admin_port}/"
    assert seen["requested"] and all(url.startswith(admin) for url in seen["requested"]), seen["requested"]
    assert seen["refused"] == "That token was refused."
    for name in SCREENSHOTS:
        assert (kept / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (kept / name).stat().st_mtime >= started_at  # this run's, not a previous one's
