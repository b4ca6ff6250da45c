"""Forwarding fidelity over real sockets: what goes in comes out, minus exactly the hop's own headers."""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.conftest import SIMPLE, RecordingUpstream, http_request, raw_exchange


@pytest_twisted.inlineCallbacks
def test_method_path_and_raw_query_are_kept(servers):
    """The upstream sees the method, the path and the query string byte for byte."""
    upstream = RecordingUpstream()
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    reply = yield deferToThread(http_request, gw, "DELETE", "/a/b%2Fc?z=1&a=%20x&a=2&flag")
    assert reply.status == 200
    seen = upstream.requests[0]
    assert seen.method == b"DELETE"
    assert seen.uri == b"/a/b%2Fc?z=1&a=%20x&a=2&flag"


@pytest_twisted.inlineCallbacks
def test_path_is_normalised_before_forwarding(servers):
    """`/public/../admin` reaches the upstream as `/admin`, the path the route decision was made on."""
    upstream = RecordingUpstream()
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    reply = yield deferToThread(http_request, gw, "GET", "/public/../admin//x/./y?q=1")
    assert reply.status == 200
    assert upstream.requests[0].uri == b"/admin/x/y?q=1"


@pytest_twisted.inlineCallbacks
def test_status_reason_and_multi_valued_headers_are_kept(servers):
    """Every Set-Cookie stays a separate field; status and reason pass unchanged."""

    def reply(request):
        request.setResponseCode(299, b"Custom Reason")
        return 299, [(b"Set-Cookie", b"a=1; Path=/"), (b"Set-Cookie", b"b=2; HttpOnly"), (b"X-Multi", b"x")], b"ok"

    upstream = RecordingUpstream(lambda request: _with_reason(request))
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    reply_ = yield deferToThread(
        http_request, gw, "GET", "/", [("X-Many", "one"), ("X-Many", "two"), ("Cookie", "c=3")]
    )
    assert reply_.status == 299
    assert reply_.reason == "Custom Reason"
    assert reply_.all("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert upstream.requests[0].headers[b"x-many"] == [b"one", b"two"]
    assert upstream.requests[0].header("cookie") == b"c=3"


def _with_reason(request):
    request.setResponseCode(299, b"Custom Reason")
    request.responseHeaders.addRawHeader(b"Set-Cookie", b"a=1; Path=/")
    request.responseHeaders.addRawHeader(b"Set-Cookie", b"b=2; HttpOnly")
    from twisted.web.server import NOT_DONE_YET

    request.write(b"ok")
    request.finish()
    return NOT_DONE_YET


@pytest_twisted.inlineCallbacks
def test_content_length_is_kept_not_rechunked(servers):
    """A response with Content-Length reaches the client with that Content-Length, not chunked."""
    upstream = RecordingUpstream(lambda request: (200, [], b"x" * 1234))
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    raw = yield deferToThread(raw_exchange, gw, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nContent-Length: 1234" in head
    assert b"Transfer-Encoding" not in head
    assert body == b"x" * 1234


@pytest_twisted.inlineCallbacks
def test_bodies_pass_byte_for_byte_both_ways(servers):
    """A binary upload and a binary download arrive unchanged."""
    payload = os.urandom(300_000)
    answer = os.urandom(500_000)
    upstream = RecordingUpstream(lambda request: (201, [(b"Content-Type", b"application/octet-stream")], answer))
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    reply = yield deferToThread(http_request, gw, "PUT", "/blob", [("Content-Type", "application/octet-stream")], payload)
    assert reply.status == 201
    assert reply.body == answer
    assert upstream.requests[0].body == payload
    assert upstream.requests[0].header("content-length") == b"300000"


@pytest_twisted.inlineCallbacks
def test_hop_by_hop_request_headers_are_dropped(servers):
    """Connection, Keep-Alive, TE, Upgrade, Proxy-* and every header named in Connection stay on the client hop."""
    upstream = RecordingUpstream()
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    reply = yield deferToThread(
        http_request,
        gw,
        "GET",
        "/",
        [
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "s3cret"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Upgrade", "h2c"),
            ("X-Kept", "yes"),
        ],
    )
    assert reply.status == 200
    seen = upstream.requests[0].headers
    for name in (b"x-secret", b"keep-alive", b"te", b"upgrade"):
        assert name not in seen, name
    assert seen[b"x-kept"] == [b"yes"]
    # Not hop-by-hop for a proxy that does not use it (RFC 9110 §11.7.2; nginx, HAProxy, Envoy): issue 18
    assert seen[b"proxy-authorization"] == [b"Basic Zm9vOmJhcg=="]


@pytest_twisted.inlineCallbacks
def test_hop_by_hop_response_headers_are_dropped(servers):
    """Headers the upstream names in its Connection field do not reach the client."""

    def handler(proto):
        proto.transport.write(
            b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: internal\r\nKeep-Alive: timeout=5\r\n"
            b"X-End: kept\r\nContent-Length: 2\r\n\r\nok"
        )

    up, _ = servers.raw_upstream(handler)
    gw, _ = servers.gateway(SIMPLE, up=up)
    reply = yield deferToThread(http_request, gw, "GET", "/")
    assert reply.status == 200
    assert reply.body == b"ok"
    assert reply.header("X-Hop") is None
    assert reply.header("Keep-Alive") is None
    assert reply.header("X-End") == "kept"
    assert reply.header("Date")  # the upstream sent none: RFC 9110 wants the proxy to add it


@pytest_twisted.inlineCallbacks
def test_forwarding_headers_replace_what_an_untrusted_client_claims(servers):
    """A client cannot spoof X-Forwarded-For / Forwarded: without trusted_proxies they are rewritten."""
    upstream = RecordingUpstream()
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    yield deferToThread(
        http_request,
        gw,
        "GET",
        "/",
        [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6"), ("X-Forwarded-Proto", "https"), ("Host", "api.example:8080")],
    )
    seen = upstream.requests[0]
    assert seen.header("x-forwarded-for") == b"127.0.0.1"
    assert seen.header("x-forwarded-proto") == b"http"
    assert seen.header("x-forwarded-host") == b"api.example:8080"
    assert seen.header("forwarded") == b"for=127.0.0.1;host=api.example:8080;proto=http"
    assert seen.header("via") == b"1.1 twistgate"
    assert seen.header("host") == f"127.0.0.1:{servers.ports[0].getHost().port}".encode()  # the target's, not the client's


@pytest_twisted.inlineCallbacks
def test_trusted_proxy_chain_is_extended(servers):
    """From a trusted peer, the client's X-Forwarded-For is kept and the peer appended."""
    upstream = RecordingUpstream()
    yaml = SIMPLE + "trusted_proxies: [127.0.0.0/8]\n"
    gw, _ = servers.gateway(yaml, up=servers.upstream(upstream))
    yield deferToThread(http_request, gw, "GET", "/", [("X-Forwarded-For", "203.0.113.9"), ("Via", "1.1 edge")])
    seen = upstream.requests[0]
    assert seen.header("x-forwarded-for") == b"203.0.113.9, 127.0.0.1"
    assert seen.header("via") == b"1.1 edge, 1.1 twistgate"


@pytest_twisted.inlineCallbacks
def test_request_id_is_generated_sent_and_returned(servers):
    upstream = RecordingUpstream()
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    reply = yield deferToThread(http_request, gw, "GET", "/")
    rid = reply.header("X-Request-ID")
    assert rid and len(rid) == 24
    assert upstream.requests[0].header("x-request-id") == rid.encode()
    assert reply.header("Via") == "1.1 twistgate"


@pytest_twisted.inlineCallbacks
def test_client_request_id_is_kept(servers):
    upstream = RecordingUpstream()
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    reply = yield deferToThread(http_request, gw, "GET", "/", [("X-Request-ID", "abc-123")])
    assert reply.header("X-Request-ID") == "abc-123"
    assert upstream.requests[0].header("x-request-id") == b"abc-123"
    bad = yield deferToThread(http_request, gw, "GET", "/", [("X-Request-ID", "<script>")])
    assert bad.header("X-Request-ID") != "<script>"


@pytest_twisted.inlineCallbacks
def test_round_robin_spreads_over_targets(servers):
    a, b = RecordingUpstream(lambda r: (200, [], b"a")), RecordingUpstream(lambda r: (200, [], b"b"))
    yaml = """
    listeners: [{name: p, endpoint: "tcp:0"}]
    upstreams:
      app:
        targets: [{url: "http://127.0.0.1:{a}"}, {url: "http://127.0.0.1:{b}"}]
    routes: [{name: all, path: "/*", upstream: app}]
    """
    gw, _ = servers.gateway(yaml, a=servers.upstream(a), b=servers.upstream(b))
    bodies = []
    for _ in range(4):
        reply = yield deferToThread(http_request, gw, "GET", "/")
        bodies.append(reply.body)
    assert bodies == [b"a", b"b", b"a", b"b"]


@pytest_twisted.inlineCallbacks
def test_head_keeps_content_length(servers):
    upstream = RecordingUpstream(lambda r: (200, [(b"Content-Length", b"42")], b""))
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    raw = yield deferToThread(raw_exchange, gw, b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 42" in raw
    assert raw.endswith(b"\r\n\r\n")


@pytest_twisted.inlineCallbacks
def test_keep_alive_serves_several_requests_on_one_connection(servers):
    upstream = RecordingUpstream(lambda r: (200, [], r.uri))
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    raw = yield deferToThread(
        raw_exchange,
        gw,
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    assert raw.count(b"HTTP/1.1 200") == 2
    assert raw.index(b"/one") < raw.index(b"/two")


@pytest_twisted.inlineCallbacks
def test_expect_continue_is_answered_by_the_gateway_and_not_forwarded(servers):
    upstream = RecordingUpstream(lambda r: (200, [], b"got"))
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    raw = yield deferToThread(
        raw_exchange,
        gw,
        b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    assert upstream.requests[0].body == b"hello"
    assert upstream.requests[0].header("expect") is None


@pytest_twisted.inlineCallbacks
def test_chunked_upload_is_forwarded(servers):
    upstream = RecordingUpstream(lambda r: (200, [], b"%d" % len(upstream.requests[-1].body)))
    gw, _ = servers.gateway(SIMPLE, up=servers.upstream(upstream))
    raw = yield deferToThread(
        raw_exchange,
        gw,
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.endswith(b"\r\n\r\n11")
    assert upstream.requests[0].body == b"hello world"


PROXY_AUTH = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://127.0.0.1:{up}"}]}}
auth:
  proxy: {type: forward, url: "http://127.0.0.1:{auth}/check", forward_headers: [Proxy-Authorization]}
routes:
  - {name: guarded, path: "/guarded/*", upstream: app, auth: [proxy]}
  - {name: open, path: "/*", upstream: app}
"""


@pytest_twisted.inlineCallbacks
def test_proxy_authorization_is_forwarded_unless_the_gateway_authenticates_with_it(servers):
    """Issue 18: passed on like nginx, HAProxy and Envoy do; used by an authenticator, it stops at the gateway."""
    upstream, auth = RecordingUpstream(), RecordingUpstream(lambda request: (200, [], b""))
    gw, _ = servers.gateway(PROXY_AUTH, up=servers.upstream(upstream), auth=servers.upstream(auth))
    credentials = [("Proxy-Authorization", "Basic Zm9vOmJhcg==")]
    reply = yield deferToThread(http_request, gw, "GET", "/open", credentials)
    assert reply.status == 200
    assert upstream.requests[-1].header("Proxy-Authorization") == b"Basic Zm9vOmJhcg=="
    reply = yield deferToThread(http_request, gw, "GET", "/guarded/x", credentials)
    assert reply.status == 200
    assert auth.requests[-1].header("Proxy-Authorization") == b"Basic Zm9vOmJhcg=="  # the gateway used it
    assert upstream.requests[-1].uri == b"/guarded/x"
    assert upstream.requests[-1].header("Proxy-Authorization") is None
