"""
What an HTTP/2 server connection does for its streams on the way out:
their HEADERS, trailers and resets, their queued DATA sent as the client's
flow-control windows allow, the acknowledgements that reopen the client's
windows, the engine's own answers on one stream (431, 413...), and the TCP
transport's back-pressure passed on to every stream's producer.

`H2StreamOutput` is a part of `H2ServerProtocol`
(`twistgate.engine.http2_server_connection`), kept apart because it is the
one interface streams see of their connection; the connection's lifetime
and the events it reads are there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from h2.errors import ErrorCodes

from twistgate.engine.http2_common import STREAM_GONE, DrainingH2Connection, acknowledge_data, send_within_window, to_h2_fields
from twistgate.errors import GatewayError, error_response
from twistgate.headers import Headers
from twistgate.http import request_id_from

if TYPE_CHECKING:
    from twistgate.engine.http2_server_stream import H2Stream

__all__ = ["H2StreamOutput"]


class H2StreamOutput:
    """
    Frames out for the streams of one connection.  The connection provides
    the attributes below; `blocked` holds the streams with bytes queued for
    want of window, flushed again when the client reopens it.
    """

    h2: DrainingH2Connection
    transport: Any
    clock: Any
    streams: Dict[int, "H2Stream"]
    blocked: Dict[int, "H2Stream"]
    paused: bool  # the transport asked us to stop writing
    closing: bool  # nothing more is written

    def refuse(self, stream: "H2Stream", error: GatewayError) -> None:
        """The engine's own answer on one stream (431, 413...), JSON as everywhere."""
        if stream.started_writing or stream.finished:
            self.reset_stream(stream, ErrorCodes.CANCEL if error.status == 413 else ErrorCodes.INTERNAL_ERROR)
            stream.reset_by_peer(ErrorCodes.CANCEL)
            return
        status, headers, body = error_response(error, request_id_from(stream.headers), _http_date(self.clock))
        stream.respond(status, None, headers, body)

    def send_headers(self, stream: "H2Stream", fields: List[Tuple[bytes, bytes]], end_stream: bool) -> None:
        try:
            self.h2.send_headers(stream.stream_id, fields, end_stream=end_stream)
        except STREAM_GONE:
            return
        self.write_out()

    def end_stream(self, stream: "H2Stream", trailers: Optional[Headers]) -> None:
        try:
            if trailers is not None:
                self.h2.send_headers(stream.stream_id, to_h2_fields([], trailers), end_stream=True)
            else:
                self.h2.end_stream(stream.stream_id)
        except STREAM_GONE:
            return
        self.write_out()

    def reset_stream(self, stream: "H2Stream", code: int) -> None:
        if stream._closed:
            return
        stream._closed = True
        try:
            self.h2.reset_stream(stream.stream_id, code)
        except STREAM_GONE:
            return
        self.write_out()

    def acknowledge(self, stream: "H2Stream", size: int) -> None:
        if size > 0:
            acknowledge_data(self.h2, stream.stream_id, size)

    def flush_stream(self, stream: "H2Stream") -> None:
        """Send what the windows allow of `stream`'s queued body."""
        if stream._done:
            return
        if self.paused:
            self.blocked[stream.stream_id] = stream
            return
        sid = stream.stream_id
        try:
            sent = send_within_window(self.h2, sid, stream._queue)
        except STREAM_GONE:
            stream._queue = []
            stream._queued = 0
            return
        stream._queued -= sent
        if stream._queue:
            self.blocked[sid] = stream
        else:
            self.blocked.pop(sid, None)
        if sent:
            self.write_out()
        stream._drained()

    def flush_all(self) -> None:
        for stream in list(self.blocked.values()):
            self.flush_stream(stream)

    def write_out(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closing:
            self.transport.write(data)

    # -- IPushProducer: the TCP transport's back-pressure --------------------------------

    def pauseProducing(self) -> None:
        self.paused = True
        for stream in self.streams.values():
            stream._pause_producer()

    def resumeProducing(self) -> None:
        self.paused = False
        for stream in list(self.streams.values()):
            if stream._queue:
                self.flush_stream(stream)
            else:
                stream._drained()

    def stopProducing(self) -> None:
        self.paused = True


def _http_date(clock: Any) -> bytes:
    from twisted.web.http import datetimeToString

    return datetimeToString(clock.seconds())
