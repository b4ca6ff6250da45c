"""
TLS towards upstreams over real sockets: `Agent(reactor,
contextFactory=policy_for(config))` against a real TLS upstream, which
records the SNI it was sent and the client certificate it verified.
"""

from __future__ import annotations

import os
import textwrap

import pytest
import pytest_twisted
from OpenSSL import crypto
import twisted
from twisted.internet.ssl import Certificate, CertificateOptions, trustRootFromCertificates
from twisted.web._newclient import ResponseNeverReceived
import treq
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.tls.harness import pki  # noqa: F401  (fixture)
from twistgate.config import load_text
from twistgate.upstream.tls import policy_for


class WhoCalled(Resource):
    """
    Answers with the subject of the client certificate it verified, or
    'anonymous'; records the SNI of the connection each request came on.
    (Not a servername callback on the context: pyOpenSSL 25.1, the newest
    for Python 3.9, counts a context as used once made, and warns at any
    callback set on it after.)
    """

    isLeaf = True

    def __init__(self, server_names):
        super().__init__()
        self.server_names = server_names

    def render_GET(self, request):
        self.server_names.append(request.transport.getHandle().get_servername())
        peer = request.transport.getPeerCertificate()
        if peer is None:
            return b"anonymous"
        return peer.to_cryptography().subject.rfc4514_string().encode()


class TLSUpstream:
    def __init__(self, reactor, pki, *, require_client=False):
        self.server_names = []
        options = dict(
            privateKey=pki.upstream.private_key,  # cryptography objects: pyOpenSSL deprecated its own here
            certificate=pki.upstream.cert,
        )
        if require_client:
            options["trustRoot"] = trustRootFromCertificates([Certificate(_x509(pki.upstream_ca.cert))])
        site = Site(WhoCalled(self.server_names))
        site.log = lambda request: None
        self.port = reactor.listenSSL(0, site, CertificateOptions(**options), interface="127.0.0.1")

    @property
    def number(self):
        return self.port.getHost().port


def _x509(cert):
    """For a trust root: X509Store takes pyOpenSSL's X509 (not deprecated there)."""
    return crypto.X509.from_cryptography(cert)


@pytest.fixture
def upstreams(reactor):
    started = []
    pools = []

    def start(pki, **kwargs):
        upstream = TLSUpstream(reactor, pki, **kwargs)
        started.append(upstream)
        return upstream

    start.pools = pools
    yield start
    for pool in pools:
        pytest_twisted.blockon(pool.closeCachedConnections())
    for upstream in started:
        pytest_twisted.blockon(upstream.port.stopListening())


def upstream_config(tls_yaml, port):
    text = textwrap.dedent(
        f"""
        listeners: [{{name: a, endpoint: "tcp:1"}}]
        upstreams:
          svc:
            targets: [{{url: "https://127.0.0.1:{port}"}}]
        """
    )
    if tls_yaml is not None:
        text += f"    tls: {tls_yaml}\n"
    return load_text(text, filename="gw.yaml", environ={}).upstreams["svc"]


def failure_text(caught):
    """What the TLS layer said: the Agent wraps it in ResponseNeverReceived."""
    return " ".join(str(reason.value) for reason in caught.value.reasons)


@pytest_twisted.inlineCallbacks
def fetch(reactor, upstreams, config):
    pool = HTTPConnectionPool(reactor, persistent=False)
    upstreams.pools.append(pool)
    agent = Agent(reactor, contextFactory=policy_for(config), pool=pool)
    response = yield agent.request(b"GET", config.targets[0].url.encode() + b"/")
    body = yield treq.content(response)
    return response.code, body


@pytest_twisted.inlineCallbacks
def test_verified_against_the_configured_ca(reactor, pki, upstreams):
    """The upstream's certificate chains to `ca` and names the target's IP: 200, and no SNI for an IP."""
    upstream = upstreams(pki)
    code, body = yield fetch(reactor, upstreams, upstream_config(f"{{ca: {pki.upstream_ca.certificate}}}", upstream.number))
    assert (code, body) == (200, b"anonymous")
    assert upstream.server_names == [None]


@pytest_twisted.inlineCallbacks
def test_server_name_is_sent_and_verified(reactor, pki, upstreams):
    upstream = upstreams(pki)
    config = upstream_config(f"{{ca: {pki.upstream_ca.certificate}, server_name: upstream.internal}}", upstream.number)
    code, _ = yield fetch(reactor, upstreams, config)
    assert code == 200 and upstream.server_names == [b"upstream.internal"]


@pytest_twisted.inlineCallbacks
def test_wrong_server_name_is_refused(reactor, pki, upstreams):
    """A certificate that does not name server_name fails verification (service_identity)."""
    upstream = upstreams(pki)
    config = upstream_config(f"{{ca: {pki.upstream_ca.certificate}, server_name: someone-else.internal}}", upstream.number)
    with pytest.raises(ResponseNeverReceived) as caught:
        yield fetch(reactor, upstreams, config)
    assert "DNSMismatch" in failure_text(caught) and "someone-else.internal" in failure_text(caught)


@pytest_twisted.inlineCallbacks
def test_default_is_the_system_store_which_refuses_a_private_ca(reactor, pki, upstreams):
    """No `tls` section: verification is still on, so a private CA's upstream is refused."""
    upstream = upstreams(pki)
    with pytest.raises(ResponseNeverReceived) as caught:
        yield fetch(reactor, upstreams, upstream_config(None, upstream.number))
    assert "certificate verify failed" in failure_text(caught)


@pytest_twisted.inlineCallbacks
def test_another_ca_is_refused(reactor, pki, upstreams):
    upstream = upstreams(pki)
    with pytest.raises(ResponseNeverReceived) as caught:
        yield fetch(reactor, upstreams, upstream_config(f"{{ca: {pki.clients_ca.certificate}}}", upstream.number))
    assert "certificate verify failed" in failure_text(caught)


@pytest_twisted.inlineCallbacks
def test_mtls_to_the_upstream(reactor, pki, upstreams):
    """An upstream that requires a client certificate gets the gateway's; without one it refuses."""
    upstream = upstreams(pki, require_client=True)
    with_certificate = upstream_config(
        f"{{ca: {pki.upstream_ca.certificate}, certificate: {pki.gateway_client.certificate}, "
        f"private_key: {pki.gateway_client.key}}}",
        upstream.number,
    )
    code, body = yield fetch(reactor, upstreams, with_certificate)
    assert (code, body) == (200, b"CN=twistgate")
    with pytest.raises(ResponseNeverReceived) as caught:
        yield fetch(reactor, upstreams, upstream_config(f"{{ca: {pki.upstream_ca.certificate}}}", upstream.number))
    assert "certificate required" in failure_text(caught)


@pytest_twisted.inlineCallbacks
def test_verify_false_still_encrypts_and_sends_sni(reactor, pki, upstreams):
    """verify: false connects to an untrusted upstream (it is the operator's explicit choice)."""
    upstream = upstreams(pki)
    config = upstream_config("{verify: false, server_name: upstream.internal}", upstream.number)
    code, _ = yield fetch(reactor, upstreams, config)
    assert code == 200 and upstream.server_names == [b"upstream.internal"]


@pytest_twisted.inlineCallbacks
def test_through_the_gateway_with_mtls_upstream(reactor, pki, upstreams):
    """A whole gateway, configured only by upstreams.X.tls: a client's plain request reaches the mTLS upstream."""
    from twisted.internet.threads import deferToThread

    from tests.integration.conftest import http_request
    from twistgate.generation import Generation
    from twistgate.resource import GatewayResource
    from twistgate.engine.twisted_web import GatewaySite

    upstream = upstreams(pki, require_client=True)
    config = load_text(
        textwrap.dedent(
            f"""
            listeners: [{{name: a, endpoint: "tcp:0"}}]
            upstreams:
              svc:
                targets: [{{url: "https://127.0.0.1:{upstream.number}"}}]
                tls:
                  ca: {pki.upstream_ca.certificate}
                  certificate: {pki.gateway_client.certificate}
                  private_key: {pki.gateway_client.key}
                  server_name: upstream.internal
            routes:
              - {{name: all, path: /*, upstream: svc}}
            """
        ),
        filename="gw.yaml",
        environ={},
    )
    generation = Generation(config, reactor)  # the upstream's own Agent picks the TLS policy up
    port = reactor.listenTCP(0, GatewaySite(GatewayResource(generation), config.limits, reactor), interface="127.0.0.1")
    try:
        reply = yield deferToThread(http_request, port.getHost().port, "GET", "/who")
        assert (reply.status, reply.body) == (200, b"CN=twistgate")
        assert upstream.server_names == [b"upstream.internal"]
    finally:
        yield port.stopListening()
        yield generation.close()


@pytest_twisted.inlineCallbacks
def test_verify_false_with_a_client_certificate(reactor, pki, upstreams):
    upstream = upstreams(pki, require_client=True)
    config = upstream_config(
        f"{{verify: false, certificate: {pki.gateway_client.certificate}, private_key: {pki.gateway_client.key}}}",
        upstream.number,
    )
    code, body = yield fetch(reactor, upstreams, config)
    assert (code, body) == (200, b"CN=twistgate")


@pytest_twisted.inlineCallbacks
def test_tls_on_both_sides_raises_no_deprecation_warning(reactor, pki, upstreams, recwarn):
    """A TLS listener (with client certificates) in front of an mTLS upstream: pyOpenSSL warns about nothing."""
    import warnings

    from twisted.internet.threads import deferToThread

    from tests.tls.harness import client_context, https_get
    from twistgate.generation import Generation
    from twistgate.listeners import build_listener
    from twistgate.resource import GatewayResource
    from twistgate.engine.twisted_web import GatewaySite

    warnings.simplefilter("always")  # recwarn records every warning, even one seen before in this process
    upstream = upstreams(pki, require_client=True)
    config = load_text(
        textwrap.dedent(
            f"""
            listeners:
              - name: tls
                endpoint: "tcp:0:interface=127.0.0.1"
                tls:
                  certificate: {pki.server.certificate}
                  private_key: {pki.server.key}
                  client_ca: {pki.clients_ca.certificate}
                  client_certificate: optional
            upstreams:
              svc:
                targets: [{{url: "https://127.0.0.1:{upstream.number}"}}]
                tls:
                  ca: {pki.upstream_ca.certificate}
                  certificate: {pki.gateway_client.certificate}
                  private_key: {pki.gateway_client.key}
                  server_name: upstream.internal
            routes:
              - {{name: all, path: /*, upstream: svc}}
            """
        ),
        filename="gw.yaml",
        environ={},
    )
    generation = Generation(config, reactor)
    listener = build_listener(config.listeners[0], reactor, source="gw.yaml")
    port = yield listener.endpoint.listen(GatewaySite(GatewayResource(generation), config.limits, reactor))
    try:
        status, _, body = yield deferToThread(https_get, port.getHost().port, client_context(pki, client=pki.client), "/who")
        assert (status, body) == (200, b"CN=twistgate")
    finally:
        yield port.stopListening()
        yield generation.close()
    deprecations = [str(w.message) for w in recwarn if issubclass(w.category, DeprecationWarning) and not _twisted_25s_own(w)]
    assert deprecations == []


_TWISTED = os.path.dirname(twisted.__file__) + os.sep


def _twisted_25s_own(warning) -> bool:
    """
    Twisted 25 (the newest for Python 3.9: Debian's PyPy) sets ALPN and its
    host name check on contexts already used (twisted/twisted#12500, fixed in
    26), and pyOpenSSL 25.1 counts every context as used from its
    set_cipher_list on: those warnings name Twisted's own lines.  Twisted 26
    changes no context after use, and pyOpenSSL 26 raises there.
    """
    return twisted.version.major < 26 and warning.filename.startswith(_TWISTED)
