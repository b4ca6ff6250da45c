"""
`UpstreamPool`: keep-alive connections to upstream targets, and the one
internal retry a stale pooled connection deserves.

Connections are pooled per key (LIFO: the warmest first) and made through
the caller's endpoint, so TLS, mTLS, SNI and verification are the
endpoint's business.  An idle connection is never used past
``idle_timeout`` (checked when taken; a sweep closes the rest), nor when a
peek shows the upstream closed it already.

When a request on a *reused* connection fails before any byte of the
response, the upstream most likely closed the idle connection as the
request went out.  Like Go's net/http transport, the pool then sends it
once more on a fresh connection if that is safe: nothing was written yet,
or the method is idempotent, or an ``Idempotency-Key`` /
``X-Idempotency-Key`` header is present, and the body (if any) can be
sent again.  Otherwise the request fails with `UpstreamClosedConnection`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Hashable, List, Optional

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.engine.errors import UpstreamClosedConnection
from twistgate.engine.http1_client import HTTP1ClientProtocol
from twistgate.engine.upstream_reads import CLIENT_PROTOCOL
from twistgate.engine.response import UpstreamResponse
from twistgate.headers import Headers

__all__ = ["PooledRequest", "UpstreamPool"]

_log = Logger()

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_IDEMPOTENCY_KEYS = (b"Idempotency-Key", b"X-Idempotency-Key")
# Seconds idle before taking a connection is worth a peek (a syscall) at its
# socket.  The peek only finds a close the reactor has not reported yet, i.e.
# one that arrived since its last poll; an upstream closes an idle
# connection at its keep-alive timeout (seconds), so a connection idle for
# less than this was not closed for being idle.  Above the time a busy pool
# leaves connections idle (a round of 1,000 in-flight requests), which
# otherwise paid a peek per request.
_PEEK_AFTER = 0.1


class UpstreamPool:
    """
    :param clock: for idle timeouts.
    :param max_idle_per_target: idle connections kept per key.
    :param idle_timeout: seconds an idle connection may be reused after
        (keep it below the upstreams' own keep-alive timeouts).
    :param max_requests_per_connection: 0 for no limit.
    :param on_event: called with ``(name, key)``: ``"stale_retry"`` when a
        request is sent again on a fresh connection, ``"closed_by_upstream"``
        when the upstream closed a pooled connection (idle, or under a request).
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        max_idle_per_target: int = 128,
        idle_timeout: float = 4.0,
        max_requests_per_connection: int = 0,
        on_event: Optional[Callable[[str, Hashable], None]] = None,
    ) -> None:
        self.clock = clock
        self.max_idle_per_target = max_idle_per_target
        self.idle_timeout = idle_timeout
        self.max_requests_per_connection = max_requests_per_connection
        self.on_event = on_event
        self._idle: Dict[Hashable, List[HTTP1ClientProtocol]] = {}
        self._sweeper: Any = None
        self._closed = False
        self._closing: List[Deferred[None]] = []

    def request(
        self,
        key: Hashable,
        endpoint: IStreamClientEndpoint,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: Any,
        *,
        on_interim: Optional[Callable[[int, Headers], None]] = None,
    ) -> "Deferred[UpstreamResponse]":
        """Send one request; fires with the response once its head arrived (see the module docstring)."""
        result: Deferred[UpstreamResponse] = Deferred(lambda _: handle.cancel())  # `handle` is bound below
        handle = self.send(key, endpoint, method, target, headers, body, result.callback, result.errback, on_interim=on_interim)
        return result

    def send(
        self,
        key: Hashable,
        endpoint: IStreamClientEndpoint,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: Any,
        on_head: Callable[[UpstreamResponse], None],
        on_failed: Callable[[Failure], None],
        *,
        on_interim: Optional[Callable[[int, Headers], None]] = None,
    ) -> "PooledRequest":
        """
        `request` without a Deferred, for the hot path: exactly one of
        ``on_head(response)`` or ``on_failed(failure)`` is called, unless the
        returned handle's ``cancel()`` is called first (then neither is).
        """
        pooled = _CallbackRequest()
        pooled.prepare(self, key, endpoint, method, target, headers, body, on_interim)
        pooled.on_head = on_head
        pooled.on_failed = on_failed
        self.dispatch(pooled)
        return pooled

    def dispatch(self, pooled: PooledRequest) -> None:
        """
        Send a prepared `PooledRequest`: on the warmest idle connection of
        its key that is still fit for use (closing the others on the way),
        else on a new one.
        """
        stack = self._idle.get(pooled.key)
        if stack:
            now = self.clock.seconds()
            oldest_allowed = now - self.idle_timeout
            while stack:
                connection = stack.pop()
                connection.in_pool = False
                if connection.idle_since > oldest_allowed and not connection.closing:
                    # Idle for a moment only (a busy pool): the upstream had no reason to close it.
                    if now - connection.idle_since < _PEEK_AFTER or not connection.looks_closed():
                        pooled.send_on(connection, True)
                        return
                    self.event("closed_by_upstream", pooled.key)
                connection.close()
        pooled.connect()

    def idle_count(self, key: Hashable) -> int:
        return len(self._idle.get(key, ()))

    def close(self) -> "Deferred[Any]":
        """Close idle connections (and each connection released from now on); requests in flight finish."""
        self._closed = True
        waits = []
        for stack in self._idle.values():
            for connection in stack:
                connection.in_pool = False
                done: Deferred[None] = Deferred()
                connection.on_lost = done
                waits.append(done)
                connection.close()
        self._idle.clear()
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        return DeferredList(waits) if waits else succeed(None)

    # -- the idle stacks ------------------------------------------------------------

    def release(self, connection: HTTP1ClientProtocol) -> None:
        """A connection whose exchange ended cleanly and may persist."""
        limit = self.max_requests_per_connection
        stack = self._idle.get(connection.key)
        if stack is None:
            stack = self._idle[connection.key] = []
        if self._closed or (limit and connection.requests >= limit) or len(stack) >= self.max_idle_per_target:
            connection.close()
            return
        connection.idle_since = self.clock.seconds()
        connection.in_pool = True
        stack.append(connection)
        if self._sweeper is None:
            self._sweeper = self.clock.callLater(self.idle_timeout, self._sweep)

    def lost_idle(self, connection: HTTP1ClientProtocol) -> None:
        """The upstream closed an idle connection."""
        connection.in_pool = False
        stack = self._idle.get(connection.key)
        if stack is not None and connection in stack:
            stack.remove(connection)
        self.event("closed_by_upstream", connection.key)

    def _sweep(self) -> None:
        self._sweeper = None
        oldest_allowed = self.clock.seconds() - self.idle_timeout
        remaining = False
        for stack in self._idle.values():
            while stack and stack[0].idle_since <= oldest_allowed:
                connection = stack.pop(0)
                connection.in_pool = False
                connection.close()
            remaining = remaining or bool(stack)
        if remaining and not self._closed:
            self._sweeper = self.clock.callLater(self.idle_timeout / 2, self._sweep)

    def event(self, name: str, key: Hashable) -> None:
        if self.on_event is not None:
            try:
                self.on_event(name, key)
            except Exception:
                _log.failure("pool event observer failed")


class _ClientFactory(Factory):
    noisy = False

    def __init__(self, pool: UpstreamPool, key: Hashable) -> None:
        self.pool = pool
        self.key = key

    def buildProtocol(self, addr: Any) -> HTTP1ClientProtocol:
        return CLIENT_PROTOCOL(self.pool, self.key)


class PooledRequest:
    """
    One request's way through the pool: a connection, and at most one stale
    retry.  The outcome goes to `answered(response)` or `refused(failure)`,
    exactly once, unless `stop()` came first (then neither).  A base class,
    so that the caller's own per-request object (the upstream call's
    `Forwarding`) can be the pooled request itself: no second object, no
    callbacks to bind.  Set the fields, then `UpstreamPool.dispatch` it.
    """

    __slots__ = (
        "pool", "key", "endpoint", "method", "path", "headers", "payload", "on_interim", "fields",
        "connection", "connecting", "retried", "silenced",
    )  # fmt: skip

    def prepare(
        self,
        pool: "UpstreamPool",
        key: Hashable,
        endpoint: IStreamClientEndpoint,
        method: bytes,
        path: bytes,
        headers: Headers,
        payload: Any,
        on_interim: Any,
        fields: bytes = b"",
    ) -> None:
        """The request to send (``payload``: the body producer or None; ``fields``: more, as ready header lines)."""
        self.pool = pool
        self.key = key
        self.endpoint = endpoint
        self.method = method
        self.path = path
        self.headers = headers
        self.payload = payload
        self.on_interim = on_interim
        self.fields = fields
        self.connection: Optional[HTTP1ClientProtocol] = None
        self.connecting: Optional[Deferred[Any]] = None
        self.retried = False
        self.silenced = False

    def answered(self, response: UpstreamResponse) -> None:
        raise NotImplementedError

    def refused(self, failure: Failure) -> None:
        raise NotImplementedError

    def connect(self) -> None:
        d = self.endpoint.connect(_ClientFactory(self.pool, self.key))
        self.connecting = d
        d.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: HTTP1ClientProtocol) -> None:
        self.connecting = None
        if self.silenced:
            connection.close()
            return
        self.send_on(connection, False)

    def _connect_failed(self, failure: Failure) -> None:
        self.connecting = None
        if not self.silenced:
            self.silenced = True
            self.refused(failure)

    def send_on(self, connection: HTTP1ClientProtocol, reused: bool) -> None:
        self.connection = connection
        connection.send(self, reused)

    # called by the connection

    def head_received(self, response: UpstreamResponse) -> None:
        self.connection = None
        if not self.silenced:
            self.silenced = True
            self.answered(response)

    def failed(self, failure: Failure, connection: HTTP1ClientProtocol) -> None:
        self.connection = None
        if self.silenced:
            return
        error = failure.value
        stale = isinstance(error, UpstreamClosedConnection) and error.reused
        if stale and self._may_resend(error):
            self.retried = True
            replay = getattr(self.payload, "attempt", None)
            if self.payload is not None and replay is not None:
                self.payload = replay()
            self.pool.event("stale_retry", self.key)
            self.connect()
            return
        if stale:
            self.pool.event("closed_by_upstream", self.key)
        self.silenced = True
        self.refused(failure)

    def _may_resend(self, error: UpstreamClosedConnection) -> bool:
        if self.retried:
            return False
        if error.sent and self.method not in IDEMPOTENT:
            raw = self.headers.raw
            if not any(name in raw for name in _IDEMPOTENCY_KEYS):
                return False
        body = self.payload
        return body is None or bool(getattr(body, "replayable", False))

    def stop(self) -> None:
        """Give up on the request: its connection is closed, and neither outcome is reported."""
        self.silenced = True
        connecting, self.connecting = self.connecting, None
        if connecting is not None:
            connecting.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abort()


class _CallbackRequest(PooledRequest):
    """A `PooledRequest` reporting to two callbacks (`UpstreamPool.send`); its handle's ``cancel()`` is `stop`."""

    __slots__ = ("on_head", "on_failed")

    def answered(self, response: UpstreamResponse) -> None:
        self.on_head(response)

    def refused(self, failure: Failure) -> None:
        self.on_failed(failure)

    cancel = PooledRequest.stop
