"""
Edge routing in memory (twistgate.testing.GatewayHarness): each behaviour
next to its refusal.  The same features over real sockets are in
tests/integration/test_edge_live.py.
"""

from __future__ import annotations

import json
from collections import Counter
from random import Random

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.edge.memory import FakeDownstream, serve
from twistgate.config import load_text
from twistgate.testing import GatewayHarness

LISTENERS = """
listeners:
  - {name: plain, endpoint: "tcp:1", redirect_https: 8443}
  - {name: public, endpoint: "tcp:2"}
  - {name: internal, endpoint: "tcp:3"}
"""


class Named(Resource):
    """An upstream that answers with its name and records what it saw."""

    isLeaf = True

    def __init__(self, name: str, server: bytes = b"") -> None:
        super().__init__()
        self.name = name
        self.server = server
        self.seen = []
        self.held = []  # requests kept open (hold=True)
        self.hold = False

    def render(self, request):
        self.seen.append((request.uri, dict(request.requestHeaders.getAllRawHeaders())))
        if self.server:
            request.setHeader(b"Server", self.server)
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        return self.name.encode()


def harness(yaml: str, upstreams, listener: str = "public", **kwargs) -> GatewayHarness:
    return GatewayHarness(load_text(LISTENERS + yaml, "edge.yaml"), upstreams, listener=listener, **kwargs)


def body(gw, response) -> bytes:
    return gw.content(response)


# -- listeners and redirect_https -------------------------------------------------------------


ROUTES_BY_LISTENER = """
upstreams:
  api: {targets: [{url: "http://api"}]}
  admin: {targets: [{url: "http://admin"}]}
routes:
  - {name: internal, path: /admin/*, upstream: admin, listeners: [internal]}
  - {name: api, path: /*, upstream: api}
"""


def test_a_route_with_listeners_serves_only_those():
    ups = {"api": Named("api"), "admin": Named("admin")}
    inside = harness(ROUTES_BY_LISTENER, ups, listener="internal")
    assert body(inside, inside.request("GET", "http://gw.test/admin/x")) == b"admin"
    outside = harness(ROUTES_BY_LISTENER, ups, listener="public")
    assert body(outside, outside.request("GET", "http://gw.test/admin/x")) == b"api"  # as if the route were not there


def test_a_route_only_on_other_listeners_is_a_404():
    yaml = ROUTES_BY_LISTENER.replace("  - {name: api, path: /*, upstream: api}\n", "")
    gw = harness(yaml, {"api": Named("api"), "admin": Named("admin")}, listener="public")
    response = gw.request("GET", "http://gw.test/admin/x")
    assert response.code == 404 and json.loads(body(gw, response))["error"] == "route_not_found"


def test_redirect_https_answers_308_before_routing_keeping_path_and_query():
    ups = {"api": Named("api"), "admin": Named("admin")}
    gw = harness(ROUTES_BY_LISTENER, ups, listener="plain")
    response = gw.request("POST", "http://shop.example:8080/nowhere/a%20b?x=1&y=2", data=b"body", allow_redirects=False)
    assert response.code == 308
    assert response.headers.getRawHeaders("Location") == ["https://shop.example:8443/nowhere/a%20b?x=1&y=2"]
    assert ups["api"].seen == []  # never routed, never forwarded


def test_redirect_https_on_443_leaves_the_port_out_and_other_listeners_do_not_redirect():
    yaml = ROUTES_BY_LISTENER
    text = LISTENERS.replace("redirect_https: 8443", "redirect_https: true") + yaml
    gw = GatewayHarness(load_text(text), {"api": Named("api"), "admin": Named("admin")}, listener="plain")
    response = gw.request("GET", "http://gw.test:8080/", allow_redirects=False)
    assert response.headers.getRawHeaders("Location") == ["https://gw.test/"]
    public = harness(yaml, {"api": Named("api"), "admin": Named("admin")}, listener="public")
    assert public.request("GET", "http://gw.test/", allow_redirects=False).code == 200


def test_https_location_forms_and_refusals():
    from twistgate.answers import https_location

    assert https_location(b"[::1]:8080", 443, b"/a", b"") == b"https://[::1]/a"
    assert https_location(b"Example.COM", 8443, b"/", b"q=1") == b"https://Example.COM:8443/?q=1"
    assert https_location(b"", 443, b"/", b"") is None  # no Host (HTTP/1.0): 400
    assert https_location(b"evil@host", 443, b"/", b"") is None
    assert https_location(b"[::1", 443, b"/", b"") is None


def test_redirect_https_without_a_host_is_400():
    gw = harness(ROUTES_BY_LISTENER, {"api": Named("api"), "admin": Named("admin")}, listener="plain")
    answered = serve(gw.generation, FakeDownstream(version=b"HTTP/1.0", listener="plain"))
    status, _, payload = answered.answer
    assert status == 400 and json.loads(payload)["error"] == "bad_request"


# -- match -----------------------------------------------------------------------------------


MATCHING = """
upstreams:
  api: {targets: [{url: "http://api"}]}
  v2: {targets: [{url: "http://v2"}]}
routes:
  - {name: stable, path: /api/*, upstream: api}
  - name: canary
    path: /api/*
    upstream: v2
    match:
      headers: {X-Canary: "1"}
      cookies: {beta: "~^y"}
      query: {debug: "*"}
"""


def test_match_conditions_all_hold_and_beat_the_same_path_without_whatever_the_order():
    gw = harness(MATCHING, {"api": Named("api"), "v2": Named("v2")})
    hit = gw.request("GET", "http://gw.test/api/x?debug", headers={"X-Canary": "1", "Cookie": "a=b; beta=yes"})
    assert body(gw, hit) == b"v2"


def test_match_conditions_any_failing_sends_to_the_route_without():
    gw = harness(MATCHING, {"api": Named("api"), "v2": Named("v2")})
    for headers, query in (
        ({"X-Canary": "2", "Cookie": "beta=yes"}, "?debug"),  # wrong exact value
        ({"X-Canary": "1", "Cookie": "beta=no"}, "?debug"),  # regex does not match
        ({"X-Canary": "1", "Cookie": "beta=yes"}, "?other=1"),  # query parameter absent
        ({"Cookie": "beta=yes"}, "?debug"),  # header absent
    ):
        assert body(gw, gw.request("GET", "http://gw.test/api/x" + query, headers=headers)) == b"api"


# -- redirect and respond ----------------------------------------------------------------------


ANSWERS = """
upstreams:
  api: {targets: [{url: "http://api"}]}
routes:
  - {name: legacy, path: "~^/legacy/(?P<rest>.*)$", redirect: {to: "/api/v1/{rest}", status: 301}}
  - {name: user, path: "/u/{id}", redirect: {to: "https://{host}/users/{id}?from=u", status: 308}}
  - {name: gone, path: /old-thing, respond: {status: 410, body: '{"error": "gone"}', headers: {Content-Type: application/json}}}
  - name: private-health
    path: /health
    respond: {body: ok}
    plugins: {ip_allow: {cidrs: [10.0.0.0/8]}}
    headers: {response: {set: {X-Answered-By: gateway}}}
  - {name: api, path: /*, upstream: api}
"""


def test_redirect_fills_groups_and_params_and_keeps_the_query():
    gw = harness(ANSWERS, Named("api"))
    response = gw.request("GET", "http://gw.test/legacy/a/b%20c?x=1", allow_redirects=False)
    assert (response.code, response.headers.getRawHeaders("Location")) == (301, ["/api/v1/a/b%20c?x=1"])
    response = gw.request("GET", "http://gw.test:8080/u/42?ignored=1", allow_redirects=False)
    assert response.headers.getRawHeaders("Location") == ["https://gw.test:8080/users/42?from=u"]


def test_respond_is_a_fixed_answer_and_still_runs_the_route_policies():
    gw = harness(ANSWERS, Named("api"))
    response = gw.request("GET", "http://gw.test/old-thing")
    assert response.code == 410 and body(gw, response) == b'{"error": "gone"}'
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]
    refused = gw.request("GET", "http://gw.test/health")  # the harness client is 127.0.0.1, not 10/8
    assert refused.code == 403 and json.loads(body(gw, refused))["error"] == "forbidden"


def test_respond_answers_when_the_policies_allow():
    gw = harness(ANSWERS.replace("10.0.0.0/8", "127.0.0.0/8"), Named("api"))
    response = gw.request("GET", "http://gw.test/health")
    assert (response.code, body(gw, response)) == (200, b"ok")
    assert response.headers.getRawHeaders("X-Answered-By") == ["gateway"]
    assert response.headers.getRawHeaders("Content-Type") == ["text/plain; charset=utf-8"]


# -- split, sticky, backup ---------------------------------------------------------------------


SPLIT = """
upstreams:
  api: {targets: [{url: "http://api-a"}, {url: "http://api-b"}]}
  v2: {targets: [{url: "http://v2"}]}
routes:
  - name: canary
    path: /*
    split: [{upstream: v2, weight: 1}, {upstream: api, weight: 3}]
"""


def test_split_is_weighted_per_request_and_counted_per_arm():
    gw = harness(SPLIT, {"api": Named("api"), "v2": Named("v2")})
    for route in gw.generation.routes_by_name.values():
        route.destination.rng = Random(7)
    seen = Counter(body(gw, gw.request("GET", "http://gw.test/x")) for _ in range(400))
    assert 70 <= seen[b"v2"] <= 130 and seen[b"v2"] + seen[b"api"] == 400  # about 1 in 4
    metrics = gw.generation.ops.registry.get_sample_value
    assert metrics("twistgate_split_requests_total", {"route": "canary", "upstream": "v2"}) == seen[b"v2"]
    assert metrics("twistgate_split_requests_total", {"route": "canary", "upstream": "api"}) == seen[b"api"]


def test_a_zero_weight_arm_gets_nothing():
    gw = harness(SPLIT.replace("weight: 1}", "weight: 0}"), {"api": Named("api"), "v2": Named("v2")})
    assert {body(gw, gw.request("GET", "http://gw.test/x")) for _ in range(30)} == {b"api"}


STICKY = SPLIT + "    sticky: {cookie: tg, max_age: 1h}\n"


def sticky_cookie(response) -> str:
    (value,) = response.headers.getRawHeaders("Set-Cookie")
    return value


def test_sticky_pins_the_client_with_an_opaque_cookie():
    ups = {"api": Named("api"), "v2": Named("v2")}
    gw = harness(STICKY, ups)
    first = gw.request("GET", "http://gw.test/x", cookies={})
    cookie = sticky_cookie(first)
    name_value, *attributes = cookie.split("; ")
    assert name_value.startswith("tg=") and "Max-Age=3600" in attributes and "HttpOnly" in attributes
    assert "api-" not in cookie and "v2" not in cookie and "http" not in cookie  # never an address
    served = body(gw, first)
    later = [gw.request("GET", "http://gw.test/x", headers={"Cookie": name_value}) for _ in range(20)]
    assert {body(gw, r) for r in later} == {served}
    assert all(r.headers.getRawHeaders("Set-Cookie") is None for r in later)  # pinned already: no new cookie


def test_a_forged_or_stale_sticky_cookie_is_ignored_and_re_pinned():
    gw = harness(STICKY, {"api": Named("api"), "v2": Named("v2")})
    response = gw.request("GET", "http://gw.test/x", headers={"Cookie": "tg=10.0.0.1:8080"})
    assert response.code == 200 and sticky_cookie(response).startswith("tg=")


def test_sticky_re_pins_when_the_target_is_not_available():
    ups = {"api": Named("api"), "v2": Named("v2")}
    gw = harness(STICKY.replace("weight: 3}", "weight: 0}"), ups)  # everyone lands on v2 first
    cookie = sticky_cookie(gw.request("GET", "http://gw.test/x", cookies={})).split("; ")[0]
    (v2_target,) = gw.generation.upstreams["v2"].targets
    v2_target.healthy = False
    gw.generation.upstreams["v2"]._refresh()
    gw.generation.routes_by_name["canary"].destination._upstreams = [gw.generation.upstreams["api"]]
    gw.generation.routes_by_name["canary"].destination._weights = [1]
    response = gw.request("GET", "http://gw.test/x", headers={"Cookie": cookie})
    assert body(gw, response) == b"api" and sticky_cookie(response).split("; ")[0] != cookie


BACKUP = """
upstreams:
  api:
    targets: [{url: "http://primary"}, {url: "http://spare", backup: true}]
routes:
  - {name: api, path: /*, upstream: api}
"""


class ByHost:
    """An IAgent answering with the target's host, so tests see where a request went."""

    def __init__(self):
        self.hosts = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        from twisted.internet.defer import succeed
        from twisted.web.client import URI

        host = URI.fromBytes(uri).host
        self.hosts.append(host)
        return succeed(_Reply(host))


class _Reply:
    code, phrase, version = 200, b"OK", (b"HTTP", 1, 1)

    def __init__(self, host):
        from twisted.web.http_headers import Headers

        self.headers = Headers({b"Content-Type": [b"text/plain"]})
        self.body = host
        self.length = len(host)

    def deliverBody(self, protocol):
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone

        protocol.dataReceived(self.body)
        protocol.connectionLost(Failure(ResponseDone()))


def test_backup_targets_serve_only_while_no_primary_is_available_and_traffic_returns():
    agent = ByHost()
    gw = harness(BACKUP, Named("unused"), agents={"api": agent})
    upstream = gw.generation.upstreams["api"]
    primary, spare = upstream.targets
    for _ in range(5):
        gw.request("GET", "http://gw.test/x")
    assert agent.hosts == [b"primary"] * 5  # the backup gets nothing while the primary is up
    primary.healthy = False
    upstream._target_moved(primary)
    gw.request("GET", "http://gw.test/x")
    assert agent.hosts[-1] == b"spare"
    primary.healthy = True
    upstream._target_moved(primary)
    gw.request("GET", "http://gw.test/x")
    assert agent.hosts[-1] == b"primary"


def test_backup_serves_while_the_primary_breaker_is_open_and_not_after():
    agent = ByHost()
    yaml = BACKUP.replace(
        "targets: [{url: \"http://primary\"}, {url: \"http://spare\", backup: true}]",
        "targets: [{url: \"http://primary\"}, {url: \"http://spare\", backup: true}]\n"
        "    circuit_breaker: {failure_threshold: 1, recovery_timeout: 10s}\n"
        "    outlier_detection: {consecutive_failures: 1, max_ejected: 100%}",
    )
    gw = harness(yaml, Named("unused"), agents={"api": agent})
    upstream = gw.generation.upstreams["api"]
    primary, spare = upstream.targets
    primary.breaker.record(primary.breaker.admit(), False)  # open
    gw.request("GET", "http://gw.test/x")
    assert agent.hosts[-1] == b"spare"
    gw.clock.advance(11)  # half-open: the primary takes a probe again
    gw.request("GET", "http://gw.test/x")
    assert agent.hosts[-1] == b"primary"
    upstream.outlier.record(primary, False, upstream.targets)  # ejected now
    gw.request("GET", "http://gw.test/x")
    assert agent.hosts[-1] == b"spare"


def test_sticky_values_are_hashes_or_hmacs_never_addresses():
    from twistgate.config._edge import StickyConfig
    from twistgate.destination import Sticky

    plain = Sticky(StickyConfig(cookie="tg"), [])
    keyed = Sticky(StickyConfig(cookie="tg", secret=b"s3cret"), [])
    token = plain.token("api", "http://10.0.0.5:8080")
    assert token == plain.token("api", "http://10.0.0.5:8080") and len(token) == 24
    assert b"10.0.0.5" not in token and token != keyed.token("api", "http://10.0.0.5:8080")
    assert token != plain.token("api", "http://10.0.0.6:8080")


def test_no_target_at_all_is_503_even_with_backups():
    agent = ByHost()
    gw = harness(BACKUP, Named("unused"), agents={"api": agent})
    upstream = gw.generation.upstreams["api"]
    for target in upstream.targets:
        target.healthy = False
    upstream._refresh()
    response = gw.request("GET", "http://gw.test/x")
    assert response.code == 503 and agent.hosts == []


# -- concurrency -----------------------------------------------------------------------------------


CONCURRENCY = """
upstreams:
  api: {targets: [{url: "http://api"}]}
routes:
  - {name: api, path: /*, upstream: api, concurrency: {limit: 2, key: ip}, timeout: 5s}
"""


def test_concurrency_refuses_beyond_the_limit_and_releases_however_requests_end():
    upstream = Named("api")
    upstream.hold = True
    gw = harness(CONCURRENCY, upstream)
    first, second = gw.send("GET", "http://gw.test/a"), gw.send("GET", "http://gw.test/b")
    refused = gw.request("GET", "http://gw.test/c")
    assert refused.code == 429
    error = json.loads(body(gw, refused))
    assert error["error"] == "concurrency_limited" and refused.headers.getRawHeaders("Retry-After") == ["1"]
    upstream.held.pop(0).finish()  # one ends normally
    gw.flush()
    assert first.called
    upstream.hold = False
    assert gw.request("GET", "http://gw.test/d").code == 200  # its slot was given back
    gw.clock.advance(6)  # the other times out (504): its slot is given back too
    gw.flush()
    assert second.called
    assert gw.request("GET", "http://gw.test/e").code == 200
    assert gw.request("GET", "http://gw.test/f").code == 200


# -- per-route body limit, Server header, access_log ---------------------------------------------


LIMITS = """
limits: {max_request_body: 1KiB}
upstreams:
  api: {targets: [{url: "http://api"}]}
routes:
  - {name: upload, path: /upload, upstream: api, max_request_body: 4KiB}
  - {name: api, path: /*, upstream: api, hide_server_header: true}
"""


def test_route_max_request_body_raises_and_lowers_the_limit():
    gw = harness(LIMITS, Named("api", server=b"Apache/2.4.1"))
    assert gw.request("POST", "http://gw.test/upload", data=b"x" * 3000).code == 200
    big = gw.request("POST", "http://gw.test/upload", data=b"x" * 5000)
    assert big.code == 413 and json.loads(body(gw, big))["error"] == "payload_too_large"
    assert gw.request("POST", "http://gw.test/other", data=b"x" * 2000).code == 413  # the global limit elsewhere


def test_hide_server_header_removes_the_upstream_server_only_where_set():
    gw = harness(LIMITS, Named("api", server=b"Apache/2.4.1"))
    assert gw.request("GET", "http://gw.test/other").headers.getRawHeaders("Server") is None
    shown = gw.request("POST", "http://gw.test/upload", data=b"x")
    assert shown.headers.getRawHeaders("Server") == ["Apache/2.4.1"]


DEFAULTS = """
defaults:
  upstream: api
  hide_server_header: true
  security_headers: {hsts: false}
  headers: {response: {set: {X-Served-By: edge}}}
upstreams:
  api: {targets: [{url: "http://api"}]}
routes:
  - {name: api, path: /api/*}
  - {name: own, path: /own/*, headers: {response: {set: {X-Own: "1"}}}}
"""


def test_defaults_reach_routes_and_the_gateways_own_answers():
    gw = harness(DEFAULTS, Named("api", server=b"Apache"))
    response = gw.request("GET", "http://gw.test/api/x")
    assert response.headers.getRawHeaders("X-Served-By") == ["edge"]
    assert response.headers.getRawHeaders("Server") is None
    assert response.headers.getRawHeaders("X-Frame-Options") == ["DENY"]
    own = gw.request("GET", "http://gw.test/own/x")
    assert own.headers.getRawHeaders("X-Own") == ["1"] and own.headers.getRawHeaders("X-Served-By") is None
    missing = gw.request("GET", "http://gw.test/nowhere")  # 404 no route
    assert missing.code == 404
    assert missing.headers.getRawHeaders("X-Served-By") == ["edge"]
    assert missing.headers.getRawHeaders("X-Frame-Options") == ["DENY"]
    assert gw.generation.own_answers.headers(False) == (
        (b"X-Served-By", b"edge"), (b"X-Content-Type-Options", b"nosniff"), (b"X-Frame-Options", b"DENY"),
        (b"Content-Security-Policy", b"frame-ancestors 'none'"), (b"Referrer-Policy", b"no-referrer"),
    )


def test_without_defaults_own_answers_get_nothing_extra():
    gw = harness(ROUTES_BY_LISTENER, {"api": Named("api"), "admin": Named("admin")}, listener="internal")
    gw_missing = harness(ROUTES_BY_LISTENER.replace("  - {name: api, path: /*, upstream: api}\n", ""),
                         {"api": Named("api"), "admin": Named("admin")})
    response = gw_missing.request("GET", "http://gw.test/nowhere")
    assert response.code == 404 and response.headers.getRawHeaders("X-Frame-Options") is None
    assert gw.generation.own_answers.headers(True) == ()


def test_access_log_false_keeps_a_route_out_of_the_access_log(tmp_path):
    log = tmp_path / "access.log"
    yaml = f"""
access_log: {{path: "{log}", flush_interval: 0s}}
upstreams:
  api: {{targets: [{{url: "http://api"}}]}}
routes:
  - {{name: health, path: /health, upstream: api, access_log: false}}
  - {{name: api, path: /*, upstream: api}}
"""
    gw = harness(yaml, Named("api"))
    gw.generation.services.access_log.start()
    try:
        gw.request("GET", "http://gw.test/health")
        gw.request("GET", "http://gw.test/other")
    finally:
        gw.generation.services.access_log.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["route"] for line in lines] == ["api"]
    metrics = gw.generation.ops.registry.get_sample_value
    assert metrics("twistgate_requests_total", {"route": "health", "method": "GET", "status_class": "2xx"}) == 1.0


# -- cache ttl per status ------------------------------------------------------------------------------


class Statuses(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.calls = Counter()

    def render(self, request):
        self.calls[request.uri] += 1
        status = int(request.uri.rsplit(b"/", 1)[1])
        request.setResponseCode(status)
        if status in (301, 302):
            request.setHeader(b"Location", b"/elsewhere")
        return b"status %d" % status


def test_cache_ttl_per_status_stores_listed_statuses_for_their_time():
    yaml = """
upstreams:
  api: {targets: [{url: "http://api"}]}
routes:
  - {name: api, path: /*, upstream: api, cache: {ttl: {200: 60s, 404: 10s, 302: 30s}}}
"""
    upstream = Statuses()
    gw = harness(yaml, upstream)

    def fetch(path):
        return gw.request("GET", "http://gw.test" + path, allow_redirects=False)

    for path in ("/s/200", "/s/404", "/s/302", "/s/500"):
        fetch(path)
        fetch(path)
    assert upstream.calls == {b"/s/200": 1, b"/s/404": 1, b"/s/302": 1, b"/s/500": 2}  # 302 stored because listed
    gw.clock.advance(11)
    fetch("/s/404"), fetch("/s/200")
    assert upstream.calls[b"/s/404"] == 2 and upstream.calls[b"/s/200"] == 1  # 404 expired at 10 s, 200 did not


def test_cache_ttl_per_status_leaves_unlisted_statuses_to_their_headers():
    yaml = """
upstreams:
  api: {targets: [{url: "http://api"}]}
routes:
  - {name: api, path: /*, upstream: api, cache: {ttl: {404: 10s}}}
"""
    upstream = Statuses()
    gw = harness(yaml, upstream)
    for _ in range(2):
        gw.request("GET", "http://gw.test/s/200")
    assert upstream.calls[b"/s/200"] == 2  # no explicit freshness and not listed: not reused


def test_concurrency_slots_come_back_when_the_client_leaves_or_a_later_layer_refuses():
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure
    from twisted.internet.error import ConnectionLost

    class Hangs:
        def request(self, method, uri, headers=None, bodyProducer=None):
            return Deferred(lambda d: None)

    yaml = CONCURRENCY + "  - {name: closed, path: /closed, upstream: api, concurrency: {limit: 1, key: route}, plugins: {maintenance: {}}}\n"
    gw = harness(yaml.replace("/*,", "/a/*,"), Named("api"), agents={"api": Hangs()})
    stage = _live(gw, "api", "concurrency")
    left = FakeDownstream(target=b"/a/1", headers={b"Host": [b"gw.test"]})
    serve(gw.generation, left)
    assert stage.in_flight == {"ip=127.0.0.1": 1}
    left._finish.errback(Failure(ConnectionLost()))  # the client went away mid-request
    assert stage.in_flight == {}
    closed = _live(gw, "closed", "concurrency")
    for _ in range(3):
        answered = serve(gw.generation, FakeDownstream(target=b"/closed", headers={b"Host": [b"gw.test"]}))
        assert answered.answer[0] == 503  # maintenance, after the slot was taken
    assert closed.in_flight == {}


def _live(gw, route, name):
    """The stage object the running chain calls (the one counting)."""
    runtime = gw.generation.routes_by_name[route].chain
    for call in getattr(runtime, "_on_request", ()):
        owner = getattr(call.function, "__self__", None)
        if call.plugin == name and owner is not None:
            return owner
    raise AssertionError(f"no {name} stage on {route}")


KEYED_CONCURRENCY = """
auth:
  tokens: {type: jwt, algorithms: [HS256], secret: concurrency-test-secret-of-32-bytes-or-more}
upstreams:
  api: {targets: [{url: "http://api"}]}
routes:
  - {name: tenants, path: /t/*, upstream: api, concurrency: {limit: 1, key: "header:X-Tenant"}}
  - {name: consumers, path: /c/*, upstream: api, auth: [tokens], concurrency: {limit: 1, key: consumer}}
"""


def _bearer(subject: str) -> dict:
    import time

    import jwt

    token = jwt.encode({"sub": subject, "exp": int(time.time()) + 600}, "concurrency-test-secret-of-32-bytes-or-more", algorithm="HS256")
    return {"Authorization": [f"Bearer {token}"]}


def test_concurrency_keys_by_header_and_by_consumer():
    """header:NAME and consumer each count their own key: a second request of the same key is 429, another key passes."""
    upstream = Named("api")
    upstream.hold = True
    gw = harness(KEYED_CONCURRENCY, upstream)
    gw.send("GET", "http://gw.test/t/1", headers={"X-Tenant": ["acme"]})
    refused = gw.request("GET", "http://gw.test/t/2", headers={"X-Tenant": ["acme"]})
    assert refused.code == 429 and json.loads(body(gw, refused))["error"] == "concurrency_limited"
    gw.send("GET", "http://gw.test/t/3", headers={"X-Tenant": ["globex"]})
    gw.send("GET", "http://gw.test/t/4")  # no header: counted by the client's address
    assert len(upstream.held) == 3
    assert gw.request("GET", "http://gw.test/t/5").code == 429  # the same address again
    gw.send("GET", "http://gw.test/c/1", headers=_bearer("alice"))
    refused = gw.request("GET", "http://gw.test/c/2", headers=_bearer("alice"))
    assert refused.code == 429 and json.loads(body(gw, refused))["error"] == "concurrency_limited"
    gw.send("GET", "http://gw.test/c/3", headers=_bearer("bob"))
    assert len(upstream.held) == 5
    for request in upstream.held:
        request.finish()
    gw.flush()
    upstream.hold = False
    assert gw.request("GET", "http://gw.test/t/6", headers={"X-Tenant": ["acme"]}).code == 200
    assert gw.request("GET", "http://gw.test/c/4", headers=_bearer("alice")).code == 200
