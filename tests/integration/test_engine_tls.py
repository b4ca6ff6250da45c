"""The engine over TLS: a listener with client certificates, and the pool through a TLS endpoint."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any, List

import pytest_twisted
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet import ssl as tssl
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.threads import deferToThread
from twisted.web.client import readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.tls.harness import pki  # noqa: F401  (fixture)
from zope.interface import implementer

from twistgate.engine import HTTP1ServerFactory, ServerLimits
from twistgate.engine.pool import UpstreamPool
from twistgate.headers import Headers


@implementer(IOpenSSLContextFactory)
class _Context:
    """A server context built from `cryptography` objects (pyOpenSSL's own key and X509 types are deprecated)."""

    def __init__(self, issued: Any, chain: Any = (), client_ca: Any = None) -> None:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.use_certificate(issued.cert)
        for intermediate in chain:
            context.add_extra_chain_cert(intermediate.cert)
        context.use_privatekey(issued.private_key)
        if client_ca is not None:
            context.get_cert_store().add_cert(crypto.X509.from_cryptography(client_ca.cert))
            context.set_session_id(b"engine-test")
            context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda conn, cert, err, depth, ok: bool(ok))
        self.context = context

    def getContext(self) -> Any:
        return self.context


def _ca(issued: Any) -> tssl.Certificate:
    return tssl.Certificate.loadPEM(Path(issued.certificate).read_text())


def _common_name(cert: Any) -> str:
    return cert.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest_twisted.inlineCallbacks
def test_tls_listener_exposes_the_client_certificate(reactor, pki):  # noqa: F811
    seen: List[Any] = []

    def handler(request: Any) -> None:
        name = _common_name(request.transport.getPeerCertificate())
        seen.append((request.secure, name))
        request.respond(200, None, Headers(), b"hello " + name.encode())

    options = _Context(pki.server, chain=[pki.intermediate], client_ca=pki.clients_ca)
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
    site = Site(_Hello())
    port = reactor.listenSSL(0, site, _Context(pki.upstream), interface="127.0.0.1")
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
