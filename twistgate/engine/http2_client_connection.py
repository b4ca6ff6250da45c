"""
One HTTP/2 connection to an upstream target (`H2ClientProtocol`): it opens
the streams its pool (`twistgate.engine.http2_client`) starts on it, turns
the upstream's events into calls on those streams
(`twistgate.engine.http2_client_stream`), and drains after the upstream's
GOAWAY, handing back to the pool the streams the upstream did not process.
``h2`` upstreams must have negotiated ``h2`` over ALPN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

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
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed
from zope.interface import implementer

from twistgate.engine.http2_common import (
    acknowledge_data,
    close_transport,
    code_name,
    goaway_frame,
    new_connection,
    open_connection_window,
)
from twistgate.engine.http2_client_stream import H2ClientStream, StreamRefused, UpstreamProtocolError

if TYPE_CHECKING:
    from twistgate.engine.http2_client import H2TargetPool

__all__ = ["H2ClientProtocol"]

STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 8 * STREAM_WINDOW
#: Streams assumed available on a connection before the server's SETTINGS arrive.
DEFAULT_CAPACITY = 100


@implementer(IPushProducer)
class H2ClientProtocol(Protocol):
    """One HTTP/2 connection to an upstream target."""

    def __init__(self, pool: "H2TargetPool", tls: bool) -> None:
        self.pool = pool
        self.tls = tls
        self.streams: Dict[int, H2ClientStream] = {}
        self.lost = False
        self.draining = False  # GOAWAY received, or closing: no new streams
        self.checked_alpn = not tls
        self.paused = False
        self.idle_timer: Any = None
        self.settings_seen = False  # the server's first SETTINGS (its stream limit) has arrived
        self.h2 = new_connection(
            client_side=True,
            settings={
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
        if not self.settings_seen:
            return 1 - len(self.streams)  # one stream until the server says how many it takes
        limit = self.h2.remote_settings.max_concurrent_streams
        if limit > 2**31:
            limit = DEFAULT_CAPACITY  # none announced
        return limit - len(self.streams)

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        open_connection_window(self.h2, CONNECTION_WINDOW)
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
            self.settings_seen = True
            if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                for each in list(self.streams.values()):
                    each.flush()
            self.pool.dispatch()  # room for waiting requests, maybe
        elif kind is ConnectionTerminated:
            self._goaway(event)

    def _reset(self, stream: H2ClientStream, code: int) -> None:
        if stream.response is None and code == ErrorCodes.REFUSED_STREAM:
            self.pool.refused(stream, "REFUSED_STREAM")
            return
        reason = Failure(ConnectionLost(f"the upstream reset the stream ({code_name(code)})"))
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
            self._die(Failure(UpstreamProtocolError(f"the upstream ended the connection ({code_name(event.error_code)})")))
            return
        if not self.streams:
            self.close()
        self.pool.dispatch()

    def acknowledge(self, sid: int, size: int) -> None:
        if size <= 0 or self.lost:
            return
        acknowledge_data(self.h2, sid, size)
        self.write_out()

    def stream_over(self, stream: H2ClientStream) -> None:
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
        close_transport(self.transport)

    def write_out(self) -> None:
        if self.lost:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def _die(self, reason: Failure) -> None:
        self.draining = True
        close_transport(self.transport)
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
