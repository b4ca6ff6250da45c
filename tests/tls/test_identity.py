"""The verified client identity: what a certificate says, and which requests get one."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock

from twistgate.messages import ProxyRequest
from twistgate.tls import (
    TLS_CONNECTION,
    ClientIdentity,
    PeerTLSFactory,
    ServerTLS,
    build_server_contexts,
    identity_of,
    peer_identity,
    tls_connection,
)
from twistgate.config.model import ListenerTLSConfig


def test_identity_of_a_client_certificate(pki):
    """Subject and issuer in RFC 4514, SANs with their kind, the SHA-256 of the DER in lower-case hex."""
    identity = identity_of(pki.client.cert)
    assert identity == ClientIdentity(
        subject="CN=client-1,O=Example",
        sans=(
            "DNS:client-1.example",
            "IP:10.1.2.3",
            "URI:spiffe://example.org/client-1",
            "email:client-1@example.org",
        ),
        fingerprint_sha256=pki.client.cert.fingerprint(hashes.SHA256()).hex(),
        issuer="CN=Test Clients CA,O=Twistgate Tests",
    )
    assert identity.fingerprint_sha256 == identity.fingerprint_sha256.lower()
    assert len(identity.fingerprint_sha256) == 64


def _self_signed(subject: x509.Name, sans=None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_names_are_escaped_and_header_safe():
    """RFC 4514 escapes commas and plus signs; non-printable characters become \\XX per UTF-8 byte, so no header line can be smuggled."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc+Co"),
            x509.NameAttribute(NameOID.COMMON_NAME, "evil\r\nX-Admin: yes\x85 J\u00fcrgen"),
        ]
    )
    identity = identity_of(_self_signed(subject))
    assert identity.subject == "CN=evil\\0d\\0aX-Admin: yes\\c2\\85 J\u00fcrgen,O=Acme\\, Inc\\+Co"
    assert "\r" not in identity.subject and "\n" not in identity.subject
    assert identity.issuer == identity.subject


def test_sans_with_control_characters_are_left_out():
    """A SAN that is not printable is dropped, never rewritten into something an allow-list could match."""
    cert = _self_signed(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]),
        [x509.DNSName("good.example"), x509.UniformResourceIdentifier("spiffe://a/b\nc")],
    )
    assert identity_of(cert).sans == ("DNS:good.example",)


def test_no_san_extension_means_no_sans():
    cert = _self_signed(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")]))
    assert identity_of(cert).sans == ()


def _connection(pki, verified=None):
    """A gateway TLS connection object as a listener builds it (no socket needed to hold state)."""
    contexts = build_server_contexts(
        ListenerTLSConfig(
            certificate=pki.server.certificate,
            private_key=pki.server.key,
            client_ca=pki.clients_ca.certificate,
            client_certificate="optional",
        )
    )
    factory = PeerTLSFactory(ServerTLS(contexts), False, Factory.forProtocol(Protocol), clock=Clock())
    connection = factory.buildProtocol(None)
    if verified is not None:
        connection.verified_certificate = crypto.X509.from_cryptography(verified.cert)
    return connection


def test_peer_identity_from_a_proxy_request(pki):
    """Stages get a ProxyRequest: the exchange keeps the TLS connection in its state."""
    request = ProxyRequest(method=b"GET", path="/")
    request.state[TLS_CONNECTION] = _connection(pki, verified=pki.client)
    identity = peer_identity(request)
    assert identity is not None and identity.subject == "CN=client-1,O=Example"
    assert peer_identity(request) is identity  # computed once per connection


def test_the_tls_connection_of_a_downstream_transport(pki):
    """The exchange keeps a request's transport only when it is one of the gateway's TLS connections."""
    connection = _connection(pki, verified=pki.client)
    assert tls_connection(connection) is connection
    assert tls_connection(object()) is None and tls_connection(None) is None


def test_no_identity_without_a_verified_certificate(pki):
    """Plain connections, TLS without a client certificate, and foreign transports give None."""
    unverified = ProxyRequest(method=b"GET", path="/")
    unverified.state[TLS_CONNECTION] = _connection(pki)
    assert peer_identity(unverified) is None
    assert peer_identity(ProxyRequest(method=b"GET", path="/")) is None
    spoofed = ProxyRequest(method=b"GET", path="/")
    spoofed.state[TLS_CONNECTION] = SimpleNamespace(client_identity=lambda: identity_of(pki.client.cert))
    assert peer_identity(spoofed) is None  # only the gateway's own TLS connections count
