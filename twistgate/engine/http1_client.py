"""
One upstream connection speaking HTTP/1.1 on httptools, one request at a time.

The pool (`twistgate.engine.pool`) owns connections and calls `send`; the
connection reports back to the pool's request object with plain calls
(`head_received`, `failed`), never Deferreds.  The head goes out with the first
body bytes when the body producer has some at once.  A connection goes back to
the pool once the request is sent, the answer read, and both sides allow it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twistgate.engine.parsers import HttpParserError, HttpParserUpgrade, HttpResponseParser
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.engine.errors import ResponseBodyStopped, ResponseBodyTruncated, UpstreamClosedConnection, UpstreamProtocolError
from twistgate.engine.framing import CONTENT_LENGTH, TRANSFER_ENCODING, FieldCollector, head_bytes, persists, response_length
from twistgate.engine.response import UpstreamResponse
from twistgate.engine.writer import SocketWriter, peer_closed
from twistgate.headers import Headers

if TYPE_CHECKING:
    from twistgate.engine.pool import UpstreamPool, PooledRequest

__all__ = ["HTTP1ClientProtocol"]

_log = Logger()
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_HTTP11 = (b"HTTP", 1, 1)
_VERSIONS = {"1.1": _HTTP11, "1.0": (b"HTTP", 1, 0)}
_NO_BODY = frozenset({101, 204, 304})  # statuses whose answers have no body, whatever their fields say
_DONE = Failure(ResponseDone())  # one shared instance: a clean end carries no traceback


class HTTP1ClientProtocol(FieldCollector, Protocol):
    """An upstream connection (see the module docstring)."""

    def __init__(self, pool: "UpstreamPool", key: Any) -> None:
        self._pool = pool
        self.key = key
        self._parser = HttpResponseParser(self)
        self.requests = 0  # requests sent on this connection
        self.idle_since = 0.0
        self.in_pool = False
        self.closing = False  # closed or closing: never to be used again (read by the pool)
        self._aborted = False
        self._upgraded: Optional[IProtocol] = None
        self._upgrade_rest = b""
        self._paused = False
        self._release: Any = False  # the response to report done after the current read
        self.on_lost: Optional[Deferred[None]] = None  # fired when the connection is gone (pool.close)
        # One request's state (`send` sets again what a clean end leaves otherwise).
        self._request: Optional["PooledRequest"] = None
        self._response: Optional[UpstreamResponse] = None
        self._method = b""
        self._on_interim: Any = None
        self._reused = False
        self._sent = False
        self._body: Any = None
        self._body_done = True
        self._chunked = False
        self._pending_head: Optional[bytes] = None
        self._read_size = 0  # bytes in the latest read of this request's answer (0: none yet)
        self._http11_head = False  # the latest read is the answer's first, and starts "HTTP/1.1 "
        self._phrase = b""
        self._raw: dict = {}
        self._interim = False
        self._persist = False
        self._until_close = False
        self._message_done = False
        self._stopped = False
        self._held: Optional[UpstreamResponse] = None  # a head reported at the end of its read (`report_held`)

    def connectionMade(self) -> None:
        self.out = SocketWriter(self.transport, self._pool.clock)

    # -- sending ---------------------------------------------------------------

    def send(self, request: "PooledRequest", reused: bool) -> None:
        """
        Write ``request`` (its method, path, headers, payload, and ``fields``:
        more, as ready header lines); the outcome goes to it (`head_received` / `failed`).
        """
        method = request.method
        body = request.payload
        fields = request.fields
        # What a clean end (the only one after which a connection is reused) does not leave as a new request needs:
        self._request = request
        self._method = method
        self._on_interim = request.on_interim
        self._reused = reused
        self._sent = False
        self._chunked = False
        self._read_size = 0
        self._persist = False
        self._message_done = False
        self.requests += 1
        line = b"%s %s HTTP/1.1\r\n" % (method, request.path)
        transport = self.transport
        raw = request.headers.raw
        if CONTENT_LENGTH in raw or TRANSFER_ENCODING in raw:
            # The connection frames the body itself; a caller's own framing fields would contradict it.
            raw = {name: values for name, values in raw.items() if name not in (CONTENT_LENGTH, TRANSFER_ENCODING)}
        if body is None:
            self._sent = True
            self.out.write(head_bytes(line, raw, fields + b"Content-Length: 0\r\n" if method in _BODY_METHODS else fields))
            return
        if body.length is UNKNOWN_LENGTH:
            self._chunked = True
            extra = fields + b"Transfer-Encoding: chunked\r\n"
        else:
            extra = b"%sContent-Length: %d\r\n" % (fields, body.length)
        self._body = body
        self._body_done = False
        self._pending_head = head_bytes(line, raw, extra)
        transport.registerProducer(body, True)
        d = body.startProducing(self)
        if self._pending_head is not None and self._body is body:
            self._sent = True
            head, self._pending_head = self._pending_head, None
            self.out.write(head)
        d.addCallbacks(self._body_finished, self._body_failed, callbackArgs=(body,), errbackArgs=(body,))

    def write(self, data: bytes) -> None:
        """`IConsumer.write`, for the request body producer."""
        if self._body is None or not data:
            return
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        head = self._pending_head
        self._sent = True
        if head is not None:
            self._pending_head = None
            data = head + data
        self.out.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass  # the connection registered the body with its transport already

    def unregisterProducer(self) -> None:
        pass

    def _body_finished(self, _: Any, body: Any) -> None:
        if self._body is not body:
            return
        self._body = None
        self._body_done = True
        if self._chunked:
            self.out.write(b"0\r\n\r\n")
        self.transport.unregisterProducer()
        if self._message_done:
            self._complete()

    def _body_failed(self, failure: Failure, body: Any) -> None:
        if self._body is not body:
            return None
        self._body = None
        self.transport.unregisterProducer()
        request = self._request
        if self._response is None and request is not None:
            self._request = None
            request.failed(failure, self)
        self.abort()
        return None

    # -- receiving -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._upgraded is not None:
            self._upgraded.dataReceived(data)
            return
        if self._request is None and self._response is None:
            self.abort()  # bytes nobody asked for: this connection cannot be trusted
            return
        # An answer's first read starts with its head: no need to ask the parser (`get_http_version` formats a str).
        self._http11_head = not self._read_size and data.startswith(b"HTTP/1.1 ")
        self._read_size = len(data)
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            if self._upgraded is None:
                self._upgrade_rest = rest
            elif rest:
                self._upgraded.dataReceived(rest)  # detached during the head callback
        except HttpParserError as error:
            self._protocol_error(str(error))
        done = self._release
        if done:
            # Only now, with every byte of this read parsed: a connection that
            # carried more than its one response is closed, never reused.
            self._release = False
            if not self.closing:
                self._pool.release(self)
            if done is not True:
                done._finished(_DONE)
        held = self._held
        if held is not None:
            self._held = None
            held.report_held()

    def on_message_begin(self) -> None:
        if self._request is None and self._response is None:
            raise UpstreamProtocolError("a response nobody asked for", sent=False, reused=self._reused)

    def on_status(self, phrase: bytes) -> None:
        self._phrase += phrase

    def on_headers_complete(self) -> None:
        parser = self._parser
        code = parser.get_status_code()
        http11_head, self._http11_head = self._http11_head, False  # (only the read's first head starts it)
        raw = self._raw
        self._raw = {}
        headers = Headers.__new__(Headers)  # around the engine's own dict (names canonical, values clean): no copy, no checks
        headers.raw = raw
        phrase, self._phrase = self._phrase, b""
        if code < 200 and code != 101:
            self._interim = True
            if self._on_interim is not None:
                try:
                    self._on_interim(code, headers)
                except Exception:
                    _log.failure("on_interim failed")
            return
        self._interim = False
        version = _HTTP11 if http11_head else _VERSIONS.get(parser.get_http_version(), _HTTP11)
        method = self._method
        lengths = raw.get(CONTENT_LENGTH)
        held = lengths is not None and code not in _NO_BODY and method != b"HEAD" and TRANSFER_ENCODING not in raw
        if held:
            length, until_close = int(lengths[0]), False  # the usual answer (`response_length`'s own first case)
        else:
            length, until_close = response_length(raw, code, method)
        self._until_close = until_close
        connection = raw.get(b"Connection")
        http11 = version is _HTTP11
        self._persist = (http11 if connection is None else persists(connection, http11)) and not until_close and code != 101
        response = UpstreamResponse(self, code, phrase, version, headers, length)
        self._response = response
        request, self._request = self._request, None
        if request is not None:
            if held and length < self._read_size:  # reported at the end of this read, with its body (`dataReceived`)
                response.held_for, self._held = request, response
            else:
                request.head_received(response)
        if self._method == b"HEAD" and not self._message_done:
            # llhttp would wait for the body a HEAD answer announces: end here, and do not reuse.
            self._persist = False
            self.on_message_complete()

    def on_body(self, chunk: bytes) -> None:
        response = self._response
        if response is not None:
            response._data(chunk)

    def on_message_complete(self) -> None:
        if self._raw:
            # A chunked body's trailer fields, reported like fields: this client
            # does not read them, and they must not join the next response's.
            self._raw = {}
        if self._interim:
            self._interim = False
            return
        if self._message_done:
            return
        self._message_done = True
        response = self._response
        if self._upgraded is not None or (response is not None and response.code == 101):
            return  # the connection waits for `detach`, or was detached in the head's callback already
        if self._body_done:
            self._complete()
        elif self._body is not None:
            # Answered before the request body was sent: stop sending, and do not reuse.
            body, self._body = self._body, None
            self.transport.unregisterProducer()
            body.stopProducing()
            self._persist = False
            self._complete()

    def _complete(self) -> None:
        response = self._response
        self._response = None
        if self._persist and not self.closing:
            if self._paused:
                self._paused = False
                self.transport.resumeProducing()
            # Released, then reported done, once this read is parsed (see
            # dataReceived): the reader's next request may then take it.
            self._release = response or True
            return
        self.close()
        if response is not None:
            response._finished(_DONE)

    def _protocol_error(self, message: str) -> None:
        request, self._request = self._request, None
        response, self._response = self._response, None
        self.abort()
        if request is not None:
            error = UpstreamProtocolError(f"invalid response from upstream: {message}", sent=self._sent, reused=self._reused)
            request.failed(Failure(error), self)
        elif response is not None and not self._message_done:
            response._finished(Failure(ResponseBodyTruncated(f"invalid response body: {message}")))

    # -- body flow control (from UpstreamResponse's producer) ----------------------

    def pause_body(self, response: UpstreamResponse) -> None:
        if response is self._response and not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def resume_body(self, response: UpstreamResponse) -> None:
        if response is self._response and self._paused:
            self._paused = False
            self.transport.resumeProducing()

    def stop_body(self, response: UpstreamResponse) -> None:
        if response is self._response:
            self._stopped = True
            self.abort()

    # -- lifetime ----------------------------------------------------------------

    def looks_closed(self) -> bool:
        """Whether the upstream already closed (or wrote to) this idle connection."""
        return peer_closed(self.transport)

    def detach(self, protocol: IProtocol) -> None:
        """Hand the raw connection to ``protocol`` (after a 101); it never returns to the pool."""
        self._upgraded = protocol
        self._response = None
        self.out.queue_only()
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        protocol.makeConnection(self.transport)
        rest, self._upgrade_rest = self._upgrade_rest, b""
        if rest:
            protocol.dataReceived(rest)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.out.flush()  # what this pass wrote goes first
            self.transport.loseConnection()

    def abort(self) -> None:
        """Close at once (a cancelled or broken exchange); the connection is never reused."""
        self._request = None
        body, self._body = self._body, None
        if body is not None:
            self.transport.unregisterProducer()
            body.stopProducing()
        if not self._aborted:
            self._aborted = self.closing = True
            self.out.discard()
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closing = True
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost.callback(None)
        if self._upgraded is not None:
            self._upgraded.connectionLost(reason)
            return
        if self.in_pool:
            self._pool.lost_idle(self)
            return
        request, self._request = self._request, None
        body, self._body = self._body, None
        if body is not None:
            body.stopProducing()
        if request is not None:
            if self._read_size:
                message, kind = "the upstream closed the connection in the middle of the response head", UpstreamProtocolError
            else:
                message, kind = "the upstream closed the connection before answering", UpstreamClosedConnection
            request.failed(Failure(kind(message, sent=self._sent, reused=self._reused)), self)
            return
        response, self._response = self._response, None
        if response is not None and not self._message_done:
            if self._stopped:
                response._finished(Failure(ResponseBodyStopped("the response body was stopped by its reader")))
            elif self._until_close:
                response._finished(Failure(PotentialDataLoss()))
            else:
                response._finished(Failure(ResponseBodyTruncated("the upstream closed the connection mid-body")))
