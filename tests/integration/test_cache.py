"""
The response cache over real sockets: a real upstream whose responses carry
the caching headers under test, the gateway listening on 127.0.0.1, and a
plain HTTP client in a thread.  One test per rule of RFC 9111 the cache
implements.  Staleness comes from `Age` headers (stale on arrival), not
from waiting, so the module stays fast.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.integration.conftest import Recorded, http_request

Answer = Tuple[int, List[Tuple[str, str]], bytes]

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - name: cached
    path: /*
    upstream: app
    cache: {ROUTE}
"""


class Scripted(Resource):
    """Answers each path with its script `(recorded, count) -> (status, headers, body)`; records requests."""

    isLeaf = True

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self.scripts: Dict[str, Callable[[Recorded, int], Answer]] = {}
        self.seen: List[Recorded] = []
        self.delay = 0.0

    def on(self, path: str, script: Callable[[Recorded, int], Answer]) -> None:
        self.scripts[path] = script

    def hits(self, path: str) -> List[Recorded]:
        return [r for r in self.seen if r.uri.split(b"?")[0] == path.encode()]

    def render(self, request: Any) -> Any:
        recorded = Recorded(request, request.content.read())
        self.seen.append(recorded)
        path = request.path.decode()
        status, headers, body = self.scripts[path](recorded, len(self.hits(path)))
        request.defaultContentType = None
        request.setResponseCode(status)
        request.responseHeaders.setRawHeaders(b"Date", [datetimeToString()])
        for name, value in headers:
            request.responseHeaders.addRawHeader(name.encode(), value.encode())
        if not self.delay:
            return body

        def later() -> None:
            request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
            request.write(body)
            request.finish()

        self.reactor.callLater(self.delay, later)
        return NOT_DONE_YET


def generation_refreshing(generation: Any) -> bool:
    return bool(generation.services.cache.refreshing)


def always(status: int, headers: List[Tuple[str, str]], body: bytes = b"body") -> Callable[[Recorded, int], Answer]:
    return lambda recorded, count: (status, headers, body)


def start(servers: Any, reactor: Any, route: str = "{}") -> Tuple[int, Scripted]:
    origin = Scripted(reactor)
    port, _ = servers.gateway(CONFIG.replace("{ROUTE}", route), up=servers.upstream(origin))
    return port, origin


def get(port: int, path: str, *headers: Tuple[str, str], method: str = "GET", body: Optional[bytes] = None) -> Any:
    return deferToThread(http_request, port, method, path, list(headers), body)


@pytest_twisted.inlineCallbacks
def test_fresh_response_is_reused_with_age_and_cache_status(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/a", always(200, [("Cache-Control", "max-age=600"), ("Age", "30")], b"hello"))
    first = yield get(gw, "/a")
    second = yield get(gw, "/a")
    assert (second.status, second.body) == (200, b"hello")
    assert int(second.header("Age")) >= 30
    assert second.header("Date") == first.header("Date")
    assert first.header("Cache-Status") == "twistgate; fwd=uri-miss; fwd-status=200; stored"
    assert second.header("Cache-Status").startswith("twistgate; hit; ttl=")
    assert len(origin.hits("/a")) == 1


@pytest_twisted.inlineCallbacks
def test_no_store_and_private_are_never_reused(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/no-store", always(200, [("Cache-Control", "no-store, max-age=600")]))
    origin.on("/private", always(200, [("Cache-Control", "private, max-age=600")]))
    for path in ("/no-store", "/private", "/no-store", "/private"):
        yield get(gw, path)
    assert len(origin.hits("/no-store")) == len(origin.hits("/private")) == 2


@pytest_twisted.inlineCallbacks
def test_no_cache_is_revalidated_with_the_stored_etag(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on(
        "/n",
        lambda r, n: (304, [("ETag", '"v1"')], b"")
        if r.header("If-None-Match") == b'"v1"'
        else (200, [("Cache-Control", "no-cache"), ("ETag", '"v1"')], b"full"),
    )
    yield get(gw, "/n")
    second = yield get(gw, "/n")
    assert (second.status, second.body) == (200, b"full")
    assert origin.hits("/n")[1].header("If-None-Match") == b'"v1"'
    assert second.header("Cache-Status") == "twistgate; fwd=stale; fwd-status=304; ttl=0"


@pytest_twisted.inlineCallbacks
def test_max_age_s_maxage_and_age(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/s", always(200, [("Cache-Control", "max-age=3600, s-maxage=5"), ("Age", "10")]))
    origin.on("/aged", always(200, [("Cache-Control", "max-age=10"), ("Age", "15")]))
    for path in ("/s", "/aged", "/s", "/aged"):
        yield get(gw, path)
    assert len(origin.hits("/s")) == len(origin.hits("/aged")) == 2


@pytest_twisted.inlineCallbacks
def test_expires(servers, reactor):
    gw, origin = start(servers, reactor)
    now = reactor.seconds()
    origin.on("/future", always(200, [("Expires", datetimeToString(int(now) + 600).decode())]))
    origin.on("/past", always(200, [("Expires", datetimeToString(int(now) - 600).decode())]))
    origin.on("/invalid", always(200, [("Expires", "0")]))
    for path in ("/future", "/past", "/invalid") * 2:
        yield get(gw, path)
    assert [len(origin.hits(p)) for p in ("/future", "/past", "/invalid")] == [1, 2, 2]


@pytest_twisted.inlineCallbacks
def test_heuristic_freshness_and_the_route_ttl(servers, reactor):
    gw, origin = start(servers, reactor, "{ttl: 60s}")
    modified = datetimeToString(int(reactor.seconds()) - 86400).decode()
    origin.on("/lm", always(200, [("Last-Modified", modified)]))
    origin.on("/created", always(201, [("Last-Modified", modified)]))
    origin.on("/plain", always(404, []))
    for path in ("/lm", "/created", "/plain") * 2:
        yield get(gw, path)
    assert [len(origin.hits(p)) for p in ("/lm", "/created", "/plain")] == [1, 2, 1]


@pytest_twisted.inlineCallbacks
def test_authorization_is_shared_only_with_public_s_maxage_or_must_revalidate(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/secret", always(200, [("Cache-Control", "max-age=600")]))
    origin.on("/shared", always(200, [("Cache-Control", "s-maxage=600")]))
    for path in ("/secret", "/shared"):
        yield get(gw, path, ("Authorization", "Bearer x"))
        yield get(gw, path)
    assert len(origin.hits("/secret")) == 2 and len(origin.hits("/shared")) == 1


@pytest_twisted.inlineCallbacks
def test_vary(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/v", lambda r, n: (200, [("Cache-Control", "max-age=600"), ("Vary", "Accept-Language")], r.header("Accept-Language") or b"-"))
    one = yield get(gw, "/v", ("Accept-Language", "en"))
    two = yield get(gw, "/v", ("Accept-Language", "fr"))
    again = yield get(gw, "/v", ("Accept-Language", "en"))
    assert (one.body, two.body, again.body) == (b"en", b"fr", b"en")
    assert len(origin.hits("/v")) == 2
    origin.on("/star", always(200, [("Cache-Control", "max-age=600"), ("Vary", "*")]))
    yield get(gw, "/star")
    yield get(gw, "/star")
    assert len(origin.hits("/star")) == 2


@pytest_twisted.inlineCallbacks
def test_revalidation_sends_both_validators_and_applies_the_304(servers, reactor):
    gw, origin = start(servers, reactor)
    modified = datetimeToString(int(reactor.seconds()) - 86400).decode()

    def script(r: Recorded, n: int) -> Answer:
        if n == 1:
            return 200, [("Cache-Control", "max-age=10"), ("Age", "10"), ("ETag", '"v1"'), ("Last-Modified", modified), ("X-V", "A")], b"stored"
        return 304, [("Cache-Control", "max-age=600"), ("ETag", '"v1"'), ("X-V", "B")], b""

    origin.on("/r", script)
    yield get(gw, "/r")
    second = yield get(gw, "/r")
    third = yield get(gw, "/r")
    sent = origin.hits("/r")[1]
    assert sent.header("If-None-Match") == b'"v1"' and sent.header("If-Modified-Since") == modified.encode()
    assert (second.status, second.body, second.header("X-V")) == (200, b"stored", "B")
    assert (third.body, third.header("X-V")) == (b"stored", "B") and len(origin.hits("/r")) == 2


@pytest_twisted.inlineCallbacks
def test_clients_conditional_requests_are_answered_with_304(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/c", always(200, [("Cache-Control", "max-age=600"), ("ETag", '"abc"'), ("Content-Type", "text/plain")], b"data"))
    yield get(gw, "/c")
    got = yield get(gw, "/c", ("If-None-Match", '"abc"'))
    assert (got.status, got.body, got.header("ETag")) == (304, b"", '"abc"')
    assert len(origin.hits("/c")) == 1


@pytest_twisted.inlineCallbacks
def test_unsafe_methods_invalidate_the_uri_and_location(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/items", lambda r, n: (201, [("Location", "/items/7")], b"") if r.method == b"POST" else (200, [("Cache-Control", "max-age=600")], b"list"))
    origin.on("/items/7", always(200, [("Cache-Control", "max-age=600")], b"seven"))
    yield get(gw, "/items")
    yield get(gw, "/items/7")
    posted = yield get(gw, "/items", method="POST", body=b'{"n": 7}')
    assert posted.header("Cache-Status") == "twistgate; fwd=method"
    yield get(gw, "/items")
    yield get(gw, "/items/7")
    assert [r.method for r in origin.hits("/items")] == [b"GET", b"POST", b"GET"]
    assert len(origin.hits("/items/7")) == 2


@pytest_twisted.inlineCallbacks
def test_a_get_with_a_body_is_not_cached(servers, reactor):
    """A body the key does not include must not pick the answer for others."""
    gw, origin = start(servers, reactor)
    origin.on("/search", lambda r, n: (200, [("Cache-Control", "max-age=600")], r.body))
    one = yield get(gw, "/search", body=b'{"q": "a"}')
    two = yield get(gw, "/search", body=b'{"q": "b"}')
    assert (one.body, two.body) == (b'{"q": "a"}', b'{"q": "b"}')
    assert one.header("Cache-Status") == "twistgate; fwd=bypass"


@pytest_twisted.inlineCallbacks
def test_concurrent_misses_collapse_into_one_upstream_fetch(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.delay = 0.5
    origin.on("/slow", always(200, [("Cache-Control", "max-age=600")], b"x" * 10000))
    replies = yield DeferredList([get(gw, "/slow") for _ in range(5)])
    bodies = [reply.body for ok, reply in replies]
    assert bodies == [b"x" * 10000] * 5
    assert len(origin.hits("/slow")) == 1
    statuses = sorted(reply.header("Cache-Status") for ok, reply in replies)
    assert sum("collapsed" in s for s in statuses) >= 1


@pytest_twisted.inlineCallbacks
def test_stale_while_revalidate_answers_at_once_and_refreshes(servers, reactor):
    origin = Scripted(reactor)
    gw, gw_generation = servers.gateway(CONFIG.replace("{ROUTE}", "{}"), up=servers.upstream(origin))
    origin.on(
        "/swr",
        lambda r, n: (200, [("Cache-Control", "max-age=1, stale-while-revalidate=600"), ("Age", "5")], b"old")
        if n == 1
        else (200, [("Cache-Control", "max-age=600")], b"new"),
    )
    yield get(gw, "/swr")
    stale = yield get(gw, "/swr")
    assert stale.body == b"old" and "stale-while-revalidate" in stale.header("Cache-Status")
    for _ in range(100):  # the refresh runs in the background
        if len(origin.hits("/swr")) == 2 and not generation_refreshing(gw_generation):
            break
        yield deferLater(reactor, 0.02, lambda: None)
    fresh = yield get(gw, "/swr")
    assert fresh.body == b"new" and len(origin.hits("/swr")) == 2


@pytest_twisted.inlineCallbacks
def test_stale_if_error_and_must_revalidate(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/sie", lambda r, n: (200, [("Cache-Control", "max-age=1, stale-if-error=600"), ("Age", "5")], b"saved") if n == 1 else (503, [], b"down"))
    origin.on("/mr", lambda r, n: (200, [("Cache-Control", "max-age=1, must-revalidate, stale-if-error=600"), ("Age", "5")], b"saved") if n == 1 else (503, [], b"down"))
    yield get(gw, "/sie")
    yield get(gw, "/mr")
    saved = yield get(gw, "/sie")
    refused = yield get(gw, "/mr")
    assert (saved.status, saved.body) == (200, b"saved")
    assert saved.header("Cache-Status").endswith("detail=stale-if-error")
    assert refused.status == 503


@pytest_twisted.inlineCallbacks
def test_memory_stays_within_max_memory(servers, reactor):
    origin = Scripted(reactor)
    yaml = CONFIG.replace("{ROUTE}", "{max_object_size: 16KiB}") + "cache: {max_memory: 64KiB}\n"
    gw, generation = servers.gateway(yaml, up=servers.upstream(origin))
    store = generation.services.cache.store
    for n in range(12):
        origin.on(f"/{n}", always(200, [("Cache-Control", "max-age=600")], b"y" * 12000))
        yield get(gw, f"/{n}")
        assert store.bytes <= 64 * 1024
    assert len(store) < 12 and store.evictions > 0


@pytest_twisted.inlineCallbacks
def test_head_is_served_from_the_stored_get(servers, reactor):
    gw, origin = start(servers, reactor)
    origin.on("/h", always(200, [("Cache-Control", "max-age=600")], b"12345"))
    yield get(gw, "/h")
    head = yield get(gw, "/h", method="HEAD")
    assert (head.status, head.body, head.header("Content-Length")) == (200, b"", "5")
    assert len(origin.hits("/h")) == 1
