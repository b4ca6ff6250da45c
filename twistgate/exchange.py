"""
One request's way through the gateway, top to bottom:

1. **accept**: the engine hands over a `Downstream` (the request head; the
   body streams behind it);
2. **route**: the target and Host are checked, the path normalised and
   matched against the generation's route table;
3. **policies, then plugins** (``on_request``): the route's chain as
   `twistgate.chain` builds it; any layer may answer instead of the upstream
   (a route without layers but tracing skips the chain: its forwarding
   fields and trace go upstream as prepared lines, `Route.bare`; a route
   whose layers never look at the forwarding fields sends them prepared
   too, `Route.prepared_forwarding`);
4. **choose target, forward**: `Upstream.forward` (balancer, breakers,
   retries, timeouts) sends the request and fires with the response head;
5. **respond**: the layers see the head in reverse order (``on_response``),
   then the body streams to the client (`twistgate.exchange_respond`,
   `twistgate.relay`).

`Exchange` is a small state machine driven by Deferred callbacks (no
coroutines on the hot path: a callback chain is cheaper, and synchronous
layers cost no reactor turn).  Invariants: exactly one of the response path
or the error path answers; nothing is written after the client left or
after the answer finished; a client that goes away cancels the upstream
call or stops the upstream body; upstream failures map to 502/503/504 with
the JSON error body; every callback chain ends in an errback that logs the
request id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.conditions import RequestFacts
from twistgate.errors import GatewayError, RouteNotFound, UpstreamTimeout
from twistgate.exchange_answers import OwnAnswers
from twistgate.exchange_respond import ResponsePath
from twistgate.fieldnames import FieldNames
from twistgate.grpc import is_grpc, parse_timeout
from twistgate.headers import Headers
from twistgate.http import HOP_BY_HOP, request_id_of, strip_hop_by_hop
from twistgate.messages import ProxyRequest, ProxyResponse, Response
from twistgate.record import ExchangeRecord
from twistgate.relay import BodyRelay
from twistgate.request_target import split_target
from twistgate.routing import host_forms
from twistgate.tls import TLS_CONNECTION, tls_connection
from twistgate.upstream.body import BodyAborted
from twistgate.upstream.group import UpstreamCall

if TYPE_CHECKING:
    from twistgate.engine.api import Downstream
    from twistgate.generation import Generation, Route

_log = Logger()

# Not hop-by-hop by the RFC, but never passed on as received: the gateway
# answers `Expect: 100-continue` itself, the client side frames the body
# (its own Content-Length / Transfer-Encoding), and Host and X-Request-ID are
# set by the gateway.  (Host, nearly always there, is taken out on its own:
# the others, and the hop-by-hop fields, are found with one set operation.)
_DROP_FROM_REQUEST = FieldNames(HOP_BY_HOP | {b"Expect", b"Content-Length", b"X-Request-Id"})


class Exchange(ResponsePath, OwnAnswers):
    """The state of one request between the client and an upstream."""

    __slots__ = (
        "generation", "downstream", "proxy_request", "route", "call", "upstream_d", "upstream_response",
        "response", "relay", "timer", "due", "timed_out", "client_gone", "answered", "request_id", "host_header", "error",
        "grpc", "grpc_status", "raw_params", "client_path",
    )  # fmt: skip

    #: A WebSocket handshake (`twistgate.websocket.exchange.UpgradeExchange`): its upgrade fields go upstream.
    websocket = False

    def __init__(self, generation: "Generation", downstream: "Downstream") -> None:
        self.generation = generation
        self.downstream = downstream
        self.proxy_request: Optional[ProxyRequest] = None
        self.route: Optional["Route"] = None
        self.call: Optional[UpstreamCall] = None
        self.upstream_d: Any = None
        self.upstream_response: Any = None
        self.response: Optional[ProxyResponse] = None
        self.relay: Optional[BodyRelay] = None
        self.timer: Any = None  # the route timeout's, once armed (`arm_route`)
        self.due = 0.0  # when the route timeout expires
        self.timed_out = False
        self.client_gone = False
        self.answered = False
        self.error: Optional[GatewayError] = None
        self.grpc_status: Optional[int] = None
        # (`start` sets the rest first: request_id and grpc; host_header, raw_params and client_path once routed.)

    # -- 1-3: accept, route, policies and plugins -----------------------------

    def start(self) -> None:
        downstream = self.downstream
        generation = self.generation
        headers = downstream.headers
        raw = headers.raw
        self.request_id = request_id_of(raw.get(b"X-Request-Id"))
        self.grpc = b"Content-Type" in raw and is_grpc(headers)  # (a gRPC call: the gateway's own answers are gRPC-shaped)
        when_finished = getattr(downstream, "when_finished", None)
        if when_finished is not None:  # the HTTP/1.1 engine: a callback, no Deferred
            when_finished(self._finished)
        else:
            downstream.notify_finish().addBoth(self._finished).addErrback(self._crashed)
        listener = downstream.listener
        try:
            path, query, host_raw = split_target(downstream.path, downstream.query, raw.get(b"Host"), downstream.version)
            if generation.https_redirects and listener in generation.https_redirects:
                self._to_https(host_raw, generation.https_redirects[listener], path, query)  # before routing
                return
            host_s, host = host_forms(host_raw)
            routes = generation.routes
            facts = RequestFacts(headers, query) if routes.conditional else None
            # The path normalised (InvalidPath is a BadRequest) and matched.
            path_s, match = routes.resolve(downstream.method, path, host_s, listener, facts)
            if match is None:
                raise RouteNotFound()
        except GatewayError as error:
            self._answer_error(Failure(error), generation.global_plugins)
            return
        self.route = route = match.payload
        self.raw_params = match.raw_params
        self.client_path = path_s
        connection = raw.get(b"Connection")
        if connection is not None:  # (else no field is named by it: `_DROP_FROM_REQUEST` takes the hop-by-hop ones)
            strip_hop_by_hop(raw, connection)
        raw.pop(b"Host", None)
        if not _DROP_FROM_REQUEST.isdisjoint(raw):
            for name in _DROP_FROM_REQUEST.intersection(raw):
                del raw[name]
        peer = downstream.client[0]
        secure = downstream.secure
        scheme = "https" if secure else "http"
        prepared = None
        if route.prepared_forwarding and not self.websocket:
            prepared = generation.forwarding.block(raw, peer, scheme, host_raw, downstream.version)
        if prepared is None:
            client_ip = generation.forwarding.apply(raw, peer, scheme, host_raw, downstream.version)
        else:
            client_ip = peer  # (`block` is for an untrusted peer only)
        raw[b"X-Request-Id"] = [self.request_id.encode("ascii")]
        self.host_header = host_raw
        now = generation.clock.seconds()
        # Positional, in the order of `ProxyRequest.__init__`: one is made per request.
        request = self.proxy_request = ProxyRequest(
            downstream.method,
            match.rewritten_path,
            query,
            headers,
            host,
            client_ip,
            peer,
            scheme,
            self.request_id,
            match.params or {},  # a fresh dict: a resolved match is shared (RouteTable.resolve)
            None,  # consumer
            now,  # started
            path + b"?" + query if query else path,  # uri: origin form, even for an absolute-form target
            route.info,
        )
        if self.websocket:
            self._keep_handshake(raw, request)  # type: ignore[attr-defined]
        if secure:  # for twistgate.tls.peer_identity (mTLS)
            request.state[TLS_CONNECTION] = tls_connection(downstream.transport)
        if downstream.body is not None:
            request.state["request_body"] = True  # the cache cannot key a body (twistgate.policies.cache)
            if not self._body_allowed(route.max_request_body):
                return
        # The route timeout bounds the whole upstream exchange; the upstream
        # bounds each attempt's wait for the head (read timeout).  Its timer
        # is armed only when something waits (`arm_route`): while an attempt
        # waits for the head, that attempt's read timer stands for it.
        timeout = route.timeout
        if self.grpc:
            # The call's deadline bounds the route's timeout (DEADLINE_EXCEEDED when it passes).
            deadline = parse_timeout(raw.get(b"Grpc-Timeout", (None,))[0])
            if deadline is not None and deadline < timeout:
                timeout = deadline
        self.due = now + timeout
        if route.bare:  # no layer but tracing, which the exchange does itself
            tracer = route.trace
            if prepared is not None:
                # The forwarding fields (and the trace's, as the last line) go upstream as ready lines.
                if tracer is None:
                    request.prepared_fields = prepared
                else:
                    tracer.begin_prepared(request, prepared)
            elif tracer is not None:
                request.state["trace"] = tracer.begin(headers)
            self._forward()
            return
        if prepared is not None:  # no layer reads or edits them (`twistgate.chain.forwarding_blind`)
            request.prepared_fields = prepared
        if route.chain.empty:
            self._forward()
            return
        try:
            answer = route.chain.on_request_now(request, route.info)
        except GatewayError:
            self._fail(Failure())
            return
        # (Deferred's metaclass is ABCMeta: the usual None is ruled out first.)
        if answer is not None and isinstance(answer, Deferred):
            self.arm_route()
            answer.addCallbacks(self._after_on_request, self._fail).addErrback(self._crashed)
        else:
            self._after_on_request(answer)

    def _after_on_request(self, answer: Optional[Response]) -> None:
        if self.client_gone or self.answered:
            return  # the client left, or the route timeout answered meanwhile
        if answer is not None:
            self._respond(answer.to_proxy_response())
        else:
            self._forward()

    # -- 4: choose a target and forward -------------------------------------------

    def _forward(self) -> None:
        route = self.route
        request = self.proxy_request
        assert route is not None and request is not None
        if route.destination is None:
            # redirect / respond: the gateway answers, through the same layers.
            self._respond(route.answer.response(request, self.raw_params, self.host_header, self.client_path))
            return
        if route.preserve_host:
            request.headers.raw[b"Host"] = [self.host_header]
        downstream = self.downstream
        if downstream.expects_continue:
            downstream.send_interim(100, Headers())  # decided to forward: the client may send its body now
        body = downstream.body
        if body is not None and not downstream.body_complete and self.generation.config.limits.request_buffering:
            # Read the whole body before choosing a target: a slow upload
            # holds no upstream connection (nginx's proxy_request_buffering).
            self.arm_route()
            body.whole().addCallbacks(self._send_upstream, lambda _: None).addErrback(self._crashed)
            return
        self._send_upstream()

    def _send_upstream(self, _: Any = None) -> None:
        route = self.route
        assert route is not None and self.proxy_request is not None
        if self.client_gone or self.answered:
            return
        self.call = UpstreamCall(self._interim, self)
        forwarding = route.start_forward(
            self.proxy_request, self.downstream.body, self.call, route.preserve_host, route.config,
            self._got_response_checked, self._upstream_failed_checked,
        )
        if not forwarding.done:  # else it answered already (no target left: 503)
            self.upstream_d = forwarding

    def _got_response_checked(self, response: Any) -> None:
        try:
            self._got_response(response)
        except Exception:
            self._crashed(Failure())

    def _upstream_failed_checked(self, failure: Failure) -> None:
        try:
            self._upstream_failed(failure)
        except Exception:
            self._crashed(Failure())

    def _interim(self, status: int, headers: Any) -> None:
        """An upstream 1xx: 103 Early Hints (and other informational answers) go to the client at once."""
        if status in (100, 101) or self.client_gone or self.answered:
            return  # the gateway answers Expect itself; 101 is never interim here
        strip_hop_by_hop(headers.raw, headers.raw.get(b"Connection"))
        self.downstream.send_interim(status, headers)

    def arm_route(self, timers: Any = None) -> None:
        """
        Start the route timeout's timer (at `due`) for a wait, unless it runs
        already or the client left; on the upstream's `timers` when given:
        its attempts' timers keep that one's `DelayedCall` armed, where the
        gateway's would be armed and cancelled anew for each relayed body.
        """
        if self.timer is None and not self.client_gone:
            self.timer = (self.generation.timers if timers is None else timers).call_at(self.due, self._timeout)

    def route_expired(self) -> None:
        """The route timeout, reported by an attempt's read timer standing for it (`twistgate.upstream.watch`)."""
        self._timeout()

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
        if self.client_gone or self.answered:
            return
        if self.timed_out:
            failure = Failure(UpstreamTimeout())
        elif not failure.check(GatewayError):
            _log.failure("unexpected upstream failure for {request_id}", failure, request_id=self.request_id)
            failure = Failure(GatewayError())
        self._fail(failure)

    # -- lifetime -------------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _finished(self, result: Any) -> None:
        """The client's side is over: answered, or the client went away.  (A bug here is logged, never raised to the engine.)"""
        try:
            generation = self.generation
            request = self.proxy_request
            if request is not None and request.finishers:
                request.run_done()  # what layers hold for the request (concurrency slots)
            if result is not None and isinstance(result, Failure):  # (None: answered; the usual case asks no more)
                if result.check(GatewayError) and not self.answered:
                    # The engine answered itself (413, 408, 400 mid-body): an
                    # answer, not a client that left.
                    self.answered = True
                    self.error = result.value
                else:
                    self.client_gone = True
                self._cancel_timer()
                if self.upstream_d is not None:
                    d, self.upstream_d = self.upstream_d, None
                    d.cancel()
                if self.relay is not None:
                    self.relay.abort()
                body = self.downstream.body
                if body is not None and not self.downstream.body_complete:
                    body.abort(BodyAborted("client went away"))
            if generation.observers:
                record = ExchangeRecord.of(self, generation.clock.seconds())
                for observe in generation.observers:
                    try:
                        observe(record)
                    except Exception:
                        _log.failure("exchange observer {observer!r} failed", observer=observe)
            # No reference cycles outlive the exchange: refcounting frees it at
            # once, and the cyclic collector has nothing of it to find.
            if self.call is not None:
                self.call.interim = self.call.deadline = None
            if self.relay is None:
                self.upstream_response = None
            generation.inflight.done()  # (counted in by `GatewayResource.render`)
        except Exception:
            self._crashed(Failure())

