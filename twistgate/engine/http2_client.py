"""
The forwarded hop over HTTP/2 (``upstreams.X.protocol: h2 | h2c``): an
`UpstreamClient` on the `h2` library.

`H2UpstreamClient` keeps a pool of connections per target.  A request goes
out as a new stream on a connection with room for it (streams are
multiplexed up to the server's SETTINGS_MAX_CONCURRENT_STREAMS); when every
connection is full, or draining after a GOAWAY, another one is opened.
Requests wait for a connection still being set up rather than opening one
each.  A stream the server refused unprocessed (REFUSED_STREAM, or beyond a
GOAWAY's last stream id) is sent again on a fresh connection when it has no
body; otherwise it fails as `StreamRefused`, a connect failure that
``retry`` may repeat safely.

``h2`` is TLS with ALPN (the upstream's TLS policy offers ``h2`` only);
``h2c`` is cleartext with prior knowledge.  Flow control works both ways:
the request body's producer is paused while the stream's window is closed,
and response DATA is acknowledged as the gateway's client consumes it
(a paused relay stops the acknowledgements, so the upstream is held by its
window).  Responses carry their ``trailers`` once the body is over, and 1xx
responses go to the ``interim`` callback.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import implementer

from twistgate.engine.http2_common import DrainingH2Connection, from_h2_fields, goaway_frame, response_problem, to_h2_fields
from twistgate.headers import Headers
from twistgate.http import reason_phrase

__all__ = ["H2UpstreamClient", "H2Response", "StreamRefused"]

_log = Logger()

STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 8 * STREAM_WINDOW
#: Streams assumed available on a connection before the server's SETTINGS arrive.
DEFAULT_CAPACITY = 100
#: Request-body bytes queued for want of window before the body's producer is paused.
HIGH_WATER = 64 * 1024


class StreamRefused(ConnectError):
    """The upstream did not process the request (REFUSED_STREAM, or beyond its GOAWAY): safe to send again."""


class UpstreamProtocolError(ConnectionLost):
    """The upstream broke HTTP/2 (a malformed response, a connection error)."""


@implementer(IPushProducer)
class _BodyTransport:
    """What a response body's protocol sees as its transport: pausing it holds the stream's window."""

    def __init__(self, stream: "_Stream") -> None:
        self._stream = stream

    def pauseProducing(self) -> None:
        self._stream.reading_paused = True

    def resumeProducing(self) -> None:
        stream = self._stream
        stream.reading_paused = False
        stream.deliver()

    def stopProducing(self) -> None:
        self._stream.stop()


class H2Response:
    """An upstream response (the `UpstreamResponse` shape of `twistgate.upstream.client`)."""

    version = (b"HTTP", 2, 0)

    def __init__(self, stream: "_Stream", code: int, headers: Headers) -> None:
        self._stream = stream
        self.code = code
        self.phrase = reason_phrase(code)
        self.headers = headers
        self.trailers: Optional[Headers] = None
        values = headers.raw.get(b"Content-Length")
        length: Any = UNKNOWN_LENGTH
        if values:
            try:
                length = int(values[0])
            except ValueError:
                length = UNKNOWN_LENGTH
        self.length = length

    def deliverBody(self, protocol: Any) -> None:
        self._stream.deliver_to(protocol)


@implementer(IConsumer)
class _Stream:
    """One request on an upstream connection, from its HEADERS to the end of the response."""

    def __init__(
        self,
        pool: "_TargetPool",
        method: bytes,
        fields: List[Tuple[bytes, bytes]],
        body: Any,
        interim: Optional[Callable[[int, Headers], None]],
    ) -> None:
        self.pool = pool
        self.method = method
        self.fields = fields
        self.body = body
        self.interim = interim
        self.result: Deferred[Any] = Deferred(self._cancel)
        self.connection: Optional[H2ClientProtocol] = None
        self.stream_id = 0
        self.response: Optional[H2Response] = None
        self.protocol: Any = None  # the body protocol, once deliverBody was called
        self.pending: List[bytes] = []  # response DATA not yet delivered
        self.unacked = 0
        self.reading_paused = False
        self.ended: Optional[Failure] = None  # how the response ended, not yet delivered
        self.done = False
        self.redispatched = False
        # request body
        self.out_queue: List[bytes] = []
        self.out_queued = 0
        self.out_end = False
        self.body_paused = False
        self.body_over = body is None  # the body's producer has finished (or failed)
        self.producer: Any = None

    # -- the request ------------------------------------------------------------

    def start(self, connection: "H2ClientProtocol") -> None:
        self.connection = connection
        h2 = connection.h2
        self.stream_id = sid = h2.get_next_available_stream_id()
        connection.streams[sid] = self
        end = self.body is None
        try:
            h2.send_headers(sid, self.fields, end_stream=end)
        except ProtocolError as error:
            del connection.streams[sid]
            self.fail(Failure(StreamRefused(f"cannot open a stream: {error}")))
            return
        connection.write_out()
        if not end:
            d = self.body.startProducing(self)
            d.addCallbacks(self._body_done, self._body_failed)

    def _body_done(self, _: Any) -> None:
        self.body_over = True
        if not self.done:
            self.out_end = True
            self.flush()

    def _body_failed(self, failure: Failure) -> None:
        self.body_over = True
        if not self.done:
            self.reset(ErrorCodes.CANCEL)
            self.fail(failure)

    # IConsumer: the request body writes here

    def write(self, data: bytes) -> None:
        if self.done or not data:
            return
        self.out_queue.append(data)
        self.out_queued += len(data)
        self.flush()
        if self.out_queued > HIGH_WATER and not self.body_paused and not self.body_over:
            self.body_paused = True
            self.body.pauseProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def flush(self) -> None:
        """Send what the windows allow of the request body; then its end (and trailers)."""
        connection = self.connection
        if connection is None or self.done or connection.lost:
            return
        h2 = connection.h2
        sid = self.stream_id
        queue = self.out_queue
        try:
            while queue:
                window = min(h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk = queue[0]
                if len(chunk) <= window:
                    queue.pop(0)
                else:
                    queue[0] = chunk[window:]
                    chunk = chunk[:window]
                self.out_queued -= len(chunk)
                h2.send_data(sid, chunk)
            if not queue and self.out_end:
                self.out_end = False
                trailers = getattr(self.body, "trailers", None)
                if trailers:
                    h2.send_headers(sid, to_h2_fields([], trailers), end_stream=True)
                else:
                    h2.end_stream(sid)
        except (ProtocolError, StreamClosedError, KeyError):
            queue.clear()
            self.out_queued = 0
        connection.write_out()
        if self.body_paused and self.out_queued <= HIGH_WATER // 2 and not self.body_over and not connection.paused:
            self.body_paused = False
            self.body.resumeProducing()

    # -- the response ------------------------------------------------------------------

    def head(self, fields: List[Tuple[bytes, bytes]]) -> None:
        problem = response_problem(fields)
        if problem is not None:
            self.reset(ErrorCodes.PROTOCOL_ERROR)
            self.fail(Failure(UpstreamProtocolError(f"malformed response: {problem}")))
            return
        status = int(dict(fields)[b":status"])
        headers = from_h2_fields(fields)
        if status < 200:
            if self.interim is not None and status != 101:
                self.interim(status, headers)
            return
        if self.response is not None:
            return
        self.response = H2Response(self, status, headers)
        if self.method == b"HEAD" or status in (204, 304):
            self.response.length = 0
        self.result.callback(self.response)

    def data(self, data: bytes, flow_controlled: int) -> None:
        if self.done:
            self.connection.acknowledge(self.stream_id, flow_controlled)  # type: ignore[union-attr]
            return
        self.pending.append(data)
        self.unacked += flow_controlled
        self.deliver()

    def trailers(self, fields: List[Tuple[bytes, bytes]]) -> None:
        if self.response is not None:
            self.response.trailers = from_h2_fields(fields)

    def end(self, reason: Failure) -> None:
        """The response is over (END_STREAM, reset, connection lost)."""
        if self.response is None:
            self.fail(reason if not reason.check(ResponseDone) else Failure(UpstreamProtocolError("stream ended without a response")))
            return
        if self.ended is None:
            self.ended = reason
        self.deliver()

    def deliver_to(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(_BodyTransport(self))
        self.deliver()

    def deliver(self) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        while self.pending and not self.reading_paused:
            protocol.dataReceived(self.pending.pop(0))
        if not self.reading_paused and self.unacked and self.connection is not None:
            unacked, self.unacked = self.unacked, 0
            self.connection.acknowledge(self.stream_id, unacked)
        if not self.pending and self.ended is not None and not self.done:
            self._finish()
            protocol.connectionLost(self.ended)

    def _finish(self) -> None:
        self.done = True
        connection = self.connection
        if connection is not None:
            connection.stream_over(self)
        self._stop_body()

    def _stop_body(self) -> None:
        """The exchange is over before the request body: stop reading it."""
        if not self.body_over:
            self.body_over = True
            try:
                self.body.stopProducing()
            except Exception:
                pass

    def stop(self) -> None:
        """The gateway no longer wants the response (client gone, timeout): cancel the stream."""
        if self.done:
            return
        self.reset(ErrorCodes.CANCEL)
        self.pending = []
        self.ended = Failure(ResponseFailed([Failure(ConnectionDone("response stopped by the gateway"))]))
        self.deliver()

    # -- failure ------------------------------------------------------------------------

    def reset(self, code: int) -> None:
        connection = self.connection
        if connection is not None and not connection.lost and self.stream_id:
            try:
                connection.h2.reset_stream(self.stream_id, code)
            except (ProtocolError, StreamClosedError, KeyError):
                pass
            connection.write_out()

    def fail(self, reason: Failure) -> None:
        """Before the response head: the request's Deferred fails."""
        if self.done:
            return
        self._finish()
        if not self.result.called:
            self.result.errback(reason)

    def _cancel(self, _: Any) -> None:
        # Deferred errbacks with CancelledError after this.
        if not self.done:
            self.reset(ErrorCodes.CANCEL)
            self.done = True
            if self.connection is not None:
                self.connection.stream_over(self)
            else:
                self.pool.forget(self)
            self._stop_body()


@implementer(IPushProducer)
class H2ClientProtocol(Protocol):
    """One HTTP/2 connection to an upstream target."""

    def __init__(self, pool: "_TargetPool", tls: bool) -> None:
        self.pool = pool
        self.tls = tls
        self.streams: Dict[int, _Stream] = {}
        self.lost = False
        self.draining = False  # GOAWAY received, or closing: no new streams
        self.checked_alpn = not tls
        self.paused = False
        self.idle_timer: Any = None
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_inbound_headers=False,  # response_problem()
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = DrainingH2Connection(config)
        self.h2.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_CONCURRENT_STREAMS: 0,  # no pushed streams
                SettingCodes.MAX_HEADER_LIST_SIZE: 1024 * 1024,
            },
        )

    @property
    def capacity(self) -> int:
        """Streams that may still be opened now."""
        if self.draining or self.lost:
            return 0
        limit = self.h2.remote_settings.max_concurrent_streams
        if limit > 2**31:
            limit = DEFAULT_CAPACITY  # none announced (yet)
        return limit - len(self.streams)

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.write_out()
        self.pool.connected(self)

    def dataReceived(self, data: bytes) -> None:
        if self.lost:
            return
        if not self.checked_alpn:
            self.checked_alpn = True
            negotiated = getattr(self.transport, "negotiatedProtocol", None)
            if negotiated != b"h2":
                self._die(Failure(StreamRefused(f"the upstream did not negotiate h2 over ALPN (got {negotiated!r})")))
                return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as error:
            self.write_out()
            self._die(Failure(UpstreamProtocolError(f"HTTP/2 protocol error from the upstream: {error}")))
            return
        for event in events:
            self._dispatch(event)
        self.write_out()

    def _dispatch(self, event: Any) -> None:
        kind = type(event)
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if kind is DataReceived:
            if stream is not None:
                stream.data(event.data, event.flow_controlled_length)
            elif event.flow_controlled_length:
                self.acknowledge(event.stream_id, event.flow_controlled_length)
        elif kind is ResponseReceived or kind is InformationalResponseReceived:
            if stream is not None:
                stream.head(event.headers)
        elif kind is TrailersReceived:
            if stream is not None:
                stream.trailers(event.headers)
        elif kind is StreamEnded:
            if stream is not None:
                stream.end(Failure(ResponseDone()))
        elif kind is StreamReset:
            if stream is not None:
                self._reset(stream, event.error_code)
        elif kind is WindowUpdated:
            if event.stream_id == 0:
                for each in list(self.streams.values()):
                    if each.out_queue or each.out_end:
                        each.flush()
            elif stream is not None:
                stream.flush()
        elif kind is RemoteSettingsChanged:
            if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                for each in list(self.streams.values()):
                    each.flush()
            self.pool.dispatch()  # room for waiting requests, maybe
        elif kind is ConnectionTerminated:
            self._goaway(event)

    def _reset(self, stream: _Stream, code: int) -> None:
        if stream.response is None and code == ErrorCodes.REFUSED_STREAM:
            self.pool.refused(stream, "REFUSED_STREAM")
            return
        reason = Failure(ConnectionLost(f"the upstream reset the stream ({_code_name(code)})"))
        if stream.response is None:
            stream.fail(Failure(ResponseFailed([reason])))
        else:
            stream.end(Failure(ResponseFailed([reason])))

    def _goaway(self, event: ConnectionTerminated) -> None:
        """The upstream will take no new streams: drain this connection; unprocessed ones go elsewhere."""
        self.draining = True
        last = event.last_stream_id if event.last_stream_id is not None else 2**31 - 1
        for sid, stream in sorted(self.streams.items()):
            if sid > last and stream.response is None:
                self.pool.refused(stream, "beyond the upstream's GOAWAY")
        if event.error_code != ErrorCodes.NO_ERROR:
            self._die(Failure(UpstreamProtocolError(f"the upstream ended the connection ({_code_name(event.error_code)})")))
            return
        if not self.streams:
            self.close()
        self.pool.dispatch()

    def acknowledge(self, sid: int, size: int) -> None:
        if size <= 0 or self.lost:
            return
        try:
            self.h2.acknowledge_received_data(size, sid)
        except (ProtocolError, StreamClosedError, KeyError):
            pass
        self.write_out()

    def stream_over(self, stream: _Stream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        if not self.streams:
            if self.draining:
                self.close()
            else:
                self._arm_idle()
        self.pool.dispatch()

    def _arm_idle(self) -> None:
        if self.idle_timer is None and not self.lost:
            self.idle_timer = self.pool.client.clock.callLater(self.pool.client.idle_timeout, self._idle)

    def _idle(self) -> None:
        self.idle_timer = None
        if not self.streams:
            self.close()

    def close(self) -> None:
        """GOAWAY NO_ERROR and close (after the streams in flight, which `draining` waits for)."""
        if self.lost:
            return
        self.draining = True
        if self.streams:
            return
        self.write_out()
        self.transport.write(goaway_frame(0, ErrorCodes.NO_ERROR))
        self._close_transport()

    def _close_transport(self) -> None:
        # A TLS transport does not start its shutdown while a producer is registered.
        try:
            self.transport.unregisterProducer()
        except Exception:
            pass
        self.transport.loseConnection()

    def write_out(self) -> None:
        if self.lost:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def _die(self, reason: Failure) -> None:
        self.draining = True
        self._close_transport()
        self._fail_all(reason)

    def _fail_all(self, reason: Failure) -> None:
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if stream.response is None:
                stream.fail(Failure(ResponseFailed([reason])) if not reason.check(ResponseFailed, StreamRefused) else reason)
            else:
                stream.end(Failure(ResponseFailed([reason])))

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[assignment]
        self.lost = True
        self.draining = True
        if self.idle_timer is not None:
            if self.idle_timer.active():
                self.idle_timer.cancel()
            self.idle_timer = None
        self.pool.disconnected(self)
        self._fail_all(reason)

    # IPushProducer: the transport's back-pressure pauses request bodies

    def pauseProducing(self) -> None:
        self.paused = True
        for stream in self.streams.values():
            if not stream.body_over and not stream.body_paused:
                stream.body_paused = True
                try:
                    stream.body.pauseProducing()
                except Exception:
                    pass

    def resumeProducing(self) -> None:
        self.paused = False
        for stream in list(self.streams.values()):
            stream.flush()

    def stopProducing(self) -> None:
        self.paused = True


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


class _ConnectionFactory(Factory):
    def __init__(self, pool: "_TargetPool", tls: bool) -> None:
        self.pool = pool
        self.tls = tls

    def buildProtocol(self, addr: Any) -> H2ClientProtocol:
        return H2ClientProtocol(self.pool, self.tls)


class _TargetPool:
    """The connections to one target, and the requests waiting for one."""

    def __init__(self, client: "H2UpstreamClient", key: Any) -> None:
        self.client = client
        self.key = key
        self.connections: List[H2ClientProtocol] = []
        self.connecting = 0
        self.waiting: List[_Stream] = []
        self.endpoint: Any = None
        self.scheme = b"https" if client.tls else b"http"

    def submit(self, stream: _Stream, endpoint: Any) -> None:
        self.endpoint = endpoint
        for connection in self.connections:
            if connection.capacity > 0:
                stream.start(connection)
                return
        self.waiting.append(stream)
        self.dispatch()

    def dispatch(self) -> None:
        """Start waiting requests on connections with room; open a connection when none will have any."""
        waiting = self.waiting
        while waiting:
            connection = next((c for c in self.connections if c.capacity > 0), None)
            if connection is None:
                break
            waiting.pop(0).start(connection)
        if waiting and self.connecting == 0 and self.endpoint is not None:
            self._connect()

    def _connect(self) -> None:
        self.connecting += 1
        d = self.endpoint.connect(_ConnectionFactory(self, self.client.tls))
        d.addErrback(self._connect_failed)

    def connected(self, connection: H2ClientProtocol) -> None:
        self.connecting -= 1
        self.connections.append(connection)
        self.dispatch()

    def _connect_failed(self, failure: Failure) -> None:
        self.connecting -= 1
        waiting, self.waiting = self.waiting, []
        for stream in waiting:
            stream.fail(failure)

    def disconnected(self, connection: H2ClientProtocol) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        self.dispatch()

    def refused(self, stream: _Stream, why: str) -> None:
        """`stream` was not processed: send it again (no body), or fail it as safe to retry."""
        connection = stream.connection
        if connection is not None and connection.streams.get(stream.stream_id) is stream:
            del connection.streams[stream.stream_id]
        if stream.body is None and not stream.redispatched and not stream.result.called:
            stream.redispatched = True
            stream.connection = None
            stream.stream_id = 0
            self.waiting.append(stream)
            self.dispatch()
            return
        stream.fail(Failure(StreamRefused(f"the upstream refused the stream ({why})")))

    def forget(self, stream: _Stream) -> None:
        if stream in self.waiting:
            self.waiting.remove(stream)

    def close(self) -> None:
        for connection in list(self.connections):
            connection.close()


class H2UpstreamClient:
    """
    The `UpstreamClient` of ``protocol: h2`` and ``h2c`` upstreams.

    :param tls: ``h2`` (the targets' endpoints are TLS, with ALPN ``h2``),
        else ``h2c``.
    :param idle_timeout: a connection without streams for this long is closed.
    """

    def __init__(self, clock: Any, *, tls: bool, idle_timeout: float) -> None:
        self.clock = clock
        self.tls = tls
        self.idle_timeout = idle_timeout
        self.pools: Dict[Any, _TargetPool] = {}

    def request(
        self,
        target: Any,
        method: bytes,
        path: bytes,
        headers: Headers,
        body: Any,
        interim: Optional[Callable[[int, Headers], None]] = None,
    ) -> "Deferred[Any]":
        pool = self.pools.get(target.key)
        if pool is None:
            pool = self.pools[target.key] = _TargetPool(self, target.key)
        raw = headers.raw
        host = raw.get(b"Host")
        authority = host[0] if host else target.host_header
        fields = [(b":method", method), (b":scheme", pool.scheme), (b":authority", authority), (b":path", path or b"/")]
        fields = to_h2_fields(fields, headers)
        fields.append((b"te", b"trailers"))  # this client reads trailers (gRPC servers insist on it)
        if body is not None:
            length = getattr(body, "length", UNKNOWN_LENGTH)
            if isinstance(length, int) and b"Content-Length" not in raw:
                fields.append((b"content-length", b"%d" % length))
        stream = _Stream(pool, method, fields, body, interim)
        try:
            pool.submit(stream, target.endpoint)
        except Exception:
            stream.fail(Failure())
        return stream.result

    def close(self) -> "Deferred[Any]":
        """GOAWAY every connection; streams in flight finish first."""
        for pool in self.pools.values():
            pool.close()
        d: Deferred[Any] = Deferred()
        d.callback(None)
        return d


def is_cancelled(failure: Failure) -> bool:
    return failure.check(CancelledError) is not None
