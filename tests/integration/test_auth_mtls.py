"""
The mtls authenticator over real TLS (HTTP/1.1 and HTTP/2): the verified
client certificate becomes the consumer and the identity headers, client
copies of those headers are dropped, and routes restrict subjects and SANs.
Certificates come from the TLS tests' session PKI (tests/tls/certs.py).
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.conftest import RecordingUpstream
from tests.tls.harness import client_context, h2_exchange, https_get, pki  # noqa: F401  (pki is a fixture)
from twistgate.config import load_text
from twistgate.generation import Generation
from twistgate.listeners import build_listener
from twistgate.resource import GatewayResource
from twistgate.engine.twisted_web import GatewaySite
from twistgate.testing import result_of

GATEWAY = """
listeners:
  - name: mtls
    endpoint: "tcp:0:interface=127.0.0.1"
    tls:
      certificate: {server_crt}
      private_key: {server_key}
      client_ca: {clients_ca}
      client_certificate: optional
auth:
  clients:
    type: mtls
    forward_subject: X-Client-Subject
    forward_sans: X-Client-SANs
    forward_fingerprint: X-Client-Fingerprint
upstreams:
  app: {{targets: [{{url: "http://127.0.0.1:{up}"}}]}}
routes:
  - {{name: certs, path: "/api/*", upstream: app, auth: [clients]}}
  - {{name: only-client-1, path: "/san/*", upstream: app, auth: {{any: [clients], allowed_sans: ["URI:spiffe://example.org/client-1"]}}}}
  - {{name: only-others, path: "/subject/*", upstream: app, auth: {{any: [clients], allowed_subjects: ["CN=someone-else"]}}}}
"""


@pytest.fixture
def gateway(reactor, pki, servers):
    upstream = RecordingUpstream()
    up = servers.upstream(upstream)
    text = GATEWAY.format(
        server_crt=pki.server.certificate,
        server_key=pki.server.key,
        clients_ca=pki.clients_ca.certificate,
        up=up,
    )
    config = load_text(text, "test.yaml")
    generation = Generation(config, reactor)
    servers.generations.append(generation)
    listener = build_listener(config.listeners[0], reactor, source="test.yaml")
    port = result_of(listener.endpoint.listen(GatewaySite(GatewayResource(generation), config.limits, reactor)))
    servers.ports.append(port)
    return port.getHost().port, upstream


SPOOFED = [("X-Client-Subject", "CN=admin"), ("X-Client-Fingerprint", "00")]


@pytest_twisted.inlineCallbacks
def test_the_certificate_is_the_consumer_over_http1(gateway, pki):
    port, upstream = gateway
    status, _, _ = yield deferToThread(https_get, port, client_context(pki, client=pki.client), "/api/x", headers=SPOOFED)
    assert status == 200
    seen = upstream.requests[-1]
    assert seen.header("x-client-subject") == b"CN=client-1,O=Example"
    assert seen.headers[b"x-client-fingerprint"] == [pki.client.fingerprint.encode()]
    assert b"URI:spiffe://example.org/client-1" in seen.header("x-client-sans")


@pytest_twisted.inlineCallbacks
def test_no_certificate_is_401_and_spoofing_does_not_help(gateway, pki):
    port, upstream = gateway
    status, headers, body = yield deferToThread(https_get, port, client_context(pki), "/api/x", headers=SPOOFED)
    assert status == 401
    assert headers["www-authenticate"] == 'mTLS realm="twistgate"'
    assert json.loads(body)["error"] == "unauthorized"
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_route_restrictions_are_403(gateway, pki):
    port, _ = gateway
    context = client_context(pki, client=pki.client)
    status, _, _ = yield deferToThread(https_get, port, context, "/san/x")
    assert status == 200
    status, _, body = yield deferToThread(https_get, port, context, "/subject/x")
    assert status == 403 and json.loads(body)["error"] == "forbidden"


@pytest_twisted.inlineCallbacks
def test_the_certificate_is_the_consumer_over_http2(gateway, pki):
    port, upstream = gateway
    context = client_context(pki, client=pki.client, alpn=["h2"])
    answers = yield deferToThread(h2_exchange, port, context, [("GET", "/api/a", b""), ("GET", "/api/b", b"")], extra_headers=SPOOFED)
    assert [status for status, _, _ in answers] == [200, 200]
    assert {r.header("x-client-subject") for r in upstream.requests} == {b"CN=client-1,O=Example"}
