"""
Request and response transformations in a whole gateway: headers (remove,
rename, set, add, with substitutions), path rewrite by regex, query edits,
and the config errors.
"""

from __future__ import annotations

import json
from typing import Dict, List

import pytest
from twisted.internet.defer import fail
from twisted.web.resource import Resource

from twistgate.config import ConfigError, load_text
from twistgate.policies import Policy
from tests.policy_helpers import add_policy, reset_sections
from twistgate.config._node import Node
from twistgate.plugins import hookimpl
from twistgate.testing import GatewayHarness


class Echo(Resource):
    """Answers with what it received; sends a few headers to transform."""

    isLeaf = True

    def render(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Server", b"backend/1.0")
        request.setHeader(b"X-Internal-Trace", b"abc")
        request.setHeader(b"X-Old-Name", b"v1")
        headers: Dict[str, List[str]] = {
            k.decode().lower(): [v.decode("utf-8") for v in vs] for k, vs in request.requestHeaders.getAllRawHeaders()
        }
        return json.dumps({"uri": request.uri.decode(), "headers": headers}).encode()


def gateway(route_extra: str, *, path: str = "/users/{id}/*"):
    text = f"""
listeners: [{{name: p, endpoint: "tcp:0"}}]
upstreams: {{app: {{targets: [{{url: "http://app:80"}}]}}}}
routes:
  - name: users
    path: "{path}"
    upstream: app
{route_extra}
"""
    return GatewayHarness(load_text(text, "gw.yaml"), Echo())


def call(gw, url: str, headers=None):
    response = gw.request("GET", "http://gw" + url, headers=headers)
    return response, json.loads(gw.content(response))


def test_request_headers_remove_rename_set_add_with_substitutions():
    gw = gateway(
        """    headers:
      request:
        remove: [X-Debug]
        rename: {X-Client-Version: X-Version}
        set: {X-User-Id: "{id}", X-Gateway: "twistgate", X-Trace: "req-{request_id}", X-Literal: "{{id}}"}
        add: {X-Tag: [a, "b-{method}"]}
"""
    )
    response, seen = call(
        gw,
        "/users/42/orders",
        {"X-Debug": "1", "X-Client-Version": "7", "X-Gateway": "spoofed", "X-Tag": "client"},
    )
    headers = seen["headers"]
    assert "x-debug" not in headers
    assert headers["x-version"] == ["7"] and "x-client-version" not in headers
    assert headers["x-user-id"] == ["42"]
    assert headers["x-gateway"] == ["twistgate"]  # set replaces the client's value
    assert headers["x-trace"] == ["req-" + response.headers.getRawHeaders("X-Request-Id")[0]]
    assert headers["x-literal"] == ["{id}"]
    assert headers["x-tag"] == ["client", "a", "b-GET"]


def test_a_set_header_whose_value_is_missing_is_removed_so_clients_cannot_supply_it():
    """No authenticated consumer: X-Consumer is dropped, not passed from the client."""
    gw = gateway("""    headers: {request: {set: {X-Consumer: "{consumer}"}, add: {X-Also: "{consumer}"}}}\n""")
    _, seen = call(gw, "/users/1/x", {"X-Consumer": "admin", "X-Also": "kept"})
    assert "x-consumer" not in seen["headers"]
    assert seen["headers"]["x-also"] == ["kept"]


class Who:
    @hookimpl
    def on_request(self, request):
        request.consumer = "alice"


@pytest.fixture
def fake_auth(monkeypatch):
    add_policy(monkeypatch, Policy(name="who", key="who", parse=Node.boolean, build=lambda route, services: Who()), before="auth")
    yield
    reset_sections()


def test_consumer_substitution_after_authentication(fake_auth):
    gw = gateway("""    who: true\n    headers: {request: {set: {X-Consumer: "{consumer}"}}}\n""")
    _, seen = call(gw, "/users/1/x", {"X-Consumer": "admin"})
    assert seen["headers"]["x-consumer"] == ["alice"]


def test_substituted_values_cannot_inject_header_lines():
    """A path parameter is percent-decoded: CR/LF in it never reach a header."""
    gw = gateway("""    headers: {request: {set: {X-User-Id: "{id}"}}, response: {set: {X-Echo-Id: "{id}"}}}\n""")
    response, seen = call(gw, "/users/a%0d%0aX-Evil:%201/x")
    assert seen["headers"]["x-user-id"] == ["aX-Evil: 1"]
    assert "x-evil" not in seen["headers"]
    assert response.headers.getRawHeaders("X-Echo-Id") == ["aX-Evil: 1"]


def test_response_headers_remove_rename_set_add():
    gw = gateway(
        """    headers:
      response:
        remove: [Server, X-Internal-Trace]
        rename: {X-Old-Name: X-New-Name}
        set: {Cache-Control: no-store}
        add: {X-Served-By: "twistgate/{id}"}
"""
    )
    response, _ = call(gw, "/users/9/x")
    headers = response.headers
    assert not headers.hasHeader("Server") and not headers.hasHeader("X-Internal-Trace")
    assert headers.getRawHeaders("X-New-Name") == ["v1"] and not headers.hasHeader("X-Old-Name")
    assert headers.getRawHeaders("Cache-Control") == ["no-store"]
    assert headers.getRawHeaders("X-Served-By") == ["twistgate/9"]


class _Refused:
    def request(self, *args, **kwargs):
        return fail(ConnectionRefusedError())


def test_response_set_and_add_apply_to_gateway_errors_too():
    """A 502 the gateway answers on the route gets them; the error's own headers stay."""
    text = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes:
  - name: users
    path: /users/*
    upstream: app
    headers: {response: {set: {X-Frame-Options: SAMEORIGIN, Content-Type: text/html}, add: {X-Served-By: gw}}}
"""
    gw = GatewayHarness(load_text(text), Echo(), agents={"app": _Refused()})
    response = gw.request("GET", "http://gw/users/1")
    body = json.loads(gw.content(response))
    assert response.code == 502 and body["error"] == "bad_gateway"
    assert response.headers.getRawHeaders("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers.getRawHeaders("X-Served-By") == ["gw"]
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]


def test_path_rewrite_with_captures():
    gw = gateway("""    rewrite: {regex: "^/users/([0-9]+)/(.*)$", replacement: "/v2/people/$1/$2"}\n""")
    _, seen = call(gw, "/users/42/orders/7?x=1")
    assert seen["uri"] == "/v2/people/42/orders/7?x=1"


def test_path_rewrite_with_named_captures_and_no_match():
    gw = gateway(
        """    rewrite: {regex: "^/users/(?P<id>[0-9]+)/legacy", replacement: "/old/$<id>/$$"}\n"""
    )
    _, seen = call(gw, "/users/42/legacy/thing")
    assert seen["uri"] == "/old/42/$/thing"
    _, seen = call(gw, "/users/abc/other")
    assert seen["uri"] == "/users/abc/other"


def test_path_rewrite_result_is_normalised():
    """Captures cannot smuggle dot segments past the gateway's path normalisation."""
    gw = gateway("""    rewrite: {regex: "^/users/[^/]+/(.*)$", replacement: "/base/x$1"}\n""")
    _, seen = call(gw, "/users/1/..%2F..%2Fetc")
    assert seen["uri"].startswith("/base/")
    assert "/../" not in seen["uri"]


def test_rewrite_runs_after_strip_prefix():
    gw = gateway(
        """    strip_prefix: /users\n    rewrite: {regex: "^/([0-9]+)/", replacement: "/id-$1/"}\n"""
    )
    _, seen = call(gw, "/users/5/x")
    assert seen["uri"] == "/id-5/x"


def test_query_remove_set_add_keeping_other_parameters_byte_for_byte():
    gw = gateway(
        """    query: {remove: [debug, "a b"], set: {format: json}, add: {user: "{id}", tag: [x, "y z"]}}\n"""
    )
    _, seen = call(gw, "/users/7/x?keep=%41%2b&debug=1&format=xml&a+b=2&debug&z=")
    assert seen["uri"] == "/users/7/x?keep=%41%2b&z=&format=json&user=7&tag=x&tag=y%20z"


def test_query_add_to_an_empty_query():
    gw = gateway("""    query: {add: {v: "2"}}\n""")
    _, seen = call(gw, "/users/7/x")
    assert seen["uri"] == "/users/7/x?v=2"


@pytest.mark.parametrize(
    "extra, message",
    [
        ("""    headers: {request: {set: {X-A: "{nope}"}}}""", "unknown substitution {nope}"),
        ("""    headers: {request: {set: {X-A: "{id"}}}""", "unbalanced"),
        ("""    headers: {request: {set: {Content-Length: "1"}}}""", "managed by the gateway"),
        ("""    headers: {request: {remove: [Host]}}""", "preserve_host"),
        ("""    headers: {request: {sett: {}}}""", "did you mean 'set'"),
        ("""    headers: {request: {set: {"X A": "1"}}}""", "expected a header name"),
        ("""    rewrite: {regex: "^/(a)$", replacement: "/$2"}""", "does not have"),
        ("""    rewrite: {regex: "^/(a$", replacement: "/"}""", "invalid regular expression"),
        ("""    rewrite: {regex: "^/a$", replacement: "/a b"}""", "path characters"),
        ("""    rewrite: {regex: "^/a$"}""", "required key 'replacement'"),
        ("""    query: {add: {u: "{who}"}}""", "unknown substitution {who}"),
    ],
)
def test_config_errors(extra, message):
    with pytest.raises(ConfigError) as error:
        gateway(extra + "\n")
    assert message in str(error.value)
    assert "gw.yaml:" in str(error.value)


def test_substitution_that_a_path_parameter_shadows_is_refused():
    with pytest.raises(ConfigError) as error:
        gateway("""    headers: {request: {set: {X-A: "{consumer}"}}}\n""", path="/u/{consumer}")
    assert "both a parameter" in str(error.value)
