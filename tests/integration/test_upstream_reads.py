"""PyPy's small upstream reads over real sockets: a plain TCP connection is sized, a TLS one left as it is."""

from __future__ import annotations

from typing import Any, List

import pytest_twisted
from twisted.internet import ssl as tssl, tcp
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.web.client import readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.test_engine_tls import _Context, _ca
from tests.tls import harness
from twistgate.engine import pool as pool_module
from twistgate.engine.pool import UpstreamPool
from twistgate.engine.upstream_reads import LARGE_READ, SMALL_READ, SmallReadsClientProtocol
from twistgate.headers import Headers

BIG = b"x" * 200_000
pki = harness.pki  # the fixture


class _Answers(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return BIG if request.path == b"/big" else b"small"


def _recording(monkeypatch: Any) -> List[SmallReadsClientProtocol]:
    made: List[SmallReadsClientProtocol] = []

    class Recorded(SmallReadsClientProtocol):
        def connectionMade(self) -> None:
            super().connectionMade()
            made.append(self)

    monkeypatch.setattr(pool_module, "CLIENT_PROTOCOL", Recorded)  # PyPy's choice, on either interpreter
    return made


@pytest_twisted.inlineCallbacks
def _exchange(pool: UpstreamPool, endpoint: Any, made: List[SmallReadsClientProtocol], sized: bool) -> Any:
    headers = Headers({b"Host": [b"upstream.internal"]})
    response = yield pool.request("k", endpoint, b"GET", b"/big", headers, None)
    assert (yield readBody(response)) == BIG
    if sized:
        assert isinstance(made[0].reads, tcp.Client) and made[0].reads.bufferSize == LARGE_READ  # from the head on
    response = yield pool.request("k", endpoint, b"GET", b"/", headers, None)
    assert (yield readBody(response)) == b"small"
    assert len(made) == 1  # the same connection
    if sized:
        assert made[0].reads.bufferSize == SMALL_READ  # reading small again
    else:
        assert made[0].reads is None and made[0].transport.transport.bufferSize == LARGE_READ


@pytest_twisted.inlineCallbacks
def test_a_plain_upstream_connection_is_sized(reactor, monkeypatch):
    made = _recording(monkeypatch)
    port = reactor.listenTCP(0, Site(_Answers()), interface="127.0.0.1")
    pool = UpstreamPool(reactor)
    try:
        yield _exchange(pool, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), made, True)
    finally:
        yield pool.close()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_tls_connection_is_left_as_it_is(reactor, monkeypatch, pki):
    made = _recording(monkeypatch)
    port = reactor.listenSSL(0, Site(_Answers()), _Context(pki.upstream), interface="127.0.0.1")
    pool = UpstreamPool(reactor)
    try:
        creator = tssl.optionsForClientTLS("upstream.internal", trustRoot=_ca(pki.upstream_ca))
        endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
        yield _exchange(pool, endpoint, made, False)
    finally:
        yield pool.close()
        yield port.stopListening()
