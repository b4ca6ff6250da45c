"""
One request's way through the gateway: route, plugins, upstream, and the
response streamed back.

`Exchange` is a small state machine driven by Deferred callbacks (no
coroutines on the hot path: a callback chain is cheaper).  Invariants:
exactly one of the response path or the error path answers; nothing is
written after the client left or after `finish()`; a client that goes away
cancels the upstream call or stops the upstream body; upstream failures map
to 502/504 with the JSON error body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectingCancelledError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.errors import (
    BadRequest,
    GatewayError,
    RouteNotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_body,
)
from twistgate.exchange import ProxyRequest, ProxyResponse, Response
from twistgate.http import request_id_from, strip_hop_by_hop
from twistgate.pathnorm import normalize_path
from twistgate.routing import normalize_host
from twistgate.server import send_error
from twistgate.upstream.body import BodyAborted, BytesBody

if TYPE_CHECKING:
    from twistgate.gateway import Generation, Route

_log = Logger()

# Not hop-by-hop by the RFC, but never passed on as received: the gateway
# answers `Expect: 100-continue` itself, Twisted's client frames the body
# (its own Content-Length / Transfer-Encoding), and Host and X-Request-ID are
# set by the gateway.
_DROP_FROM_REQUEST = (b"Expect", b"Content-Length", b"Host", b"X-Request-Id")
_NO_BODY_STATUS = frozenset({204, 304})


def upstream_connection_header(response: Any) -> Optional[list]:
    """
    The upstream's `Connection` field.  Twisted's client files it away from
    `response.headers` (with the other connection-control headers), but the
    names it lists must still be dropped, so read it from the parser.
    """
    # Response._transport is the parser's TransportProxyProducer around the
    # TCP transport, whose (endpoint-wrapped) protocol, HTTP11ClientProtocol,
    # holds the parser until the body is done; the head callback runs while
    # it is there.  tests/integration pins this chain.
    transport = getattr(getattr(response, "_transport", None), "_producer", None)
    protocol = getattr(transport, "protocol", None)
    protocol = getattr(protocol, "_wrappedProtocol", protocol)  # endpoints wrap it
    parser = getattr(protocol, "_parser", None)
    conn = getattr(parser, "connHeaders", None)
    return conn.getRawHeaders(b"Connection") if conn is not None else None


def _describe(failure: Failure) -> GatewayError:
    """Map a failure of the upstream call (not a GatewayError) to what the client sees."""
    if failure.check(ConnectTimeoutError):
        return UpstreamTimeout("Connecting to the upstream service timed out.")
    if failure.check(ConnectError):
        return UpstreamUnavailable()
    return UpstreamUnavailable("The upstream service failed to answer.")


class Exchange:
    """The state of one request between the client and an upstream."""

    __slots__ = (
        "generation",
        "request",
        "proxy_request",
        "route",
        "target",
        "upstream_d",
        "upstream_response",
        "relay",
        "timer",
        "deadline",
        "timed_out",
        "client_gone",
        "answered",
        "request_id",
        "host_header",
    )

    def __init__(self, generation: "Generation", request: Any) -> None:
        self.generation = generation
        self.request = request
        self.proxy_request: Optional[ProxyRequest] = None
        self.route: Optional["Route"] = None
        self.target: Any = None
        self.upstream_d: Any = None
        self.upstream_response: Any = None
        self.relay: Optional[_BodyRelay] = None
        self.timer: Any = None
        self.deadline = 0.0
        self.timed_out = False
        self.client_gone = False
        self.answered = False
        self.request_id = ""
        self.host_header = b""

    # -- request path --------------------------------------------------

    def start(self) -> None:
        request = self.request
        generation = self.generation
        raw = request.requestHeaders._rawHeaders
        self.request_id = request_id_from(request.requestHeaders)
        request.notifyFinish().addBoth(self._finished)
        try:
            uri = request.uri
            path, _, query = uri.partition(b"?")
            if not path.startswith(b"/"):
                path, host_b = _absolute_form(path)
                if host_b is not None:
                    raw[b"Host"] = [host_b]
            hosts = raw.get(b"Host")
            if hosts is None or len(hosts) != 1:
                if request.clientproto == b"HTTP/1.1" or hosts:
                    raise BadRequest("Exactly one Host header is required.")
            host_raw = hosts[0] if hosts else b""
            host_s = host_raw.decode("latin-1") if host_raw else None
            path_s = normalize_path(path)  # InvalidPath is a BadRequest
            match = generation.routes.match(request.method.decode("latin-1"), host_s, path_s)
            if match is None:
                raise RouteNotFound()
        except GatewayError as error:
            self._answer_error(Failure(error), generation.global_plugins)
            return
        self.route = route = match.payload
        connection = raw.get(b"Connection")
        strip_hop_by_hop(raw, connection)
        for name in _DROP_FROM_REQUEST:
            raw.pop(name, None)
        peer = request.client.host if request.client is not None else ""
        scheme = "https" if request.isSecure() else "http"
        client_ip = generation.forwarding.apply(
            raw, peer=peer, scheme=scheme, host=host_raw, version=request.clientproto
        )
        raw[b"X-Request-Id"] = [self.request_id.encode("ascii")]
        self.proxy_request = ProxyRequest(
            method=request.method,
            path=match.rewritten_path,
            query=query,
            headers=request.requestHeaders,
            host=normalize_host(host_s) or "",
            client_ip=client_ip,
            peer_ip=peer,
            scheme=scheme,
            request_id=self.request_id,
            params=match.params,
            started=generation.clock.seconds(),
        )
        self.host_header = host_raw
        if route.plugins.empty:
            self._forward()
        else:
            route.plugins.on_request(self.proxy_request, route).addCallbacks(
                self._after_on_request, self._fail
            )

    def _after_on_request(self, answer: Optional[Response]) -> None:
        if self.client_gone:
            return
        if answer is not None:
            self._respond(answer.to_proxy_response())
        else:
            self._forward()

    def _forward(self) -> None:
        route = self.route
        preq = self.proxy_request
        assert route is not None and preq is not None
        upstream = route.upstream
        self.target = target = upstream.choose()
        raw = preq.headers._rawHeaders
        raw[b"Host"] = [self.host_header] if route.preserve_host else [target.host_header]
        body = _body_of(self.request)
        # One timer at a time: first the time to the response head (the
        # upstream's read timeout, capped by the route's total), then what is
        # left of the route's total for the body.
        clock = self.generation.clock
        self.deadline = clock.seconds() + route.timeout
        self.timer = clock.callLater(min(upstream.read_timeout, route.timeout), self._timeout)
        d = upstream.send(target, preq.method, preq.target, preq.headers, body)
        self.upstream_d = d
        d.addCallbacks(self._got_response, self._upstream_failed)

    def _timeout(self) -> None:
        self.timer = None
        self.timed_out = True
        if self.upstream_d is not None:
            self.upstream_d.cancel()
        elif self.relay is not None:
            # The head went out already: all that is left is to cut both ends.
            _log.warn(
                "request {request_id} exceeded its timeout while streaming; aborting",
                request_id=self.request_id,
            )
            self.relay.abort()

    def _upstream_failed(self, failure: Failure) -> None:
        self.upstream_d = None
        if self.client_gone:
            return
        if self.timed_out and failure.check(CancelledError, ResponseNeverReceived, ConnectingCancelledError):
            failure = Failure(UpstreamTimeout())
        elif not failure.check(GatewayError):
            _log.info(
                "upstream {target} failed for {request_id}: {reason}",
                target=self.target.url if self.target is not None else "?",
                request_id=self.request_id,
                reason=failure.getErrorMessage(),
            )
            failure = Failure(_describe(failure))
        self._fail(failure)

    # -- response path --------------------------------------------------

    def _got_response(self, response: Any) -> None:
        self.upstream_d = None
        if self.client_gone:
            _discard(response)
            return
        self.upstream_response = response
        self._cancel_timer()
        clock = self.generation.clock
        self.timer = clock.callLater(max(0.0, self.deadline - clock.seconds()), self._timeout)
        headers = response.headers
        raw = headers._rawHeaders
        strip_hop_by_hop(raw, upstream_connection_header(response))
        code = response.code
        if self.request.method != b"HEAD" and code not in _NO_BODY_STATUS and code >= 200:
            if response.length is not UNKNOWN_LENGTH:
                raw[b"Content-Length"] = [b"%d" % response.length]
        presp = ProxyResponse(status=code, reason=response.phrase, headers=headers, from_upstream=True)
        self._respond(presp)

    def _respond(self, presp: ProxyResponse) -> None:
        route = self.route
        if route is None or route.plugins.empty:
            self._send(presp)
        else:
            route.plugins.on_response(self.proxy_request, presp).addCallbacks(self._send, self._fail)

    def _send(self, presp: ProxyResponse) -> None:
        request = self.request
        upstream_response = self.upstream_response
        if self.client_gone or self.answered:
            if upstream_response is not None:
                _discard(upstream_response)
            return
        self.answered = True
        raw = presp.headers._rawHeaders
        raw[b"X-Request-Id"] = [self.request_id.encode("ascii")]
        via = raw.get(b"Via")
        raw[b"Via"] = [b", ".join(via) + b", " + self.generation.via] if via else [self.generation.via]
        if b"Date" not in raw:
            # RFC 9110 §6.6.1: a recipient with a clock forwarding a response
            # without Date adds one.
            raw[b"Date"] = [self.generation.http_date()]
        if request.channel is not None and not getattr(request.channel, "persistent", True):
            raw[b"Connection"] = [b"close"]
        request.setResponseCode(presp.status, presp.reason)
        request.responseHeaders = presp.headers
        if presp.from_upstream and upstream_response is not None:
            self.relay = _BodyRelay(self)
            upstream_response.deliverBody(self.relay)
            return
        if upstream_response is not None:
            _discard(upstream_response)  # replaced by a plugin
        body = presp.body or b""
        if not presp.headers.hasHeader(b"Content-Length") and presp.status not in _NO_BODY_STATUS:
            raw[b"Content-Length"] = [b"%d" % len(body)]
        self._cancel_timer()
        request.write(body)
        request.finish()

    def body_done(self, reason: Failure) -> None:
        """The upstream body ended: cleanly, or not."""
        self.relay = None
        self._cancel_timer()
        request = self.request
        if self.client_gone or request.finished:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            request.finish()
            return
        # The upstream broke off mid-body.  The status line is gone already:
        # the only honest signal left is to end the client's connection
        # without the terminating chunk, so the client sees the truncation.
        _log.warn(
            "upstream body for {request_id} failed: {reason}",
            request_id=self.request_id,
            reason=reason.getErrorMessage(),
        )
        if request.channel is not None and request.channel.transport is not None:
            request.channel.transport.abortConnection()

    # -- errors -----------------------------------------------------------

    def _fail(self, failure: Failure) -> None:
        if self.client_gone:
            return
        if self.answered:
            _log.failure("error after the response started ({request_id})", failure, request_id=self.request_id)
            self.body_done(failure)
            return
        plugins = self.route.plugins if self.route is not None else self.generation.global_plugins
        self._answer_error(failure, plugins)

    def _answer_error(self, failure: Failure, plugins: Any) -> None:
        self._cancel_timer()
        if not failure.check(GatewayError):
            _log.failure("unexpected error handling request {request_id}", failure, request_id=self.request_id)
        if plugins is None or plugins.empty:
            self._send_error(failure, None)
            return
        preq = self.proxy_request or self._bare_proxy_request()
        plugins.on_error(preq, failure).addCallbacks(
            lambda answer: self._send_error(failure, answer),
            lambda _: self._send_error(failure, None),
        )

    def _send_error(self, failure: Failure, answer: Optional[Response]) -> None:
        if self.client_gone or self.answered:
            return
        if answer is not None:
            self._send(answer.to_proxy_response())
            return
        self.answered = True
        send_error(self.request, failure.value if failure.check(GatewayError) else GatewayError(), self.request_id)

    def _bare_proxy_request(self) -> ProxyRequest:
        request = self.request
        path, _, query = request.uri.partition(b"?")
        return ProxyRequest(
            method=request.method,
            path=path.decode("latin-1"),
            query=query,
            headers=request.requestHeaders,
            peer_ip=request.client.host if request.client is not None else "",
            request_id=self.request_id,
        )

    # -- lifetime -------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _finished(self, result: Any) -> None:
        """The client's side is over: finished, or the client went away."""
        self.generation.exchange_done()
        if isinstance(result, Failure):
            self.client_gone = True
            self._cancel_timer()
            if self.upstream_d is not None:
                d, self.upstream_d = self.upstream_d, None
                d.cancel()
            if self.relay is not None:
                self.relay.abort()
            body = getattr(self.request, "body", None)
            if body is not None:
                self.request.body = None
                body.abort(BodyAborted("client went away"))


class _BodyRelay(Protocol):
    """
    Streams the upstream body to the client.  The upstream transport is
    registered as the client request's producer, so a slow client pauses the
    upstream socket (back-pressure) and memory stays flat.
    """

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.request = exchange.request

    def connectionMade(self) -> None:
        self.request.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self.request.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        request = self.request
        if request.producer is not None and request.channel is not None:
            request.unregisterProducer()
        self.exchange.body_done(reason)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class _Discard(Protocol):
    def connectionMade(self) -> None:
        self.transport.stopProducing()


def _discard(response: Any) -> None:
    """Drop an upstream response nobody will read (its connection is closed)."""
    try:
        response.deliverBody(_Discard())
    except Exception:  # pragma: no cover - already delivered
        pass


def _body_of(request: Any) -> Any:
    """
    The body producer for the upstream request: the streaming body of an
    HTTP/1.1 `GatewayRequest`, or (HTTP/2 and in-memory test requests, whose
    body Twisted has already read, size-limited) the buffered content.
    """
    body = getattr(request, "body", None)
    if body is not None or getattr(request, "streaming", False):
        return body
    content = request.content
    if content is None:
        return None
    data = content.read()
    return BytesBody(data) if data else None


def _absolute_form(target: bytes) -> "tuple[bytes, Optional[bytes]]":
    """
    RFC 9112 §3.2.2: a server must accept an absolute-form target; its
    authority replaces the Host header.  Anything else that does not start
    with `/` is not a valid target for a gateway.
    """
    lower = target[:8].lower()
    for prefix in (b"http://", b"https://"):
        if lower.startswith(prefix):
            rest = target[len(prefix) :]
            authority, slash, path = rest.partition(b"/")
            if not authority:
                break
            return slash + path if slash else b"/", authority
    raise BadRequest("The request target must be an absolute path.")
