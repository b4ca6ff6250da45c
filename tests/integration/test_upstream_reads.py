"""PyPy's small upstream reads over real sockets, plain and TLS: the TCP transport below is the one sized."""

from __future__ import annotations

from typing import Any, List

import pytest_twisted
from twisted.internet import ssl as tssl, tcp
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.web.client import readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.test_engine_tls import _Context, _ca
from tests.tls.harness import pki  # noqa: F401  (fixture)
from twistgate.engine import pool as pool_module
from twistgate.engine.pool import UpstreamPool
from twistgate.engine.upstream_reads import LARGE_READ, SMALL_READ, SmallReadsClientProtocol
from twistgate.headers import Headers

BIG = b"x" * 200_000


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
def _exchange(pool: UpstreamPool, endpoint: Any, made: List[SmallReadsClientProtocol]) -> Any:
    headers = Headers({b"Host": [b"upstream.internal"]})
    response = yield pool.request("k", endpoint, b"GET", b"/big", headers, None)
    assert (yield readBody(response)) == BIG
    assert isinstance(made[0].reads, tcp.Client) and made[0].reads.bufferSize == LARGE_READ  # from the head on
    response = yield pool.request("k", endpoint, b"GET", b"/", headers, None)
    assert (yield readBody(response)) == b"small"
    assert len(made) == 1 and made[0].reads.bufferSize == SMALL_READ  # the same connection, reading small again


@pytest_twisted.inlineCallbacks
def test_a_plain_upstream_connection_is_sized(reactor, monkeypatch):
    made = _recording(monkeypatch)
    port = reactor.listenTCP(0, Site(_Answers()), interface="127.0.0.1")
    pool = UpstreamPool(reactor)
    try:
        yield _exchange(pool, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), made)
    finally:
        yield pool.close()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_under_tls_the_tcp_connection_below_is_sized(reactor, monkeypatch, pki):  # noqa: F811
    made = _recording(monkeypatch)
    port = reactor.listenSSL(0, Site(_Answers()), _Context(pki.upstream), interface="127.0.0.1")
    pool = UpstreamPool(reactor)
    try:
        creator = tssl.optionsForClientTLS("upstream.internal", trustRoot=_ca(pki.upstream_ca))
        endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
        yield _exchange(pool, endpoint, made)
    finally:
        yield pool.close()
        yield port.stopListening()
