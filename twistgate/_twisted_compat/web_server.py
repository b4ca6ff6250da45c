"""
The twisted.web engine's request (``engine: twisted``).

Twisted's stock `Request` reads a whole body (memory, then a temp file)
before anything renders.  A gateway must decide at header time and stream,
so `GatewayRequest` starts processing in `gotLength()` and feeds the body's
chunks to a `StreamingBody` the upstream connection consumes.  This leans on
private parts of `twisted.web.http` (the channel's `_command`, `_path`,
`_version`...), which is why it lives in `twistgate._twisted_compat`
(checked at startup by `check()`).  HTTP/2 streams take the stock buffered
path, still size-limited.  The channel is `web_channel.GatewayChannel`;
the JSON refusals both send are in `web_errors`.
"""

from __future__ import annotations

from typing import Any, Optional

from h2.exceptions import ProtocolError as H2ProtocolError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server

from twistgate._twisted_compat.web_channel import GatewayChannel, channel_protocol
from twistgate._twisted_compat.web_errors import send_error
from twistgate.config.model import LimitsConfig
from twistgate.errors import GatewayError, PayloadTooLarge, RequestTimeout
from twistgate.http import RFC9110Phrases
from twistgate.upstream.body import BodyAborted, StreamingBody

# GatewayChannel and channel_protocol are the engine's (twistgate.engine.twisted_web) from here too.
__all__ = ["GatewayChannel", "GatewayRequest", "channel_protocol", "h2_tls_transport", "send_error"]

_log = Logger()


class GatewayRequest(RFC9110Phrases, server.Request):
    """A request whose body streams upstream as it arrives."""

    defaultContentType = None  # never invent a Content-Type for upstream responses
    _parsePOSTFormSubmission = False
    body: Optional[StreamingBody] = None
    streaming = False
    body_complete = True
    received_bytes = 0  # request body bytes read from the client
    max_body: Optional[int] = None  # the route's limit once known (Downstream.max_body)

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kwargs)

    def gotLength(self, length: Optional[int]) -> None:
        channel = self.channel
        if length == 0 or not isinstance(channel, GatewayChannel):
            return super().gotLength(length)
        # A body follows on HTTP/1.1: route, authorise and connect now.
        self.method = channel._command
        self.uri = channel._path
        self.clientproto = channel._version
        self.path = self.uri.split(b"?", 1)[0]
        self.args = {}
        self.streaming = True
        self.body_complete = False
        if length is not None and length > self.body_limit():
            self.site = channel.site
            send_error(self, PayloadTooLarge())
            return
        self.body = StreamingBody(length, channel.transport)
        self._body_timer = channel.callLater(self.site_limits().body_timeout, self._body_stalled)
        self.process()

    def handleContentChunk(self, data: bytes) -> None:
        if not self.streaming:
            # Buffered (HTTP/2 streams): still never more than the limit.
            if self.content is None:
                return
            self.received_bytes += len(data)
            if self.received_bytes > self.body_limit():
                self.content.close()
                self.content = None
                stream = self.channel  # finish() forgets it
                send_error(self, PayloadTooLarge())
                _reset_h2_stream_when_answered(stream)
                return
            self.content.write(data)
            return
        self.received_bytes += len(data)
        body = self.body
        if body is None:
            return  # answered already; the rest is discarded
        if body.received + len(data) > self.body_limit():
            self.refuse_too_large()
            return
        if self._body_timer is not None and self._body_timer.active():
            self._body_timer.reset(self.site_limits().body_timeout)
        body.write(data)

    def body_room(self) -> int:
        """How many more body bytes the limit allows."""
        return self.body_limit() - self.received_bytes

    def refuse_too_large(self) -> None:
        """413 (if nothing was answered yet), then abort the body on its way upstream."""
        # 413 first: aborting the body fails the upstream request, whose
        # 502 must not answer before it.
        if not self.startedWriting and not self.finished:
            send_error(self, PayloadTooLarge())
        body, self.body = self.body, None
        if body is not None:
            body.abort(BodyAborted("request body too large"))

    _body_timer: Any = None

    def _body_stalled(self) -> None:
        """``client_body_timeout``: 408 (as refuse_too_large answers 413), unless the gateway is what holds the client back."""
        body = self.body
        if body is None or self.body_complete:
            return
        if body.client_paused:
            self._body_timer = self.channel.callLater(self.site_limits().body_timeout, self._body_stalled)
            return
        if not self.startedWriting and not self.finished:
            send_error(self, RequestTimeout())
        channel = getattr(self, "channel", None)  # finish() may have let it go
        if channel is not None:
            channel.persistent = False
        body, self.body = self.body, None
        if body is not None:
            body.abort(BodyAborted("request body stalled"))

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None and self._body_timer.active():
            self._body_timer.cancel()
        self._body_timer = None

    def connectionLost(self, reason: Failure) -> None:
        self._stop_body_timer()
        super().connectionLost(reason)

    def body_limit(self) -> int:
        """The route's ``max_request_body`` once routed; before, the most any route allows."""
        if self.max_body is not None:
            return self.max_body
        site = getattr(self.channel, "site", None)
        cap = getattr(site, "body_cap", None)
        return cap() if cap is not None else self.site_limits().max_request_body

    def site_limits(self) -> LimitsConfig:
        channel = self.channel
        limits = getattr(channel, "limits", None)
        return limits if limits is not None else channel.site.limits

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.streaming:
            self.body_complete = True
            self._stop_body_timer()
            if self.body is not None:
                self.body.finish()
            return
        if self.content is None:
            return  # refused as too large
        super().requestReceived(command, path, version)

    def process(self) -> None:
        self.site = site = self.channel.site
        try:
            site.handle(self)
        except Exception:
            self.processingFailed(Failure())

    def processingFailed(self, reason: Failure) -> None:
        _log.failure("unhandled error handling {uri}", reason, uri=self.uri)
        send_error(self, GatewayError())

    def finish(self) -> None:
        self._stop_body_timer()
        if not self.body_complete and self.channel is not None:
            # Answered before the client finished sending: the unread rest of
            # the body must not be parsed as a next request.
            self.channel.persistent = False
            if self.body is not None:
                body, self.body = self.body, None
                body.abort(BodyAborted("answered before the body was complete"))
        super().finish()


def _reset_h2_stream_when_answered(stream: Any) -> None:
    """
    HTTP/2, answered before the body was complete: Twisted forgets a stream
    once its response is sent, and a DATA frame the client sends after that
    breaks the whole connection (KeyError in H2Connection).  Resetting the
    stream with NO_ERROR right after the response (RFC 9113, 8.1) tells the
    client to stop, and h2 then discards late frames itself.
    """
    conn = getattr(stream, "_conn", None)
    sent = getattr(conn, "_streamCleanupCallbacks", {}).get(getattr(stream, "streamID", None))
    if sent is None:
        return

    def reset(stream_id: int) -> int:
        try:
            conn.conn.reset_stream(stream_id)  # type: ignore[union-attr]
        except H2ProtocolError:
            return stream_id  # the client had finished sending after all
        conn._tryToWriteControlData()  # type: ignore[union-attr]
        return stream_id

    sent.addCallback(reset)


def h2_tls_transport(request: Any) -> Any:
    """The TLS transport behind an HTTP/2 stream (its `transport` is None)."""
    return getattr(getattr(getattr(request, "channel", None), "_conn", None), "transport", None)
