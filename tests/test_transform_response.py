"""
The response presets: security_headers (HSTS only over HTTPS, never
overriding the upstream, on errors too) and the opt-in JSON envelope
(streamed, framing headers fixed, only around JSON).
"""

from __future__ import annotations

import gzip
import json

import pytest
from twisted.internet.defer import fail
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistgate.config import ConfigError, load_text
from twistgate.messages import Response
from twistgate.plugins import hookimpl
from twistgate.testing import GatewayHarness
from twistgate.policies.transform.response import _Envelope


class Scripted(Resource):
    """Answers by path: /json, /text, /empty, /nocontent, /gzip, /framed, /chunked."""

    isLeaf = True

    def render(self, request):
        path = request.path.decode()
        if path in ("/framed", "/csp"):
            if path == "/framed":
                request.setHeader(b"X-Frame-Options", b"SAMEORIGIN")
            else:
                request.setHeader(b"Content-Security-Policy", b"default-src 'self'")
            request.setHeader(b"Content-Type", b"text/html")
            return b"<p>hi</p>"
        if path == "/json":
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            request.setHeader(b"ETag", b'"v1"')
            return b'  {"id": 1, "tags": ["a"]}'
        if path == "/problem":
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"application/problem+json")
            return b'{"title": "nope"}'
        if path == "/text":
            request.setHeader(b"Content-Type", b"text/plain")
            return b"plain"
        if path == "/empty":
            request.setHeader(b"Content-Type", b"application/json")
            return b""
        if path == "/nocontent":
            request.setResponseCode(204)
            request.setHeader(b"Content-Type", b"application/json")
            return b""
        if path == "/gzip":
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Content-Encoding", b"gzip")
            return gzip.compress(b'{"zipped": true}')
        if path == "/chunked":
            request.setHeader(b"Content-Type", b"application/json")
            request.write(b"[1,")
            request.write(b"2,")
            request.write(b"3]")
            request.finish()
            return NOT_DONE_YET
        return b"?"


def gateway(extra: str, *, top: str = "", agents=None):
    text = f"""
listeners: [{{name: p, endpoint: "tcp:0"}}]
{top}
upstreams: {{app: {{targets: [{{url: "http://app:80"}}]}}}}
routes:
  - name: r
    path: /*
    upstream: app
{extra}
"""
    return GatewayHarness(load_text(text, "gw.yaml"), Scripted(), agents=agents)


def get(gw, path, method="GET", headers=None):
    response = gw.request(method, "http://gw" + path, headers=headers)
    return response, gw.content(response)


def h(response, name):
    values = response.headers.getRawHeaders(name)
    return ", ".join(values) if values else None


# -- security headers ---------------------------------------------------------------


def test_preset_on_http_has_everything_but_hsts():
    gw = gateway("    security_headers: true")
    response, _ = get(gw, "/text")
    assert h(response, "X-Content-Type-Options") == "nosniff"
    assert h(response, "X-Frame-Options") == "DENY"
    assert h(response, "Referrer-Policy") == "no-referrer"
    assert h(response, "Content-Security-Policy") == "frame-ancestors 'none'"
    assert h(response, "Strict-Transport-Security") is None  # RFC 6797 §7.2: never over plain HTTP


@pytest.mark.parametrize(
    "setting, expected",
    [("{frame_options: SAMEORIGIN}", "frame-ancestors 'self'"),  # follows frame_options unless set
     ("{frame_ancestors: \"'self' https://partner.example\"}", "frame-ancestors 'self' https://partner.example"),
     ("{frame_options: false}", None), ("{frame_ancestors: false}", None)],
)
def test_frame_ancestors(setting, expected):
    gw = gateway(f"    security_headers: {setting}")
    response, _ = get(gw, "/text")
    assert h(response, "Content-Security-Policy") == expected


def test_frame_ancestors_never_overrides_an_upstream_policy():
    gw = gateway("    security_headers: true")
    response, _ = get(gw, "/csp")
    assert h(response, "Content-Security-Policy") == "default-src 'self'"


def test_hsts_when_a_trusted_proxy_terminated_tls():
    gw = gateway("    security_headers: true", top="trusted_proxies: [127.0.0.1]")
    response, _ = get(gw, "/text", headers={"X-Forwarded-Proto": "https"})
    assert h(response, "Strict-Transport-Security") == "max-age=31536000; includeSubDomains"


def test_an_untrusted_client_cannot_ask_for_hsts():
    gw = gateway("    security_headers: true")
    response, _ = get(gw, "/text", headers={"X-Forwarded-Proto": "https"})
    assert h(response, "Strict-Transport-Security") is None


def test_preset_never_overrides_what_the_upstream_sent():
    gw = gateway("    security_headers: true")
    response, _ = get(gw, "/framed")
    assert h(response, "X-Frame-Options") == "SAMEORIGIN"


def test_preset_values_can_be_changed_or_turned_off():
    gw = gateway(
        "    security_headers: {frame_options: SAMEORIGIN, referrer_policy: false, content_type_options: false,"
        " hsts: 'max-age=600'}",
        top="trusted_proxies: [127.0.0.1]",
    )
    response, _ = get(gw, "/text", headers={"X-Forwarded-Proto": "https"})
    assert h(response, "X-Frame-Options") == "SAMEORIGIN"
    assert h(response, "Referrer-Policy") is None and h(response, "X-Content-Type-Options") is None
    assert h(response, "Strict-Transport-Security") == "max-age=600"


class _Refused:
    def request(self, *args, **kwargs):
        return fail(ConnectionRefusedError())


def test_gateway_errors_get_the_preset_too():
    gw = gateway("    security_headers: true", agents={"app": _Refused()})
    response, _ = get(gw, "/text")
    assert response.code == 502
    assert h(response, "X-Content-Type-Options") == "nosniff" and h(response, "X-Frame-Options") == "DENY"


@pytest.mark.parametrize(
    "value, message",
    [
        ("{frame_options: ALLOWALL}", "expected one of"),
        ("{referrer_policy: never}", "expected one of"),
        ("{hsts: 'one year'}", "Strict-Transport-Security value"),
        ("{hsts: true}", "or false to leave it out"),
        ("{csp: x}", "unknown key 'csp'"),
        ("{frame_ancestors: 'https://a.example; script-src *'}", "frame_ancestors"),
        ("yes-please", "expected true or false"),
    ],
)
def test_security_header_config_errors(value, message):
    with pytest.raises(ConfigError) as error:
        gateway(f"    security_headers: {value}")
    assert message in str(error.value) and "routes[0].security_headers" in str(error.value)


# -- JSON envelope ---------------------------------------------------------------------


def test_json_body_is_wrapped_with_meta_and_framing_fixed():
    gw = gateway("    json_envelope: true")
    response, body = get(gw, "/json")
    wrapped = json.loads(body)
    assert wrapped == {"data": {"id": 1, "tags": ["a"]}, "meta": {"status": 200, "request_id": h(response, "X-Request-Id")}}
    assert h(response, "ETag") is None  # the bytes changed
    assert h(response, "Content-Length") in (None, str(len(body)))


def test_error_status_json_is_wrapped_too():
    gw = gateway("    json_envelope: {key: result, meta: false}")
    response, body = get(gw, "/problem")
    assert response.code == 404
    assert json.loads(body) == {"result": {"title": "nope"}}


def test_streamed_json_is_wrapped_without_buffering():
    gw = gateway("    json_envelope: {meta: false}")
    _, body = get(gw, "/chunked")
    assert json.loads(body) == {"data": [1, 2, 3]}


def test_empty_json_body_becomes_null():
    gw = gateway("    json_envelope: {meta: false}")
    _, body = get(gw, "/empty")
    assert json.loads(body) == {"data": None}


@pytest.mark.parametrize("path, expected", [("/text", b"plain"), ("/gzip", b'{"zipped": true}')])
def test_other_bodies_pass_unchanged(path, expected):
    gw = gateway("    json_envelope: true")
    _, body = get(gw, path)
    assert body == expected


def test_no_body_statuses_and_head_are_left_alone():
    gw = gateway("    json_envelope: true")
    response, body = get(gw, "/nocontent")
    assert response.code == 204 and body == b""
    response, body = get(gw, "/json", method="HEAD")
    assert body == b"" and h(response, "ETag") == '"v1"'


def test_envelope_filter_contract():
    """The body-filter protocol: leading whitespace before the JSON is dropped, the suffix comes last."""
    envelope = _Envelope(b'{"d":', b"}")
    assert envelope.write(b"  \n") == b""
    assert envelope.write(b" [1") == b'{"d":[1'
    assert envelope.write(b"]") == b"]"
    assert envelope.finish() == b"}"


def test_json_envelope_false_is_off_and_errors_are_reported():
    gw = gateway("    json_envelope: false")
    _, body = get(gw, "/json")
    assert body == b'  {"id": 1, "tags": ["a"]}'
    with pytest.raises(ConfigError) as error:
        gateway("    json_envelope: {key: meta}")
    assert "envelope's own key" in str(error.value)


class Canned:
    """A plugin answering itself, as a cache hit does: the body was enveloped when it was stored."""

    @hookimpl
    def on_request(self, request, route):
        return Response(
            status=200,
            headers=[("Content-Type", "application/json"), ("X-Served-By", "gw")],
            body=b'{"data": {"cached": true}}',
        )


def test_answers_not_from_the_upstream_are_not_wrapped_or_added_to_again():
    text = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes:
  - name: r
    path: /*
    upstream: app
    json_envelope: true
    headers: {response: {add: {X-Served-By: gw}}}
    plugins: {canned: {}}
"""
    gw = GatewayHarness(load_text(text), Scripted(), plugins={"canned": lambda options, context: Canned()})
    response, body = get(gw, "/json")
    assert json.loads(body) == {"data": {"cached": True}}
    assert response.headers.getRawHeaders("X-Served-By") == ["gw"]
