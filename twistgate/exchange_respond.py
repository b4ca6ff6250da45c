"""
Step 5 of an `Exchange` (`twistgate.exchange`): the response's way back.

The upstream's head is cleaned for the client (hop-by-hop fields, the
codings the gateway relays, a known length), passes the route's layers in
reverse (``on_response``), and goes out with the gateway's own fields (the
request id, Via, Date); the body then streams through a `BodyRelay` and the
upstream's trailers follow it.  A small answer whose body came in the same
read as its head (`UpstreamResponse.whole_body`) goes out in one `respond`
instead, when nothing needs the body's way (no body filter, not gRPC, not a
stream, an engine that says it `answers_whole`).  Kept apart from the request's way in
because it is the half a response-shaping change touches, and the half
`twistgate.websocket.exchange` extends (a 101 and its hand-over).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.errors import GatewayError
from twistgate.grpc import STATUS as GRPC_STATUS
from twistgate.grpc import status_of, status_trailers
from twistgate.headers import Headers, fields_into
from twistgate.http import relayed_reason, strip_hop_by_hop
from twistgate.messages import ProxyResponse
from twistgate.relay import BodyRelay, applied_codings, body_ended_cleanly, discard, forwarded_trailers, is_stream, run_filters

__all__ = ["ResponsePath"]

_log = Logger()
_NO_BODY_STATUS = frozenset({204, 304})


class ResponsePath:
    """How an `Exchange` answers with a response (its attributes are the exchange's)."""

    __slots__ = ()

    def _got_response(self, response: Any) -> None:
        self.upstream_d = None
        if self.client_gone:
            discard(response)
            return
        self.upstream_response = response
        headers = response.headers
        raw = headers.raw
        codings = raw[b"Transfer-Encoding"] if b"Transfer-Encoding" in raw else None  # (usually none: no call then)
        strip_hop_by_hop(raw, raw.get(b"Connection"))
        if codings is not None:
            applied_codings(raw, codings)  # an unknown coding the gateway cannot undo is passed on, not dropped
        code = response.code
        if self.grpc:
            self.grpc_status = status_of(headers)  # a trailers-only answer carries it here
        if self.downstream.method != b"HEAD" and code not in _NO_BODY_STATUS and code >= 200:
            if response.length is not UNKNOWN_LENGTH and response.length is not None:
                raw[b"Content-Length"] = [b"%d" % response.length]
        route = self.route
        if route is not None and route.destination is not None and route.destination.sticky is not None:
            route.destination.answered(self.proxy_request, self.call, headers)
        reason = relayed_reason(response.phrase)
        if self.websocket or route is None or route.responds:
            lines_of = None if self.websocket or route is None else route.chain.response_lines
            if lines_of is None:
                # (status, headers, reason, body, from_upstream)
                self._respond(ProxyResponse(code, headers, reason, None, True))
                return
            prepared = lines_of(self.proxy_request, raw)  # the one layer on the way back only adds ready lines
        else:
            prepared = b""
        # No layer sees the answer but as ready lines (and no WebSocket's handshake): no `ProxyResponse` for it.
        if self.answered:
            discard(response)
            return
        self.answered = True
        if b"Date" not in raw:
            raw[b"Date"] = [self.generation.http_date()]  # (as `_send`)
        self._relay(code, reason, headers, None, prepared)

    def _respond(self, response: ProxyResponse) -> None:
        route = self.route
        if route is None or not route.responds:
            self._send(response)
            return
        try:
            answer = route.chain.on_response_now(self.proxy_request, response)
        except GatewayError:
            self._fail(Failure())
            return
        if answer.__class__ is not ProxyResponse and isinstance(answer, Deferred):
            self.arm_route()
            answer.addCallbacks(self._send, self._fail).addErrback(self._crashed)
        else:
            self._send(answer)

    def _send(self, response: ProxyResponse) -> None:
        upstream_response = self.upstream_response
        if self.client_gone or self.answered:
            if upstream_response is not None:
                discard(upstream_response)
            return
        self.answered = True
        self.response = response
        raw = response.headers.raw
        if b"Date" not in raw:
            # RFC 9110 §6.6.1: a recipient with a clock forwarding a response
            # without Date adds one.
            raw[b"Date"] = [self.generation.http_date()]
        filters = response.body_filters
        if response.from_upstream and upstream_response is not None:
            self._relay(response.status, response.reason, response.headers, filters, response.prepared_fields)
            return
        if upstream_response is not None:
            discard(upstream_response)  # replaced by a plugin
        self._own_fields(raw)
        body = response.body or b""
        if filters:
            body = run_filters(filters, body, final=True)
        self._cancel_timer()
        self.downstream.respond(response.status, response.reason, response.headers, body)

    def _relay(self, status: int, reason: Optional[bytes], headers: Headers, filters: Any, prepared: bytes) -> None:
        """
        The upstream's answer to the client (answered already): in one write when its body came
        with the head, else the head then the body as it streams (`BodyRelay`).
        """
        downstream = self.downstream
        upstream_response = self.upstream_response
        generation = self.generation
        raw = headers.raw
        if not self.grpc and is_stream(upstream_response.length, raw):
            self._cancel_timer()  # a stream: the route timeout bounded its head; the read timeout watches its gaps
            generation.streams.add(self)  # a reload's drain may end it (twistgate.websocket.hub)
        else:
            whole = None if filters or self.grpc else getattr(upstream_response, "whole_body", None)
            if whole is not None and getattr(downstream, "answers_whole", False):
                # The body came with the head: one answer, no body protocol, no producer,
                # and the gateway's own fields and a layer's prepared ones as ready lines
                # for the engine's head writer.
                upstream_response.took_whole()
                if self.timer is not None:
                    self._cancel_timer()
                lines = self._own_lines(raw)
                if prepared:
                    lines += prepared
                downstream.respond(status, reason, headers, whole, lines)
                return
            self.arm_route(getattr(upstream_response, "timers", None))  # the route timeout bounds the body too
        if prepared and self.response is None:
            fields_into(raw, prepared)  # (a layer's lines with no `ProxyResponse` to spell them out: `_got_response`)
        self._own_fields(raw)
        downstream.write_head(status, reason, headers)
        self.relay = BodyRelay(downstream, filters, self._body_done)
        upstream_response.deliverBody(self.relay)

    def _own_fields(self, raw: Any) -> None:
        """
        The gateway's own fields of every answer: its request id (the upstream's replaced) and Via (continued);
        and the fields a layer prepared as lines (`ProxyResponse.prepared_fields`, of `self.response`, whose
        ``raw`` this is, when a layer saw the answer), spelled out: every answer but the one-write one goes
        out from the fields.
        """
        response = self.response
        if response is not None and response.prepared_fields:
            response.spell_out_fields()
        raw[b"X-Request-Id"] = [self.request_id.encode("ascii")]
        via = raw.get(b"Via")
        raw[b"Via"] = [b", ".join(via) + b", " + self.generation.via] if via else [self.generation.via]

    def _own_lines(self, raw: Any) -> bytes:
        """`_own_fields` as ready header lines (taken out of ``raw``), for an engine that writes them itself."""
        if b"X-Request-Id" in raw:
            del raw[b"X-Request-Id"]
        via = raw.pop(b"Via") if b"Via" in raw else None  # (the usual upstream sends none: no call then)
        own = self.generation.via
        return b"X-Request-Id: %s\r\nVia: %s\r\n" % (self.request_id.encode("ascii"), b", ".join(via) + b", " + own if via else own)

    def _body_done(self, reason: Failure) -> None:
        """The upstream body ended: cleanly, or not."""
        self.relay = None
        if self.client_gone:
            self.upstream_response = None
        self.generation.streams.discard(self)
        self._cancel_timer()
        downstream = self.downstream
        if self.client_gone or downstream.finished:
            return
        if body_ended_cleanly(reason):
            downstream.finish(self._trailers())
            return
        if self.timed_out and self.grpc:
            # The call's deadline passed mid-stream: end it as gRPC does.
            self.grpc_status = GRPC_STATUS["DEADLINE_EXCEEDED"]
            downstream.finish(status_trailers(self.grpc_status, "Deadline Exceeded"))
            return
        # The upstream broke off mid-body.  The status line is gone already:
        # the only honest signal left is to end the client's connection
        # without the terminating chunk, so the client sees the truncation.
        _log.warn(
            "upstream body for {request_id} failed: {reason}",
            request_id=self.request_id,
            reason=reason.getErrorMessage(),
        )
        downstream.abort()

    def _trailers(self) -> Optional[Headers]:
        """The upstream response's trailer fields, as forwarded; a gRPC call's status from them."""
        trailers = forwarded_trailers(self.upstream_response)
        if trailers is not None and self.grpc:
            status = status_of(trailers)
            if status is not None:
                self.grpc_status = status
        return trailers
