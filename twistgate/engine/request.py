"""
`ServerRequest`: one request as the HTTP/1.1 server hands it to the gateway,
and the only way to answer it.

The head is parsed and checked before the handler sees it; the body (if
any) streams into a `StreamingBody` as it arrives.  The answer goes out as
one write whenever it can: `respond` writes head and body at
once, and the streaming API writes the head with the first body bytes.  The
engine frames the body itself (Content-Length, chunked, or close-delimited)
and owns the `Connection` and `Transfer-Encoding` fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IProtocol, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.engine.framing import CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, connection_tokens, head_bytes, status_line
from twistgate.headers import Headers
from twistgate.upstream.body import StreamingBody

if TYPE_CHECKING:
    from twistgate.engine.http1_server import HTTP1ServerProtocol

__all__ = ["ServerRequest"]

_log = Logger()
_NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)
_EMPTY = Headers()


class ServerRequest:
    """
    One HTTP/1.x request and its response.

    :ivar method: ``b"GET"``...
    :ivar target: the request-target exactly as received.
    :ivar path: ``target`` up to ``?``.
    :ivar query: what follows ``?`` (``b""`` when absent).
    :ivar version: ``b"HTTP/1.1"`` or ``b"HTTP/1.0"``.
    :ivar headers: every field as received (names canonical, trailing
        whitespace trimmed from values).
    :ivar client: the peer's ``(host, port)``.
    :ivar secure: whether the connection is TLS.
    :ivar transport: the connection's transport (TLS peer certificate).
    :ivar keep_alive: whether the connection stays open after this response;
        set it to False to close after it.
    :ivar expects_continue: the client sent ``Expect: 100-continue``.
    :ivar body: the request body as it streams in, ``None`` when there is none.
    :ivar received_bytes: request body bytes read so far.
    :ivar sent_bytes: response body bytes written so far (as twisted.web
        counts them: no head, no chunk framing).
    :ivar code: the response status once set.
    :ivar started_writing: the response head went out.
    :ivar finished: the response is complete (or was abandoned).
    :ivar listener: the name of the listener the request arrived on.
    :ivar max_body: the most request body allowed (413 beyond): the
        listener's cap until the gateway routes the request and sets the
        route's own limit.
    """

    #: An upstream answer whose body came with its head goes out in one `respond` (`twistgate.exchange_respond`).
    answers_whole = True

    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "version",
        "headers",
        "client",
        "secure",
        "transport",
        "keep_alive",
        "expects_continue",
        "body",
        "received_bytes",
        "sent_bytes",
        "code",
        "started_writing",
        "finished",
        "body_complete",
        "continue_sent",
        "listener",
        "max_body",
        "_channel",
        "_reason",
        "_response_headers",
        "_mode",
        "_left",
        "_waiter",
        "_waiters",
        "_outcome",
    )

    def __init__(
        self,
        channel: "HTTP1ServerProtocol",
        method: bytes,
        target: bytes,
        version: bytes,
        headers: Headers,
        keep_alive: bool,
        expects_continue: bool,
        body: Optional[StreamingBody],
        max_body: int,
    ) -> None:
        self._channel: Optional["HTTP1ServerProtocol"] = channel
        self.method = method
        self.target = target
        path, _, self.query = target.partition(b"?")
        self.path = path
        self.version = version
        self.headers = headers
        self.client: Tuple[str, int] = channel.client
        self.secure: bool = channel.secure
        self.listener: str = channel.listener
        self.max_body = max_body
        self.transport: Any = channel.transport
        self.keep_alive = keep_alive
        self.expects_continue = expects_continue
        self.body = body
        self.body_complete = body is None
        self.continue_sent = False
        self.received_bytes = 0
        self.sent_bytes = 0
        self.code: Optional[int] = None
        self.started_writing = False
        self.finished = False
        self._reason: Optional[bytes] = None
        self._response_headers: Headers = _EMPTY
        # (`_mode` and `_left` are set by `_start`, `_outcome` by `_settle`: nothing reads them before.)
        #: `when_finished` callbacks: the first, then any more.
        self._waiter: Optional[Callable[[Optional[Failure]], None]] = None
        self._waiters: Optional[List[Callable[[Optional[Failure]], None]]] = None

    def __repr__(self) -> str:
        return f"<ServerRequest {self.method!r} {self.target!r} {self.version!r}>"

    # -- lifetime ------------------------------------------------------------

    def notify_finish(self) -> "Deferred[None]":
        """Fires when the response is completely written; errbacks if the client went away first."""
        if self.finished:
            return fail(self._outcome) if self._outcome is not None else succeed(None)
        d: Deferred[None] = Deferred()
        self.when_finished(lambda outcome: d.callback(None) if outcome is None else d.errback(outcome))
        return d

    def when_finished(self, callback: Callable[[Optional[Failure]], None]) -> None:
        """
        `notify_finish` without a Deferred (the gateway's hot path):
        ``callback(None)`` once the response is written, ``callback(failure)``
        when it was abandoned; at once if it is over already.  Called in the
        order they were given.
        """
        if self.finished:
            callback(self._outcome)
        elif self._waiter is None:
            self._waiter = callback  # the usual one (the exchange's): no list
        elif self._waiters is None:
            self._waiters = [callback]
        else:
            self._waiters.append(callback)

    def _settle(self, outcome: Optional[Failure]) -> None:
        """The response is over: written (``None``) or abandoned (a failure)."""
        if self.finished:
            return
        self.finished = True
        self._outcome = outcome
        self._channel = None
        first, self._waiter = self._waiter, None
        if first is None:
            return
        waiters = (first,) if self._waiters is None else (first, *self._waiters)
        self._waiters = None
        for waiter in waiters:
            try:
                waiter(outcome)
            except Exception:
                _log.failure("a when_finished callback failed")

    # -- 1xx -------------------------------------------------------------------

    def send_interim(self, status: int, headers: Optional[Headers] = None) -> None:
        """
        A 1xx answer before the final one (100 Continue, 103 Early Hints).
        Nothing on HTTP/1.0; 100 only when the client asked for it, at most
        once; never once the final response started.  101 is not interim:
        use `write_head` and `take_over`.
        """
        if not 100 <= status < 200 or status == 101:
            raise ValueError(f"not an interim status: {status}")
        channel = self._channel
        if channel is None or self.started_writing or self.version != b"HTTP/1.1":
            return
        if status == 100:
            if self.continue_sent or not self.expects_continue or self.body_complete:
                return
            self.continue_sent = True
        data = head_bytes(status_line(b"HTTP/1.1", status, None), (headers or _EMPTY).raw, b"")
        channel.out.write(data)

    # -- the final response ----------------------------------------------------

    def respond(self, status: int, reason: Optional[bytes], headers: Headers, body: bytes = b"", fields: bytes = b"") -> None:
        """A complete answer in one write (``fields``: more, as ready header lines); the engine sets Content-Length."""
        if self.started_writing or self._channel is None:
            return
        self.code = status
        self._reason = reason
        self._response_headers = headers
        self._start(body, True, fields)
        self._end()

    def write_head(self, status: int, reason: Optional[bytes], headers: Headers) -> None:
        """Set the response head; it goes out with the first `write` (or `finish`)."""
        if self.started_writing or self._channel is None:
            return
        self.code = status
        self._reason = reason
        self._response_headers = headers

    def write(self, data: bytes) -> None:
        """Body bytes (the first call writes the head with them)."""
        channel = self._channel
        if channel is None:
            return
        if not self.started_writing:
            self._start(data, False)
            return
        if not data:
            return
        mode = self._mode
        if mode == _CHUNKED:
            self.sent_bytes += len(data)
            channel.out.write(b"%x\r\n%s\r\n" % (len(data), data))
            return
        if mode == _LENGTH:
            if len(data) > self._left:
                data = data[: self._left]  # more than announced: the rest would corrupt the next response
                self.keep_alive = False
            self._left -= len(data)
        elif mode == _NONE:
            return
        self.sent_bytes += len(data)
        channel.out.write(data)

    def finish(self, trailers: Optional[Headers] = None) -> None:
        """
        The response is complete.  `trailers` go out after a chunked body
        (RFC 9112 §7.1.2); a body framed by its length cannot carry them and
        they are dropped.
        """
        if self._channel is None:
            return
        if not self.started_writing:
            self._start(b"", True)
        elif self._mode == _CHUNKED:
            self._channel.out.write(head_bytes(b"0\r\n", trailers.raw, b"") if trailers else b"0\r\n\r\n")
        elif self._mode == _LENGTH and self._left:
            # Shorter than announced: only closing tells the client.
            self.keep_alive = False
        self._end()

    def abort(self) -> None:
        """Close the connection at once: the client sees a truncated response."""
        channel = self._channel
        if channel is not None:
            channel.abort()

    def _end(self) -> None:
        channel = self._channel
        self._settle(None)
        if channel is not None:
            channel.response_finished(self)

    def _start(self, data: bytes, final: bool, fields: bytes = b"") -> None:
        """Write the head, framed for the body, with ``data`` (the whole body when ``final``) and ``fields`` (ready lines)."""
        channel = self._channel
        assert channel is not None
        self.started_writing = True
        status = self.code or 200
        raw = self._response_headers.raw
        version = self.version
        codings = raw.get(TRANSFER_ENCODING)  # codings the gateway relays without undoing them
        if (
            codings is not None
            or CONNECTION in raw
            or (final and CONTENT_LENGTH in raw and raw[CONTENT_LENGTH] != [b"%d" % len(data)])
        ):
            raw = self._own_framing_fields(raw, status, final)
        extra = fields
        if status < 200 or status == 204 or status == 304 or self.method == b"HEAD":
            mode = _NONE
            if (status < 200 or status == 204) and CONTENT_LENGTH in raw:
                raw = {name: values for name, values in raw.items() if name != CONTENT_LENGTH}
            elif final and status >= 200 and status != 304 and CONTENT_LENGTH not in raw:
                extra += b"Content-Length: %d\r\n" % len(data)  # HEAD: the length a GET would have
            data = b""
        elif final:
            mode = _LENGTH
            self._left = 0  # all of it goes now
            if CONTENT_LENGTH not in raw:
                extra += b"Content-Length: %d\r\n" % len(data)
        elif CONTENT_LENGTH in raw and _valid_length(raw[CONTENT_LENGTH]):
            mode = _LENGTH
            self._left = int(raw[CONTENT_LENGTH][0])
        elif version == b"HTTP/1.1":
            if CONTENT_LENGTH in raw:  # unusable: frame it ourselves
                raw = {name: values for name, values in raw.items() if name != CONTENT_LENGTH}
            mode = _CHUNKED
            if codings is not None and codings != [b"chunked"]:
                extra += b"Transfer-Encoding: %s, chunked\r\n" % b", ".join(codings)
            else:
                extra += b"Transfer-Encoding: chunked\r\n"
        else:
            mode = _CLOSE
            self.keep_alive = False
            if CONTENT_LENGTH in raw:
                raw = {name: values for name, values in raw.items() if name != CONTENT_LENGTH}
        self._mode = mode
        if status == 101:
            pass  # Connection: Upgrade is the handler's
        elif not self.keep_alive or channel.must_close(self):
            self.keep_alive = False
            extra += b"Connection: close\r\n"
        elif version == b"HTTP/1.0":
            extra += b"Connection: keep-alive\r\n"
        head = head_bytes(status_line(version, status, self._reason), raw, extra)
        if mode == _LENGTH and not final:
            if len(data) > self._left:
                data = data[: self._left]
                self.keep_alive = False
            self._left -= len(data)
        self.sent_bytes += len(data)
        if mode == _CHUNKED and data:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        out = head + data if data else head
        channel.out.write(out)

    def _own_framing_fields(self, raw: Any, status: int, final: bool) -> Any:
        """``raw`` without the fields the engine writes itself (a copy); notes ``Connection: close``."""
        if status != 101 and b"close" in connection_tokens(raw.get(CONNECTION)):
            self.keep_alive = False
        drop = {TRANSFER_ENCODING}
        if status != 101:
            drop.add(CONNECTION)
        if final and not (status == 304 or self.method == b"HEAD"):
            drop.add(CONTENT_LENGTH)
        return {name: values for name, values in raw.items() if name not in drop}

    # -- flow control and upgrades --------------------------------------------------

    def register_producer(self, producer: IPushProducer) -> None:
        """Pause ``producer`` while the client's socket is full, resume it when it drains."""
        if self._channel is not None:
            self._channel.register_producer(producer)

    def unregister_producer(self) -> None:
        if self._channel is not None:
            self._channel.register_producer(None)

    def take_over(self, protocol: IProtocol) -> None:
        """
        After ``write_head(101, ...)``: write the head, stop speaking HTTP, and
        hand the connection (and every byte after the request head) to
        ``protocol``.
        """
        channel = self._channel
        if channel is None or self.code != 101 or self.started_writing:
            raise RuntimeError("take_over needs write_head(101, ...) and nothing written yet")
        if not self.body_complete:
            raise RuntimeError("cannot take over a connection while a request body is unread")
        self._start(b"", False)
        self._settle(None)
        channel.hand_over(protocol)


def _valid_length(values: List[bytes]) -> bool:
    """One decimal Content-Length (or the same one repeated)."""
    first = values[0]
    return first.isdigit() and (len(values) == 1 or all(value == first for value in values))
