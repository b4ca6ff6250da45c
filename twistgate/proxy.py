"""
One request's way through the gateway: route, stages and plugins, upstream,
and the response streamed back.

`Exchange` is a small state machine driven by Deferred callbacks (no
coroutines on the hot path: a callback chain is cheaper).  Invariants:
exactly one of the response path or the error path answers; nothing is
written after the client left or after `finish()`; a client that goes away
cancels the upstream call or stops the upstream body; upstream failures map
to 502/504 with the JSON error body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.errors import BadRequest, GatewayError, RouteNotFound, UpstreamTimeout
from twistgate.exchange import ProxyRequest, ProxyResponse, Response
from twistgate.http import request_id_from, strip_hop_by_hop
from twistgate.pathnorm import normalize_path
from twistgate.record import ExchangeRecord
from twistgate.routing import normalize_host
from twistgate.server import send_error
from twistgate.tls import TLS_CONNECTION, tls_connection
from twistgate.upstream.body import BodyAborted, BytesBody
from twistgate.upstream.group import UpstreamCall

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


class Exchange:
    """The state of one request between the client and an upstream."""

    __slots__ = (
        "generation",
        "request",
        "proxy_request",
        "route",
        "call",
        "upstream_d",
        "upstream_response",
        "response",
        "relay",
        "timer",
        "timed_out",
        "client_gone",
        "answered",
        "request_id",
        "host_header",
        "error",
    )

    def __init__(self, generation: "Generation", request: Any) -> None:
        self.generation = generation
        self.request = request
        self.proxy_request: Optional[ProxyRequest] = None
        self.route: Optional["Route"] = None
        self.call: Optional[UpstreamCall] = None
        self.upstream_d: Any = None
        self.upstream_response: Any = None
        self.response: Optional[ProxyResponse] = None
        self.relay: Optional[_BodyRelay] = None
        self.timer: Any = None
        self.timed_out = False
        self.client_gone = False
        self.answered = False
        self.request_id = ""
        self.host_header = b""
        self.error: Optional[GatewayError] = None

    # -- request path --------------------------------------------------

    def start(self) -> None:
        request = self.request
        generation = self.generation
        raw = request.requestHeaders._rawHeaders
        self.request_id = request_id_from(request.requestHeaders)
        request.notifyFinish().addBoth(self._finished)
        try:
            path, _, query = request.uri.partition(b"?")
            if not path.startswith(b"/"):
                path, raw[b"Host"] = _absolute_form(path)
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
        strip_hop_by_hop(raw, raw.get(b"Connection"))
        for name in _DROP_FROM_REQUEST:
            raw.pop(name, None)
        peer = request.client.host if request.client is not None else ""
        scheme = "https" if request.isSecure() else "http"
        client_ip = generation.forwarding.apply(raw, peer=peer, scheme=scheme, host=host_raw, version=request.clientproto)
        raw[b"X-Request-Id"] = [self.request_id.encode("ascii")]
        self.host_header = host_raw
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
        if scheme == "https":  # for twistgate.tls.peer_identity (mTLS)
            self.proxy_request.state[TLS_CONNECTION] = tls_connection(request)
        if getattr(request, "streaming", False) or getattr(request, "received_bytes", 0):
            self.proxy_request.state["request_body"] = True  # the cache cannot key a body (twistgate.policies.cache)
        # One timer bounds the whole upstream exchange (route timeout); the
        # upstream bounds each attempt's wait for the head (read timeout).
        self.timer = generation.clock.callLater(route.timeout, self._timeout)
        if route.plugins.empty:
            self._forward()
        else:
            _then(route.plugins.on_request(self.proxy_request, route), self._after_on_request, self._fail)

    def _after_on_request(self, answer: Optional[Response]) -> None:
        if self.client_gone or self.answered:
            return  # the client left, or the route timeout answered meanwhile
        if answer is not None:
            self._respond(answer.to_proxy_response())
        else:
            self._forward()

    def _forward(self) -> None:
        route = self.route
        assert route is not None and self.proxy_request is not None
        if route.preserve_host:
            self.proxy_request.headers._rawHeaders[b"Host"] = [self.host_header]
        self.call = UpstreamCall()
        d = route.upstream.forward(self.proxy_request, _body_of(self.request), self.call, route.preserve_host, route.config)
        self.upstream_d = d
        d.addCallbacks(self._got_response, self._upstream_failed)

    def _timeout(self) -> None:
        self.timer = None
        self.timed_out = True
        if self.upstream_d is not None:
            self.upstream_d.cancel()
        elif self.relay is not None:
            # The head went out already: all that is left is to cut both ends.
            _log.warn("request {request_id} exceeded its route timeout while streaming; aborting", request_id=self.request_id)
            self.relay.abort()
        elif not self.answered:
            # Still in on_request / on_response (a slow plugin).
            self._fail(Failure(UpstreamTimeout("The request did not complete in time.")))

    def _upstream_failed(self, failure: Failure) -> None:
        self.upstream_d = None
        if self.client_gone:
            return
        if self.timed_out:
            failure = Failure(UpstreamTimeout())
        elif not failure.check(GatewayError):
            failure = Failure(GatewayError())
        self._fail(failure)

    # -- response path --------------------------------------------------

    def _got_response(self, response: Any) -> None:
        self.upstream_d = None
        if self.client_gone:
            _discard(response)
            return
        self.upstream_response = response
        raw = response.headers._rawHeaders
        strip_hop_by_hop(raw, upstream_connection_header(response))
        code = response.code
        if self.request.method != b"HEAD" and code not in _NO_BODY_STATUS and code >= 200:
            if response.length is not UNKNOWN_LENGTH:
                raw[b"Content-Length"] = [b"%d" % response.length]
        self._respond(ProxyResponse(status=code, reason=response.phrase, headers=response.headers, from_upstream=True))

    def _respond(self, presp: ProxyResponse) -> None:
        route = self.route
        if route is None or route.plugins.empty:
            self._send(presp)
        else:
            _then(route.plugins.on_response(self.proxy_request, presp), self._send, self._fail)

    def _send(self, presp: ProxyResponse) -> None:
        request = self.request
        upstream_response = self.upstream_response
        if self.client_gone or self.answered:
            if upstream_response is not None:
                _discard(upstream_response)
            return
        self.answered = True
        self.response = presp
        generation = self.generation
        raw = presp.headers._rawHeaders
        raw[b"X-Request-Id"] = [self.request_id.encode("ascii")]
        via = raw.get(b"Via")
        raw[b"Via"] = [b", ".join(via) + b", " + generation.via] if via else [generation.via]
        if b"Date" not in raw:
            # RFC 9110 §6.6.1: a recipient with a clock forwarding a response
            # without Date adds one.
            raw[b"Date"] = [generation.http_date()]
        if request.channel is not None and not getattr(request.channel, "persistent", True):
            raw[b"Connection"] = [b"close"]
        request.setResponseCode(presp.status, presp.reason)
        request.responseHeaders = presp.headers
        filters = presp.body_filters
        if presp.from_upstream and upstream_response is not None:
            self.relay = _BodyRelay(self, filters)
            upstream_response.deliverBody(self.relay)
            return
        if upstream_response is not None:
            _discard(upstream_response)  # replaced by a plugin
        body = presp.body or b""
        if filters:
            body = _run_filters(filters, body, final=True)
        if b"Content-Length" not in raw and presp.status not in _NO_BODY_STATUS:
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
        if self.upstream_d is not None:
            d, self.upstream_d = self.upstream_d, None
            d.cancel()
        if self.upstream_response is not None:
            _discard(self.upstream_response)  # e.g. on_response failed: its body is not wanted
            self.upstream_response = None
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
        self.error = failure.value if failure.check(GatewayError) else GatewayError()
        if answer is not None:
            self._send(answer.to_proxy_response())
            return
        self.answered = True
        send_error(self.request, self.error, self.request_id)

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
        generation = self.generation
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
        if generation.observers:
            record = ExchangeRecord.of(self, generation.clock.seconds())
            for observe in generation.observers:
                try:
                    observe(record)
                except Exception:
                    _log.failure("exchange observer {observer!r} failed", observer=observe)
        generation.exchange_done()


class _BodyRelay(Protocol):
    """
    Streams the upstream body to the client.  The upstream transport is
    registered as the client request's producer, so a slow client pauses the
    upstream socket (back-pressure) and memory stays flat.  Body filters
    (compression, cache capture) see every chunk on the way.
    """

    def __init__(self, exchange: Exchange, filters: Optional[List[Any]]) -> None:
        self.exchange = exchange
        self.request = exchange.request
        self.filters = filters or None

    def connectionMade(self) -> None:
        self.request.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        if self.filters is not None:
            data = _run_filters(self.filters, data, final=False)
            if not data:
                return
        self.request.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        request = self.request
        if request.producer is not None and request.channel is not None:
            request.unregisterProducer()
        if self.filters is not None and reason.check(ResponseDone, PotentialDataLoss):
            tail = _run_filters(self.filters, b"", final=True)
            if tail and not request.finished and not self.exchange.client_gone:
                request.write(tail)
        elif self.filters is not None:
            for body_filter in self.filters:
                abort = getattr(body_filter, "abort", None)
                if abort is not None:
                    abort()
        self.exchange.body_done(reason)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


def _then(d: Any, callback: Any, errback: Any) -> None:
    """
    Continue with `d`'s result: at once when the stages and plugins answered
    synchronously (an already-fired Deferred: the common case), without
    adding callbacks to it; otherwise when it fires.
    """
    if d.called and not d.paused and not isinstance(d.result, Failure):
        callback(d.result)
    else:
        d.addCallbacks(callback, errback)


def _run_filters(filters: List[Any], data: bytes, *, final: bool) -> bytes:
    """Pass `data` through each body filter in order; `final` flushes them."""
    for body_filter in filters:
        data = body_filter.write(data) if data else b""
        if final:
            data += body_filter.finish()
    return data


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


def _absolute_form(target: bytes) -> "tuple[bytes, list]":
    """
    RFC 9112 §3.2.2: a server must accept an absolute-form target; its
    authority replaces the Host header.  Anything else that does not start
    with `/` is not a valid target for a gateway.
    """
    lower = target[:8].lower()
    for prefix in (b"http://", b"https://"):
        if lower.startswith(prefix):
            authority, slash, path = target[len(prefix) :].partition(b"/")
            if authority:
                return (slash + path if slash else b"/"), [authority]
    raise BadRequest("The request target must be an absolute path.")
