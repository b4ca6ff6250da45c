"""
The engine's ceiling: a minimal reverse proxy built only from
`twistgate.engine` (the HTTP/1.1 server and the upstream pool), with none of
the gateway's routing or policies.  Forwards every request to one upstream,
streaming both ways with back-pressure.

    python bench/engine_proxy.py --port 8080 --upstream http://127.0.0.1:27001 [--profile FILE]

``--profile`` writes a cProfile dump when the process gets SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from twistgate.engine import HTTP1ServerFactory, ServerLimits, ServerRequest
from twistgate.engine.pool import PooledRequest, UpstreamPool
from twistgate.engine.errors import UpstreamClosedConnection
from twistgate.headers import Headers

HOP_BY_HOP = frozenset({
    b"Connection", b"Keep-Alive", b"Proxy-Connection", b"TE", b"Trailer",
    b"Transfer-Encoding", b"Upgrade", b"Expect",
})  # fmt: skip

REPLAY_LIMIT = 64 * 1024


def _strip(raw: dict) -> dict:
    """``raw`` without hop-by-hop fields (a copy only when there is one)."""
    if not HOP_BY_HOP.isdisjoint(raw):
        raw = {name: values for name, values in raw.items() if name not in HOP_BY_HOP}
    return raw


class Relay:
    """Streams an upstream body to the client; the upstream pauses while the client is slow."""

    __slots__ = ("request", "transport")

    def __init__(self, request: ServerRequest) -> None:
        self.request = request

    def makeConnection(self, producer: Any) -> None:
        self.transport = producer
        self.request.register_producer(producer)

    def dataReceived(self, data: bytes) -> None:
        self.request.write(data)

    def connectionLost(self, reason: Failure) -> None:
        request = self.request
        request.unregister_producer()
        if reason.type is ResponseDone or reason.type is PotentialDataLoss:
            request.finish()
        else:
            request.abort()


class EngineProxy:
    def __init__(self, upstream: str) -> None:
        url = urlsplit(upstream)
        self.host_header = url.netloc.encode("ascii")
        self.endpoint = TCP4ClientEndpoint(reactor, url.hostname, url.port or 80)
        self.key = (url.hostname, url.port)
        self.pool = UpstreamPool(reactor, max_idle_per_target=1024)

    def __call__(self, request: ServerRequest) -> None:
        raw = _strip(request.headers.raw)
        if raw is request.headers.raw:
            raw = dict(raw)
        raw[b"Host"] = [self.host_header]
        headers = Headers.__new__(Headers)
        headers.raw = raw
        body = request.body
        if body is not None:
            body.keep_for_replay(REPLAY_LIMIT)  # so the pool may send it again after a stale-connection race
        forward = _Forward()
        forward.prepare(self.pool, self.key, self.endpoint, request.method, request.target, headers, body, None)
        forward.proxy, forward.request = self, request
        self.pool.dispatch(forward)

    def _answer(self, response: Any, request: ServerRequest) -> None:
        if request.finished:
            response.deliverBody(_Drop())
            return
        headers = Headers.__new__(Headers)
        headers.raw = _strip(response.headers.raw)
        if response.whole_body is not None:
            request.respond(response.code, response.phrase, headers, response.whole_body)  # as the gateway does
            return
        request.write_head(response.code, response.phrase, headers)
        response.deliverBody(Relay(request))

    def _failed(self, failure: Failure, request: ServerRequest) -> None:
        code = b"upstream_closed_connection" if failure.check(UpstreamClosedConnection) else b"bad_gateway"
        body = b'{"error":"%s"}' % code
        request.keep_alive = False
        request.respond(502, None, Headers({b"Content-Type": [b"application/json"]}), body)


class _Forward(PooledRequest):
    """One request through the pool, reporting to the proxy without a Deferred (as the gateway's `Forwarding`)."""

    __slots__ = ("proxy", "request")

    def answered(self, response: Any) -> None:
        self.proxy._answer(response, self.request)

    def refused(self, failure: Failure) -> None:
        self.proxy._failed(failure, self.request)


class _Drop:
    def makeConnection(self, producer: Any) -> None:
        producer.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--profile", help="write a cProfile dump here on exit")
    options = parser.parse_args(argv)
    proxy = EngineProxy(options.upstream)
    limits = ServerLimits(max_request_body=1 << 40)
    factory = HTTP1ServerFactory(proxy, limits=limits, clock=reactor)
    TCP4ServerEndpoint(reactor, options.port, backlog=1024, interface=options.host).listen(factory)
    profiler = None
    if options.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(options.profile)


if __name__ == "__main__":
    main(sys.argv[1:])
