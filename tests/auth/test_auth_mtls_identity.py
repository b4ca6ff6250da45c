"""
The mtls authenticator with a stand-in for the TLS layer's verified
identity (the real handshake is covered in tests/integration/test_auth_mtls.py).
"""

from __future__ import annotations

import pytest

from tests.auth.helpers import AuthGateway
from twistgate.tls import ClientIdentity

CLIENT = ClientIdentity(
    subject="CN=billing,O=Example",
    sans=("DNS:billing.internal", "URI:spiffe://example/billing"),
    fingerprint_sha256="ab" * 32,
    issuer="CN=Example Clients CA",
)
OTHER = ClientIdentity(subject="CN=reports,O=Example", sans=("DNS:reports.internal",), fingerprint_sha256="cd" * 32, issuer="CN=Example Clients CA")


@pytest.fixture
def gateway():
    gw = AuthGateway(
        """
        auth:
          clients:
            type: mtls
            forward_subject: X-Client-Subject
            forward_sans: X-Client-SANs
            forward_fingerprint: X-Client-Fingerprint
            forward_issuer: X-Client-Issuer
          billing_only:
            type: mtls
            allowed_subjects: ["CN=billing,O=Example"]
        routes:
          - {name: any-cert, path: "/api/*", upstream: app, auth: [clients]}
          - {name: billing, path: "/billing/*", upstream: app, auth: [billing_only]}
          - {name: by-san, path: "/san/*", upstream: app, auth: {any: [clients], allowed_sans: ["URI:spiffe://example/billing"]}}
          - {name: by-subject, path: "/subject/*", upstream: app, auth: {any: [clients], allowed_subjects: ["CN=reports,O=Example"]}}
        """
    )
    gw.peer = None
    for name in ("clients", "billing_only"):
        gw.auth.authenticators[name].peer_identity = lambda request: gw.peer
    return gw


def test_the_certificate_identity_is_the_consumer_and_is_forwarded(gateway):
    gateway.peer = CLIENT
    spoofed = {"X-Client-Subject": "CN=admin", "X-Client-Fingerprint": "00"}
    seen = gateway.get(headers=spoofed).upstream_headers
    assert seen["x-client-subject"] == ["CN=billing,O=Example"]
    assert seen["x-client-sans"] == ["DNS:billing.internal, URI:spiffe://example/billing"]
    assert seen["x-client-fingerprint"] == ["ab" * 32]
    assert seen["x-client-issuer"] == ["CN=Example Clients CA"]
    record = gateway.records[-1]
    assert record.consumer == "CN=billing,O=Example"
    assert record.state["auth"]["fingerprint_sha256"] == "ab" * 32


def test_no_certificate_is_401_and_spoofed_headers_do_not_help(gateway):
    reply = gateway.get(headers={"X-Client-Subject": "CN=billing,O=Example"})
    assert reply.code == 401
    assert reply.header("WWW-Authenticate") == ['mTLS realm="twistgate"']


def test_allowed_subjects_on_the_authenticator(gateway):
    gateway.peer = CLIENT
    assert gateway.get("/billing/x").code == 200
    gateway.peer = OTHER
    reply = gateway.get("/billing/x")
    assert reply.code == 403 and reply.json()["error"] == "forbidden"


def test_allowed_sans_and_subjects_on_the_route(gateway):
    gateway.peer = CLIENT
    assert gateway.get("/san/x").code == 200
    assert gateway.get("/subject/x").code == 403
    gateway.peer = OTHER
    assert gateway.get("/san/x").code == 403
    assert gateway.get("/subject/x").code == 200


def test_headers_with_control_characters_are_not_forwarded(gateway):
    gateway.peer = ClientIdentity(subject="CN=x\r\nX-Admin: 1", sans=(), fingerprint_sha256="ef" * 32, issuer="CN=CA")
    seen = gateway.get().upstream_headers
    assert "x-client-subject" not in seen and "x-admin" not in seen
    assert seen["x-client-fingerprint"] == ["ef" * 32]
