"""
CORS per the Fetch standard, through a whole gateway in memory: preflights
are answered by the gateway (never forwarded), actual requests get the
allow headers for allowed origins only, Vary: Origin, and config errors.
"""

from __future__ import annotations

import json
from typing import List

import pytest
from twisted.web.resource import Resource

from twistgate.config import ConfigError, load_text
from twistgate.testing import GatewayHarness


class Upstream(Resource):
    """Records requests; answers with its own (conflicting) CORS headers."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[bytes] = []

    def render(self, request):
        self.seen.append(request.method)
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        request.setHeader(b"Vary", b"Accept-Encoding")
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"method": request.method.decode()}).encode()


def gateway(cors: str, *, methods: str = "[GET, PUT]", extra: str = ""):
    text = f"""
listeners: [{{name: p, endpoint: "tcp:0"}}]
upstreams: {{app: {{targets: [{{url: "http://app:80"}}]}}}}
routes:
  - name: api
    path: /api/*
    methods: {methods}
    upstream: app
    cors: {cors}
{extra}
"""
    upstream = Upstream()
    return GatewayHarness(load_text(text, "gw.yaml"), upstream), upstream


def header(response, name: str):
    values = response.headers.getRawHeaders(name)
    return ", ".join(values) if values else None


STRICT = "{origins: [https://app.example, 'https://*.example.org', '~^https://pr-[0-9]+\\.preview\\.dev$'], credentials: true, headers: [Content-Type, X-Tenant], expose_headers: [X-Request-Id, X-Total], max_age: 10m}"


def preflight(gw, origin: str, method: str = "PUT", headers: str = ""):
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    response = gw.request("OPTIONS", "http://gw/api/items", headers=request_headers)
    return response, gw.content(response)


def test_preflight_is_answered_by_the_gateway_and_never_forwarded():
    """OPTIONS is not in the route's methods: a preflight still works (204), the upstream sees nothing."""
    gw, upstream = gateway(STRICT)
    response, body = preflight(gw, "https://app.example", "PUT", "content-type, x-tenant")
    assert response.code == 204 and body == b""
    assert header(response, "Access-Control-Allow-Origin") == "https://app.example"
    assert header(response, "Access-Control-Allow-Credentials") == "true"
    assert header(response, "Access-Control-Allow-Methods") == "GET, PUT"
    assert header(response, "Access-Control-Allow-Headers") == "Content-Type, X-Tenant"
    assert header(response, "Access-Control-Max-Age") == "600"
    vary = header(response, "Vary")
    assert "Origin" in vary and "Access-Control-Request-Method" in vary
    assert upstream.seen == []


@pytest.mark.parametrize(
    "origin",
    ["https://app.example", "https://a.example.org", "https://a.b.example.org", "https://pr-12.preview.dev"],
)
def test_allowed_origins_exact_wildcard_and_regex(origin):
    gw, _ = gateway(STRICT)
    response, _ = preflight(gw, origin)
    assert response.code == 204
    assert header(response, "Access-Control-Allow-Origin") == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example",  # scheme matters
        "https://app.example:8443",  # port matters
        "https://example.org",  # the wildcard needs a subdomain
        "https://a.example.org.evil.com",
        "https://evilexample.org",
        "https://pr-x.preview.dev",
        "null",
    ],
)
def test_disallowed_preflight_gets_a_clear_403_without_cors_headers(origin):
    gw, upstream = gateway(STRICT)
    response, body = preflight(gw, origin)
    assert response.code == 403
    error = json.loads(body)
    assert error["error"] == "cors_rejected" and "origin" in error["message"]
    assert header(response, "Access-Control-Allow-Origin") is None
    assert upstream.seen == []


def test_preflight_for_a_method_or_header_not_allowed_is_refused():
    gw, upstream = gateway(STRICT)
    response, body = preflight(gw, "https://app.example", "DELETE")
    assert response.code == 403 and "method DELETE" in json.loads(body)["message"]
    response, body = preflight(gw, "https://app.example", "PUT", "content-type, x-secret")
    assert response.code == 403 and "x-secret" in json.loads(body)["message"]
    assert upstream.seen == []


def test_actual_request_from_an_allowed_origin_gets_the_allow_headers():
    """The upstream's own ACAO (*) is replaced: the gateway owns CORS on the route."""
    gw, upstream = gateway(STRICT)
    response = gw.request("GET", "http://gw/api/items", headers={"Origin": "https://app.example"})
    assert response.code == 200 and gw.content(response)
    assert response.headers.getRawHeaders("Access-Control-Allow-Origin") == ["https://app.example"]
    assert header(response, "Access-Control-Allow-Credentials") == "true"
    assert header(response, "Access-Control-Expose-Headers") == "X-Request-Id, X-Total"
    assert "Origin" in header(response, "Vary") and "Accept-Encoding" in header(response, "Vary")


def test_actual_request_from_another_origin_is_forwarded_without_allow_headers():
    gw, upstream = gateway(STRICT)
    response = gw.request("GET", "http://gw/api/items", headers={"Origin": "https://evil.example"})
    assert response.code == 200 and gw.content(response)
    assert upstream.seen == [b"GET"]
    assert header(response, "Access-Control-Allow-Origin") is None
    assert header(response, "Access-Control-Allow-Credentials") is None


def test_vary_origin_even_without_origin_so_caches_keep_answers_apart():
    gw, _ = gateway(STRICT)
    response = gw.request("GET", "http://gw/api/items")
    gw.content(response)
    assert header(response, "Access-Control-Allow-Origin") is None
    assert "Origin" in header(response, "Vary")


def test_any_origin_without_credentials_is_a_literal_star_and_needs_no_vary():
    gw, _ = gateway("{origins: '*', methods: ['*'], headers: ['*']}", methods="[GET, PATCH]")
    response, _ = preflight(gw, "https://anyone.example", "PATCH", "x-one, x-two")
    assert response.code == 204
    assert header(response, "Access-Control-Allow-Origin") == "*"
    assert header(response, "Access-Control-Allow-Credentials") is None
    assert header(response, "Access-Control-Allow-Methods") == "PATCH"  # reflected
    assert header(response, "Access-Control-Allow-Headers") == "x-one, x-two"  # reflected
    response = gw.request("GET", "http://gw/api/items", headers={"Origin": "https://anyone.example"})
    gw.content(response)
    assert header(response, "Access-Control-Allow-Origin") == "*"
    assert "Origin" not in (header(response, "Vary") or "")


def test_default_methods_are_the_routes():
    gw, _ = gateway("{origins: [https://app.example]}", methods="[GET, DELETE]")
    response, _ = preflight(gw, "https://app.example", "DELETE")
    assert response.code == 204
    assert header(response, "Access-Control-Allow-Methods") == "DELETE, GET"


def test_plain_options_to_a_route_without_options_is_still_405():
    """Only preflights make the route accept OPTIONS."""
    gw, upstream = gateway(STRICT)
    response = gw.request("OPTIONS", "http://gw/api/items")
    assert response.code == 405
    assert header(response, "Allow") == "GET, HEAD, PUT"
    response = gw.request("OPTIONS", "http://gw/api/items", headers={"Origin": "https://app.example"})
    assert response.code == 405
    assert upstream.seen == []


def test_plain_options_is_forwarded_when_the_route_lists_it():
    gw, upstream = gateway(STRICT, methods="[GET, OPTIONS]")
    response = gw.request("OPTIONS", "http://gw/api/items")
    gw.content(response)
    assert response.code == 200 and upstream.seen == [b"OPTIONS"]


def test_gateway_errors_are_readable_by_the_allowed_origin():
    """A 429 (here) or a 401 answered by the gateway carries ACAO, so the page can see it."""
    gw, _ = gateway(STRICT, extra="    rate_limit: {rate: 1/min, key: ip}")
    ok = gw.request("GET", "http://gw/api/items", headers={"Origin": "https://app.example"})
    gw.content(ok)
    limited = gw.request("GET", "http://gw/api/items", headers={"Origin": "https://app.example"})
    gw.content(limited)
    assert limited.code == 429
    assert header(limited, "Access-Control-Allow-Origin") == "https://app.example"
    assert header(limited, "Access-Control-Allow-Credentials") == "true"
    assert header(limited, "Retry-After") is not None


def test_preflights_are_not_rate_limited():
    gw, _ = gateway(STRICT, extra="    rate_limit: {rate: 1/min, key: ip}")
    for _ in range(3):
        response, _ = preflight(gw, "https://app.example")
        assert response.code == 204


@pytest.mark.parametrize(
    "cors, message",
    [
        ("{origins: '*', credentials: true}", "cannot be combined with credentials"),
        ("{origins: [https://app.example/]}", "remove the trailing '/'"),
        ("{origins: [app.example]}", "expected an origin like"),
        ("{origins: ['~[']}", "invalid regular expression"),
        ("{origins: [https://a.example], expose_headers: ['*'], credentials: true}", "list the headers to expose"),
        ("{origins: [https://a.example], methods: [GET, DELETE]}", "does not accept DELETE"),
        ("{methods: [GET]}", "required key 'origins' is missing"),
        ("{origins: [https://a.example], max_age: 10}", "needs a unit"),
        ("{origins: [https://a.example], orgins: []}", "did you mean 'origins'"),
    ],
)
def test_config_errors_name_the_problem(cors, message):
    with pytest.raises(ConfigError) as error:
        gateway(cors)
    assert message in str(error.value)
    assert "gw.yaml:" in str(error.value) and "cors" in str(error.value)
