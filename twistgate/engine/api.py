"""
What the exchange needs from the client's side of a request: `Downstream`.

The engines implement it: the HTTP/1.1 engine on httptools and the HTTP/2
engine on h2 (`twistgate.engine.http2_server_stream.H2Stream`) directly, and the
twisted.web engine (HTTP/1.1) through an adapter.

Trailers, both ways (added with the HTTP/2 engine):

* request trailers arrive as ``body.trailers`` once the body is complete;
* response trailers leave with ``finish(trailers=...)``; the exchange takes
  them from the upstream response's ``trailers`` attribute (see
  `twistgate.upstream.client`), read when its body is over.  Keeping the
exchange on this interface is what makes the engines interchangeable and
what keeps twisted.web's `Request` out of the gateway's core.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Tuple

from twisted.internet.defer import Deferred

from twistgate.headers import Headers


class Downstream(Protocol):
    """
    One request from a client, and the way to answer it.

    :ivar method: e.g. ``b"GET"``.
    :ivar target: the request-target as sent (origin or absolute form).
    :ivar path: the target's path part, raw bytes.
    :ivar query: the target's query without ``?`` (``b""`` when absent).
    :ivar version: ``b"HTTP/1.1"``, ``b"HTTP/1.0"`` or ``b"HTTP/2"``.
    :ivar headers: every field as received.
    :ivar client: the TCP peer as ``(host, port)``.
    :ivar secure: the connection is TLS.
    :ivar transport: the connection's transport (TLS peer certificate).
    :ivar keep_alive: whether the connection stays open after this answer;
        the gateway sets it False to close (draining, unread body).
    :ivar expects_continue: the client sent ``Expect: 100-continue``.
    :ivar body: the request body as a streaming `IBodyProducer`
        (`twistgate.upstream.body.StreamingBody` or `BytesBody`), or None.
        Its ``trailers`` attribute (a `Headers`, or None) holds the
        request's trailer fields once the body is complete; an upstream
        client that can send trailers (HTTP/2; HTTP/1.1 chunked) sends them
        after the last byte.
    :ivar body_complete: the whole body has been received.
    :ivar received_bytes: request-body bytes read so far.
    :ivar sent_bytes: response-body bytes written so far.
    :ivar code: the status sent, once sent.
    :ivar started_writing: the response head went out (or is committed).
    :ivar finished: the response is complete.
    :ivar listener: the name of the listener (``listeners[].name``) the
        request arrived on: routes with ``listeners`` and ``redirect_https``
        depend on it.
    :ivar max_body: the most request-body bytes to accept.  The engine
        starts from the generation's ``body_cap`` (the largest any route
        allows); the exchange sets the route's ``max_request_body`` as soon as
        the route is known.  Beyond it the engine answers 413 if nothing was
        sent yet, else cuts the body (as with ``limits.max_request_body``).
    """

    method: bytes
    target: bytes
    path: bytes
    query: bytes
    version: bytes
    headers: Headers
    client: Tuple[str, int]
    secure: bool
    transport: Any
    keep_alive: bool
    expects_continue: bool
    body: Any
    body_complete: bool
    received_bytes: int
    sent_bytes: int
    code: int
    started_writing: bool
    finished: bool
    listener: str
    max_body: int

    def notify_finish(self) -> "Deferred[None]":
        """Fires when the answer is written; fails when the client went away first."""

    def send_interim(self, status: int, headers: Headers) -> None:
        """
        A 1xx answer (100 Continue, 103 Early Hints) before the final one;
        ignored once the final head is written (and 101 never goes this way).
        The exchange forwards an upstream's 103 through it.
        """

    def respond(self, status: int, reason: Optional[bytes], headers: Headers, body: bytes) -> None:
        """A complete answer at once (Content-Length added when missing)."""

    def write_head(self, status: int, reason: Optional[bytes], headers: Headers) -> None:
        """Start a streamed answer; the head goes out with the first body bytes."""

    def write(self, data: bytes) -> None:
        """Body bytes of a streamed answer."""

    def finish(self, trailers: Optional[Headers] = None) -> None:
        """
        The streamed answer is complete.  `trailers`: fields to send after
        the body (an upstream response's ``trailers``, gRPC's
        ``grpc-status``...): HTTP/2 sends them as a HEADERS frame with
        END_STREAM; HTTP/1.1 as the chunked trailer section when the
        response is chunked and the client said ``TE: trailers``; an engine
        that cannot send them drops them.  A response finished with
        trailers and no body or head written yet goes out as the head
        followed by the trailers (gRPC's trailers-only answers are a
        head with ``grpc-status`` and an empty body instead: `respond`).
        """

    def abort(self) -> None:
        """Cut the connection: the client sees a truncated answer."""

    def register_producer(self, producer: Any) -> None:
        """Pause `producer` (a push producer) while the client cannot keep up."""

    def unregister_producer(self) -> None:
        """Stop pausing the registered producer."""
