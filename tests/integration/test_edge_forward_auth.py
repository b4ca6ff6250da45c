"""
The ``forward`` authenticator over real sockets: an authorization service,
an upstream and the gateway on 127.0.0.1, a blocking client in a thread.
"""

from __future__ import annotations

from typing import Any, List

import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.integration.conftest import RecordingUpstream, http_request

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
auth:
  ext:
    type: forward
    url: http://127.0.0.1:{auth}/check
    forward_headers: [Authorization, Cookie]
    copy_headers: [X-User, X-Scopes]
    consumer_header: X-User
    timeout: 1s
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: private, path: /private/*, upstream: app, auth: [ext]}
  - {name: public, path: /public/*, upstream: app}
"""


class AuthService(Resource):
    """Says yes to `Authorization: Bearer good`, redirects browsers to a login page, 401 otherwise."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[Any] = []
        self.hang = False

    def render(self, request: Any) -> Any:
        self.seen.append({k.lower(): v for k, v in request.requestHeaders.getAllRawHeaders()})
        if self.hang:
            return NOT_DONE_YET
        authorization = request.getHeader(b"Authorization")
        if authorization == b"Bearer good":
            request.setHeader(b"X-User", b"alice")
            request.setHeader(b"X-Scopes", b"read write")
            request.setHeader(b"X-Not-Copied", b"secret")
            return b"yes"
        if request.getHeader(b"Cookie") == b"session=none":
            request.setResponseCode(302)
            request.setHeader(b"Location", b"https://login.example/?next=%2Fprivate%2Fx")
            request.setHeader(b"Set-Cookie", b"state=abc; HttpOnly")
            return b""
        request.setResponseCode(401)
        request.setHeader(b"WWW-Authenticate", b'Bearer realm="corp"')
        request.setHeader(b"Content-Type", b"application/json")
        return b'{"why": "no token"}'


def start(servers: Any, auth: Any = None, config: str = CONFIG) -> Any:
    upstream = RecordingUpstream()
    service = auth or AuthService()
    port, generation = servers.gateway(config, auth=servers.upstream(service), up=servers.upstream(upstream))
    return port, upstream, service, generation


@pytest_twisted.inlineCallbacks
def test_a_2xx_answer_lets_the_request_through_with_the_copied_headers(servers):
    port, upstream, service, _ = start(servers)
    reply = yield deferToThread(
        http_request, port, "POST", "/private/x?a=1", [("Authorization", "Bearer good"), ("X-User", "mallory"), ("Host", "shop.example")], b"data"
    )
    assert reply.status == 200 and reply.body == b"hello"
    (sub,) = service.seen
    assert sub[b"authorization"] == [b"Bearer good"]
    assert sub[b"x-forwarded-method"] == [b"POST"] and sub[b"x-forwarded-uri"] == [b"/private/x?a=1"]
    assert sub[b"x-forwarded-host"] == [b"shop.example"] and sub[b"x-forwarded-for"] == [b"127.0.0.1"]
    assert b"x-user" not in sub  # the client's copy never reaches the service either
    (sent,) = upstream.requests
    assert sent.headers[b"x-user"] == [b"alice"]  # the service's value, never the client's "mallory"
    assert sent.headers[b"x-scopes"] == [b"read write"] and b"x-not-copied" not in sent.headers
    assert sent.body == b"data"


@pytest_twisted.inlineCallbacks
def test_any_other_answer_goes_back_to_the_client_as_it_is(servers):
    port, upstream, service, _ = start(servers)
    reply = yield deferToThread(http_request, port, "GET", "/private/x", [("Authorization", "Bearer bad")])
    assert reply.status == 401 and reply.body == b'{"why": "no token"}'
    assert reply.header("WWW-Authenticate") == 'Bearer realm="corp"'
    login = yield deferToThread(http_request, port, "GET", "/private/x", [("Cookie", "session=none")])
    assert login.status == 302  # never followed by the gateway
    assert login.header("Location") == "https://login.example/?next=%2Fprivate%2Fx"
    assert login.header("Set-Cookie") == "state=abc; HttpOnly"
    assert upstream.requests == [] and len(service.seen) == 2


@pytest_twisted.inlineCallbacks
def test_no_answer_is_503_never_a_pass(servers, reactor):
    hanging = AuthService()
    hanging.hang = True
    port, upstream, _, _ = start(servers, hanging)
    reply = yield deferToThread(http_request, port, "GET", "/private/x", [("Authorization", "Bearer good")])
    assert reply.status == 503 and reply.json()["error"] == "auth_unavailable"
    closed = servers.listen(_Closing())  # accepts, then closes at once
    config = CONFIG.replace("{auth}", str(closed))
    port, upstream, _, _ = start(servers, AuthService(), config)
    reply = yield deferToThread(http_request, port, "GET", "/private/x", [("Authorization", "Bearer good")])
    assert reply.status == 503 and upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_client_copies_of_copied_headers_are_removed_on_public_routes_too(servers):
    port, upstream, service, _ = start(servers)
    yield deferToThread(http_request, port, "GET", "/public/x", [("X-User", "mallory"), ("X-Scopes", "admin")])
    (sent,) = upstream.requests
    assert b"x-user" not in sent.headers and b"x-scopes" not in sent.headers
    assert service.seen == []  # a public route asks nobody


@pytest_twisted.inlineCallbacks
def test_positive_answers_are_cached_by_the_forwarded_headers_when_asked(servers):
    config = CONFIG.replace("    timeout: 1s\n", "    timeout: 1s\n    cache_ttl: 30s\n")
    port, upstream, service, _ = start(servers, AuthService(), config)
    for _ in range(3):
        reply = yield deferToThread(http_request, port, "GET", "/private/x", [("Authorization", "Bearer good")])
        assert reply.status == 200
    assert len(service.seen) == 1 and [r.header("x-user") for r in upstream.requests] == [b"alice"] * 3
    for _ in range(2):
        reply = yield deferToThread(http_request, port, "GET", "/private/x", [("Authorization", "Bearer bad")])
        assert reply.status == 401
    assert len(service.seen) == 3  # refusals are never cached


@pytest_twisted.inlineCallbacks
def test_without_cache_every_request_asks(servers):
    port, _, service, _ = start(servers)
    for _ in range(3):
        yield deferToThread(http_request, port, "GET", "/private/x", [("Authorization", "Bearer good")])
    assert len(service.seen) == 3


class _Closing:
    """A factory whose connections are closed as soon as they are accepted."""

    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass

    def buildProtocol(self, addr: Any) -> None:
        return None


@pytest_twisted.inlineCallbacks
def test_the_forwarded_uri_is_the_origin_form_even_for_an_absolute_target(servers):
    from tests.integration.conftest import raw_exchange

    port, _, service, _ = start(servers)
    request = b"GET http://shop.example/private/x?a=1 HTTP/1.1\r\nHost: shop.example\r\nAuthorization: Bearer good\r\nConnection: close\r\n\r\n"
    answer = yield deferToThread(raw_exchange, port, request)
    assert answer.startswith(b"HTTP/1.1 200")
    assert service.seen[-1][b"x-forwarded-uri"] == [b"/private/x?a=1"]
    assert service.seen[-1][b"x-forwarded-host"] == [b"shop.example"]
