"""
The answers the gateway makes itself on an `Exchange`'s behalf
(`twistgate.exchange`): the error path, ``redirect_https``, an early 413.

The error path is one way to fail.
Anything raised or failed in a layer, the upstream or the gateway itself
reaches `_fail`; before the answer started, the route's ``on_error`` layers
may answer instead, else the gateway answers with its JSON error body (or,
for a gRPC call, a gRPC-shaped trailers-only answer).  After the answer
started, the only honest signal left is to cut the connection.  A bug is
logged with the request id by `_crashed`, the last errback of every chain.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.answers import https_redirect
from twistgate.errors import GatewayError, PayloadTooLarge, error_response
from twistgate.grpc import code_for, error_response as grpc_error_response
from twistgate.messages import ProxyRequest, Response
from twistgate.relay import discard

__all__ = ["OwnAnswers"]

_log = Logger()


class OwnAnswers:
    """What an `Exchange` answers itself (its attributes are the exchange's)."""

    __slots__ = ()

    def _fail(self, failure: Failure) -> None:
        if self.client_gone:
            return
        if self.answered:
            _log.failure("error after the response started ({request_id})", failure, request_id=self.request_id)
            if self.relay is not None:
                self.relay.abort()
            else:
                self._body_done(failure)
            return
        chain = self.route.chain if self.route is not None else self.generation.global_plugins
        self._answer_error(failure, chain)

    def _answer_error(self, failure: Failure, chain: Any) -> None:
        self._cancel_timer()
        if self.upstream_d is not None:
            d, self.upstream_d = self.upstream_d, None
            d.cancel()
        if self.upstream_response is not None:
            discard(self.upstream_response)  # e.g. on_response failed: its body is not wanted
            self.upstream_response = None
        if not failure.check(GatewayError):
            _log.failure("unexpected error handling request {request_id}", failure, request_id=self.request_id)
        if self.route is None and self.generation.own_answers.stages and failure.check(GatewayError):
            self.generation.own_answers.on_error(self._bare_request(), failure)  # `defaults` headers
        if chain is None or chain.empty:
            self._send_error(failure, None)
            return
        request = self.proxy_request or self._bare_request()
        chain.on_error(request, failure).addCallbacks(
            lambda answer: self._send_error(failure, answer),
            lambda _: self._send_error(failure, None),
        ).addErrback(self._crashed)

    def _send_error(self, failure: Failure, answer: Optional[Response]) -> None:
        if self.client_gone or self.answered:
            return
        self.error = failure.value if failure.check(GatewayError) else GatewayError()
        if answer is not None:
            self._send(answer.to_proxy_response())
            return
        self.answered = True
        downstream = self.downstream
        if not downstream.body_complete:
            downstream.keep_alive = False  # the unread body must not be read as a next request
        if self.grpc:
            status, headers, body = grpc_error_response(
                self.error, self.request_id, self.generation.http_date(), downstream.headers.raw.get(b"Content-Type", (None,))[0]
            )
            self.grpc_status = code_for(self.error)
        else:
            status, headers, body = error_response(self.error, self.request_id, self.generation.http_date())
        downstream.respond(status, None, headers, body)

    def _bare_request(self) -> ProxyRequest:
        """What `on_error` sees of a request that never got as far as routing."""
        downstream = self.downstream
        return ProxyRequest(
            method=downstream.method,
            path=downstream.path.decode("latin-1"),
            query=downstream.query,
            headers=downstream.headers,
            peer_ip=downstream.client[0],
            client_ip=downstream.client[0],
            scheme="https" if downstream.secure else "http",
            request_id=self.request_id,
            uri=downstream.target,
        )

    def _crashed(self, failure: Failure) -> None:
        """The last errback of every chain: a bug, not a request error; never silent."""
        _log.failure("internal error handling request {request_id}", failure, request_id=self.request_id)
        if not self.client_gone and not self.downstream.finished:
            self.downstream.abort()

    def _to_https(self, host: bytes, port: int, path: bytes, query: bytes) -> None:
        """``redirect_https``: 308 to the same host and path on the HTTPS port (BadRequest without a host)."""
        response = https_redirect(host, port, path, query)
        self.generation.own_answers.on_response(self._bare_request(), response)  # `defaults` headers
        self._send(response)

    def _body_allowed(self, limit: int) -> bool:
        """The route's ``max_request_body``: a declared larger body is 413 now; the engine counts the rest."""
        downstream = self.downstream
        body = downstream.body
        downstream.max_body = limit
        length = getattr(body, "length", None)
        if isinstance(length, int) and length > limit or downstream.received_bytes > limit:
            self._fail(Failure(PayloadTooLarge()))
            return False
        return True
