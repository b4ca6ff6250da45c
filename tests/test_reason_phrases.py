"""
Issue 17 item 2: every status the gateway emits carries its RFC 9110
reason phrase, never Twisted's "Unknown Status": its own answers, plugin
answers, upstream answers without a usable phrase, and the admin and demo
servers it runs.
"""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from twistgate.config import load_text
from twistgate.http import reason_phrase
from twistgate.plugins import Response, hookimpl
from twistgate.service import GatewayService
from twistgate.testing import GatewayHarness

NEWER = {103: b"Early Hints", 308: b"Permanent Redirect", 413: b"Content Too Large", 421: b"Misdirected Request",
         422: b"Unprocessable Content", 425: b"Too Early", 429: b"Too Many Requests",
         431: b"Request Header Fields Too Large", 451: b"Unavailable For Legal Reasons"}  # fmt: skip


def test_the_table_has_the_newer_statuses():
    for status, phrase in NEWER.items():
        assert reason_phrase(status) == phrase


class TwistedUpstream(Resource):
    """An upstream on stock twisted.web: for 429 and 431 it says "Unknown Status"."""

    isLeaf = True

    def render(self, request):
        status = int(request.path.rsplit(b"/", 1)[1])
        request.setResponseCode(status, None if request.path.startswith(b"/u/twisted/") else b"")
        return b"x"


class Answer:
    def __init__(self, options, context):
        pass

    @hookimpl
    def on_request(self, request):
        if request.path.startswith("/p/"):
            return Response(status=int(request.path[3:]), body=b"plugin")


@pytest.fixture(scope="module")
def gw():
    config = load_text("""
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes: [{name: r, path: "/*", upstream: app, plugins: {answer: {}}}]
""")
    return GatewayHarness(config, TwistedUpstream(), plugins={"answer": Answer})


CASES = [(source, status) for source in ("/p", "/u/empty") for status in (413, 422, 429, 431, 451)] + [
    ("/u/twisted", status) for status in (422, 429, 431, 451)  # those Twisted's table lacks
]


@pytest.mark.parametrize("source, status", CASES)
def test_answers_carry_the_rfc_phrase(gw, source, status):
    """A plugin's Response, an upstream on Twisted ("Unknown Status") and an upstream with an empty phrase."""
    response = gw.request("GET", f"http://gw{source}/{status}")
    assert (response.code, response.phrase) == (status, reason_phrase(status))


def test_an_upstreams_own_phrase_is_kept(gw):
    class Custom(Resource):
        isLeaf = True

        def render(self, request):
            request.setResponseCode(200, b"Fine Thanks")
            return b"x"

    config = load_text("""
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes: [{name: r, path: "/*", upstream: app}]
""")
    assert GatewayHarness(config, Custom()).request("GET", "http://gw/").phrase == b"Fine Thanks"


def test_every_server_the_gateway_runs_uses_the_rfc_phrases():
    """The public listener, the admin API and the demo backends: a status set without a phrase gets the RFC's."""
    config = load_text("""
listeners: [{name: p, endpoint: "tcp:0"}]
admin: {endpoint: "tcp:0", token: a-long-enough-admin-token}
demo: {endpoint: "tcp:0"}
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes: [{name: r, path: "/*", upstream: app}]
""")
    service = GatewayService(config, MemoryReactorClock(), handle_signals=False)
    sites = {svc.name: svc.factory for svc in service}
    assert sorted(sites) == ["admin", "demo", "listener:p"]
    for name, site in sites.items():
        if not hasattr(site, "requestFactory"):
            continue  # the httptools engine: its status lines come from the same table (test_the_table_has...)
        for status, phrase in NEWER.items():
            request = site.requestFactory(DummyChannel())
            request.setResponseCode(status)
            assert request.code_message == phrase, (name, status)
