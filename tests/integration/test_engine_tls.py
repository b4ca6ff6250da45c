"""The engine over TLS: a listener with client certificates, and the pool through a TLS endpoint."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any, List

import pytest_twisted
from twisted.internet import ssl as tssl
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.threads import deferToThread
from twisted.web.client import readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.tls.harness import pki  # noqa: F401  (fixture)
from twistgate.engine import HTTP1ServerFactory, ServerLimits
from twistgate.engine.pool import UpstreamPool
from twistgate.headers import Headers


def _private(issued: Any) -> tssl.PrivateCertificate:
    return tssl.PrivateCertificate.loadPEM(Path(issued.certificate).read_text() + Path(issued.key).read_text())


def _ca(issued: Any) -> tssl.Certificate:
    return tssl.Certificate.loadPEM(Path(issued.certificate).read_text())


@pytest_twisted.inlineCallbacks
def test_tls_listener_exposes_the_client_certificate(reactor, pki):  # noqa: F811
    seen: List[Any] = []

    def handler(request: Any) -> None:
        cert = request.transport.getPeerCertificate()
        seen.append((request.secure, cert.get_subject().CN))
        request.respond(200, None, Headers(), b"hello " + cert.get_subject().CN.encode())

    server = _private(pki.server)
    options = tssl.CertificateOptions(
        privateKey=server.privateKey.original,
        certificate=server.original,
        extraCertChain=[_ca(pki.intermediate).original],
        trustRoot=tssl.trustRootFromCertificates([_ca(pki.clients_ca)]),
    )
    factory = HTTP1ServerFactory(handler, limits=ServerLimits(), clock=reactor, secure=True)
    port = yield SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(factory)
    try:
        context = ssl.create_default_context(cafile=pki.root.certificate)
        context.load_cert_chain(pki.client.certificate, pki.client.key)
        url = f"https://localhost:{port.getHost().port}/"
        body = yield deferToThread(lambda: urllib.request.urlopen(url, context=context, timeout=10).read())
    finally:
        yield port.stopListening()
    assert body == b"hello client-1"
    assert seen == [(True, "client-1")]


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"tls upstream"


@pytest_twisted.inlineCallbacks
def test_pool_reaches_a_tls_upstream_through_its_endpoint(reactor, pki):  # noqa: F811
    upstream = _private(pki.upstream)
    site = Site(_Hello())
    port = reactor.listenSSL(0, site, upstream.options(), interface="127.0.0.1")
    pool = UpstreamPool(reactor)
    try:
        creator = tssl.optionsForClientTLS("upstream.internal", trustRoot=_ca(pki.upstream_ca))
        tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        endpoint = wrapClientTLS(creator, tcp)
        headers = Headers({b"Host": [b"upstream.internal"]})
        for _ in range(2):
            response = yield pool.request("tls", endpoint, b"GET", b"/", headers, None)
            body = yield readBody(response)
            assert (response.code, body) == (200, b"tls upstream")
        assert pool.idle_count("tls") == 1  # the TLS connection was reused
    finally:
        yield pool.close()
        yield port.stopListening()
