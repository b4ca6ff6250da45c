"""
The twisted.web engine (``engine: twisted``): Twisted's HTTP/1.1 and HTTP/2
server, adapted to the `Downstream` interface.

`GatewaySite` builds the channels and requests of `twistgate._twisted_compat`
(streaming request bodies, edge limits); each request reaches the root
resource as a `TwistedDownstream`, so the exchange never sees twisted.web's
`Request`.  Kept selectable for one release beside the HTTP/1.1 engine on
httptools, so the two can be compared and the change rolled back.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.web import server
from twisted.web.http_headers import Headers as TwistedHeaders

from twistgate._twisted_compat.web_server import GatewayChannel, GatewayRequest, channel_protocol, h2_tls_transport
from twistgate.config.model import LimitsConfig
from twistgate.headers import Headers
from twistgate.http import RFC9110Phrases, reason_phrase
from twistgate.upstream.body import BytesBody

__all__ = ["GatewaySite", "TwistedDownstream"]

_NO_BODY_STATUS = frozenset({204, 304})


def _to_twisted(headers: Headers) -> TwistedHeaders:
    converted = TwistedHeaders()
    for name, values in headers.raw.items():
        converted.setRawHeaders(name, values)
    return converted


class TwistedDownstream:
    """A twisted.web `Request` seen as a `twistgate.engine.api.Downstream`."""

    __slots__ = (
        "request", "method", "target", "path", "query", "version", "headers", "client", "secure", "body", "listener",
    )  # fmt: skip

    def __init__(self, request: GatewayRequest, listener: str = "") -> None:
        self.request = request
        self.listener = listener
        self.method: bytes = request.method
        self.target: bytes = request.uri
        self.path, _, self.query = request.uri.partition(b"?")
        self.version: bytes = request.clientproto
        self.headers = Headers()
        self.headers.raw = {name: list(values) for name, values in request.requestHeaders.getAllRawHeaders()}
        peer = request.client
        self.client: Tuple[str, int] = (getattr(peer, "host", ""), getattr(peer, "port", 0)) if peer is not None else ("", 0)
        self.secure = request.isSecure()
        self.body = _body_of(request)

    # -- what the exchange reads ----------------------------------------------

    @property
    def transport(self) -> Any:
        transport = self.request.transport
        return transport if transport is not None else h2_tls_transport(self.request)

    @property
    def keep_alive(self) -> bool:
        channel = self.request.channel
        return channel is None or getattr(channel, "persistent", True)

    @keep_alive.setter
    def keep_alive(self, value: bool) -> None:
        channel = self.request.channel
        if not value and channel is not None and hasattr(channel, "persistent"):
            channel.persistent = False  # HTTP/2 streams have no connection to close

    @property
    def expects_continue(self) -> bool:
        return False  # the channel answers 100-continue itself

    @property
    def body_complete(self) -> bool:
        return getattr(self.request, "body_complete", True)  # a stock Request has read it all

    @property
    def received_bytes(self) -> int:
        return getattr(self.request, "received_bytes", 0)

    @property
    def sent_bytes(self) -> int:
        return self.request.sentLength

    @property
    def max_body(self) -> int:
        limit = getattr(self.request, "body_limit", None)  # a stock Request (tests) has read its body already
        return limit() if limit is not None else getattr(self.request, "max_body", 0)

    @max_body.setter
    def max_body(self, value: int) -> None:
        self.request.max_body = value

    @property
    def code(self) -> int:
        return self.request.code

    @property
    def started_writing(self) -> bool:
        return bool(self.request.startedWriting)

    @property
    def finished(self) -> bool:
        return bool(self.request.finished) or self.request.channel is None

    # -- answering ----------------------------------------------------------------

    def notify_finish(self) -> Any:
        return self.request.notifyFinish()

    def send_interim(self, status: int, headers: Headers) -> None:
        pass  # twisted.web cannot send 1xx answers other than its own 100 Continue

    def write_head(self, status: int, reason: Optional[bytes], headers: Headers) -> None:
        request = self.request
        if not self.keep_alive:
            headers.raw[b"Connection"] = [b"close"]
        request.setResponseCode(status, reason or reason_phrase(status))
        request.responseHeaders = _to_twisted(headers)

    def respond(self, status: int, reason: Optional[bytes], headers: Headers, body: bytes) -> None:
        request = self.request
        if request.finished or request.startedWriting or request.channel is None:
            return
        if b"Content-Length" not in headers.raw and status not in _NO_BODY_STATUS:
            headers.raw[b"Content-Length"] = [b"%d" % len(body)]
        self.write_head(status, reason, headers)
        request.write(body)
        request.finish()

    def write(self, data: bytes) -> None:
        if not self.finished:
            self.request.write(data)

    def finish(self, trailers: Optional[Headers] = None) -> None:
        # twisted.web cannot send trailer fields: they are dropped.
        if not self.finished:
            self.request.finish()

    def abort(self) -> None:
        channel = self.request.channel
        transport = getattr(channel, "transport", None) if channel is not None else None
        if transport is not None:
            transport.abortConnection()

    def register_producer(self, producer: Any) -> None:
        self.request.registerProducer(producer, True)

    def unregister_producer(self) -> None:
        request = self.request
        if request.producer is not None and request.channel is not None:
            request.unregisterProducer()


def _body_of(request: GatewayRequest) -> Any:
    """
    The streaming body of an HTTP/1.1 request, or (HTTP/2 streams, whose body
    Twisted has already read, size-limited) the buffered content.
    """
    if getattr(request, "body", None) is not None or getattr(request, "streaming", False):
        return request.body
    content = request.content
    if content is None:
        return None
    data = content.read()
    return BytesBody(data) if data else None


class GatewaySite(server.Site):
    """
    A `Site` of the gateway's channels and requests; each request goes to
    ``resource.render(downstream)`` as a `TwistedDownstream`.
    """

    displayTracebacks = False

    def __init__(
        self,
        resource: Any,
        limits: LimitsConfig,
        reactor: IReactorTime,
        *,
        on_connection: Any = None,
        listener: str = "",
        body_cap: Any = None,
        own_headers: Any = None,
    ) -> None:
        """
        :param on_connection: called with +1 / -1 as connections open and close.
        :param listener: the listener's name, given to each request (`Downstream.listener`).
        :param body_cap: ``() -> int``: the most body any route accepts now
            (the generation's ``body_cap``); default ``limits.max_request_body``.
        :param own_headers: ``(secure) -> ((name, value), ...)``: headers
            ``defaults:`` gives the engine's own refusals (400, 408, 413, 414, 431).
        """
        super().__init__(
            resource,
            requestFactory=GatewayRequest,
            parsePOSTFormSubmission=False,
            reactor=reactor,
            timeout=limits.idle_timeout,
        )
        self.limits = limits
        self.on_connection = on_connection
        self.listener = listener
        self.body_cap = body_cap if body_cap is not None else (lambda: limits.max_request_body)
        self.own_headers = own_headers if own_headers is not None else (lambda secure: ())

    def protocol(self) -> Any:  # type: ignore[override]
        return channel_protocol(GatewayChannel(self.limits), self.on_connection)

    def handle(self, request: GatewayRequest) -> None:
        self.resource.render(TwistedDownstream(request, self.listener))

    def log(self, request: Any) -> None:
        # Access logging is the gateway's own business (structured, per
        # exchange); Twisted's combined log line would cost per request.
        pass


class PhrasedRequest(RFC9110Phrases, server.Request):
    """
    A stock twisted.web request that answers with RFC 9110 reason phrases,
    and without the ``Server: TwistedWeb/<version>`` header
    `server.Request.process` sets before rendering (it tells every client
    which Twisted release to aim at).
    """

    def render(self, resrc: Any) -> None:
        self.responseHeaders.removeHeader(b"Server")
        super().render(resrc)

    def processingFailed(self, reason: Any) -> Any:
        self.responseHeaders.removeHeader(b"Server")
        return super().processingFailed(reason)


def plain_site(resource: Any, reactor: IReactorTime) -> server.Site:
    """
    A `Site` for the gateway's own small servers (the admin API, the demo
    backends): stock twisted.web, RFC 9110 phrases, no tracebacks, no
    per-request log line.
    """
    site = server.Site(resource, requestFactory=PhrasedRequest, reactor=reactor)
    site.displayTracebacks = False
    site.log = lambda request: None  # type: ignore[method-assign]
    return site

