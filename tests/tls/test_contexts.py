"""
Listener TLS contexts: files read and checked at build time, SNI selection,
and client-certificate verification, driven through in-memory handshakes
(twisted.test.iosim) so they are deterministic and need no sockets.
"""

from __future__ import annotations


import pytest
from cryptography.hazmat.primitives import serialization
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from twistgate.config.model import ConfigError, ListenerCertificate, ListenerTLSConfig, Location
from twistgate.tls import PeerTLSFactory, ServerTLS, build_server_contexts


def tls_config(pki, **overrides):
    values = dict(certificate=pki.server.certificate, private_key=pki.server.key)
    values.update(overrides)
    return ListenerTLSConfig(**values)


class Received(Protocol):
    def __init__(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data


def handshake(pki, config, *, client=None, server_name="localhost"):
    """One in-memory TLS connection; returns (server TLS protocol, client TLS protocol)."""
    clock = Clock()
    received = Received()
    server = PeerTLSFactory(
        ServerTLS(build_server_contexts(config)), False, Factory.forProtocol(lambda: received), clock=clock
    ).buildProtocol(None)
    server.received = received  # the application protocol, kept past connectionLost
    # The client's certificate as cryptography objects (pyOpenSSL deprecated passing its own X509/PKey).
    extra = {} if client is None else {"certificate": client.cert, "privateKey": client.private_key}
    options = optionsForClientTLS(
        server_name,
        trustRoot=Certificate.loadPEM(open(pki.root.certificate, "rb").read()),
        extraCertificateOptions=extra,
    )
    client_protocol = TLSMemoryBIOFactory(options, True, Factory.forProtocol(Protocol), clock=clock).buildProtocol(None)
    pump = iosim.connect(
        server, iosim.makeFakeServer(server), client_protocol, iosim.makeFakeClient(client_protocol), clock=clock
    )
    client_protocol.write(b"ping")
    for _ in range(10):  # TLS writes wait for the clock; the handshake takes a few round trips
        clock.advance(0)
        pump.flush()
    return server, client_protocol


def test_required_client_certificate_is_verified_and_recorded(pki):
    """A certificate from client_ca completes the handshake; the connection knows who it is."""
    config = tls_config(pki, client_ca=pki.clients_ca.certificate, client_certificate="required")
    server, _ = handshake(pki, config, client=pki.client)
    assert server.received.data == b"ping"
    identity = server.client_identity()
    assert identity is not None and identity.subject == "CN=client-1,O=Example"


@pytest.mark.parametrize("who", [None, "other_client", "expired_client", "server_as_client"])
def test_required_client_certificate_refuses_the_rest(pki, who):
    """Missing, another CA's, expired, or not issued for client auth: no application data gets through."""
    config = tls_config(pki, client_ca=pki.clients_ca.certificate, client_certificate="required")
    server, _ = handshake(pki, config, client=getattr(pki, who) if who else None)
    assert server.received.data == b""
    assert server.verified_certificate is None
    assert server.disconnecting or server.transport.disconnecting


def test_optional_client_certificate(pki):
    """optional: no certificate is fine (no identity); a bad one still fails the handshake."""
    config = tls_config(pki, client_ca=pki.clients_ca.certificate, client_certificate="optional")
    server, _ = handshake(pki, config)
    assert server.received.data == b"ping" and server.client_identity() is None
    server, _ = handshake(pki, config, client=pki.client)
    assert server.client_identity().subject == "CN=client-1,O=Example"
    server, _ = handshake(pki, config, client=pki.other_client)
    assert server.received.data == b"" and server.client_identity() is None


def test_without_client_ca_no_certificate_is_asked_for(pki):
    """client_certificate: none: even a client holding a valid certificate gets no identity."""
    server, _ = handshake(pki, tls_config(pki), client=pki.client)
    assert server.received.data == b"ping"
    assert server.client_identity() is None


def test_sni_selects_the_certificate(pki):
    """Exact names, then one-label wildcards, case-insensitive; unknown names and no SNI get the first certificate."""
    contexts = build_server_contexts(
        tls_config(pki, certificates=(ListenerCertificate(certificate=pki.api.certificate, private_key=pki.api.key),))
    )
    api = contexts.by_name["api.example"]
    assert contexts.names == (("localhost", "gw.test"), ("api.example", "*.wild.example"))
    assert contexts.for_server_name(b"API.Example.") is api
    assert contexts.for_server_name(b"x.wild.example") is api
    assert contexts.for_server_name(b"a.b.wild.example") is contexts.default
    assert contexts.for_server_name(b"wild.example") is contexts.default
    assert contexts.for_server_name(b"gw.test") is contexts.default
    assert contexts.for_server_name(b"unknown.example") is contexts.default
    assert contexts.for_server_name(None) is contexts.default


def test_sni_handshake_presents_the_matching_certificate(pki):
    """Over a real handshake the client sees api.example's certificate when it asks for it."""
    config = tls_config(pki, certificates=(ListenerCertificate(certificate=pki.api.certificate, private_key=pki.api.key),))
    server, client = handshake(pki, config, server_name="api.example")
    assert server.received.data == b"ping"
    assert client.getPeerCertificate().to_cryptography() == pki.api.cert


def issue(config):
    with pytest.raises(ConfigError) as caught:
        build_server_contexts(config, where="listeners[0].tls")
    return [(str(i.location.path), i.message) for i in caught.value.issues]


def test_file_problems_are_config_errors_with_key_paths(pki, tmp_path):
    """Every unusable file is reported at once, each at the key that names it."""
    (tmp_path / "junk.pem").write_text("not a certificate")
    found = issue(
        tls_config(
            pki,
            certificate=str(tmp_path / "missing.crt"),
            client_ca=str(tmp_path / "junk.pem"),
            client_certificate="required",
            certificates=(ListenerCertificate(certificate=pki.api.certificate, private_key=pki.server.key),),
        )
    )
    assert found == [
        ("listeners[0].tls.certificate", f"cannot read the certificate {str(tmp_path / 'missing.crt')!r}: No such file or directory"),
        (
            "listeners[0].tls.certificates[0].private_key",
            f"the private key {pki.server.key!r} does not match the certificate {pki.api.certificate!r} "
            "(the first certificate in the file must be the server's own)",
        ),
        ("listeners[0].tls.client_ca", f"the CA bundle {str(tmp_path / 'junk.pem')!r} holds no valid PEM certificate"),
    ]


def test_locations_come_from_the_config(pki):
    """With a location (a loaded config), errors carry its file and line."""
    config = tls_config(pki, private_key=pki.root.key, location=Location(file="gw.yaml", line=7, path="listeners[1].tls"))
    with pytest.raises(ConfigError) as caught:
        build_server_contexts(config)
    (only,) = caught.value.issues
    assert (only.location.file, only.location.line, only.location.path) == ("gw.yaml", 7, "listeners[1].tls.private_key")


def test_encrypted_keys_and_non_ca_bundles_are_refused(pki, tmp_path):
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        pki.server.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    found = issue(
        tls_config(pki, private_key=str(encrypted), client_ca=pki.client.certificate, client_certificate="optional")
    )
    assert found[0][0] == "listeners[0].tls.private_key" and "is encrypted" in found[0][1]
    assert found[1][0] == "listeners[0].tls.client_ca" and "is not a CA" in found[1][1]


def test_chain_files_keep_their_intermediates(pki):
    """The server's file holds leaf + intermediate; a client trusting only the root still verifies it."""
    server, client = handshake(pki, tls_config(pki))
    chain = client._tlsConnection.get_peer_cert_chain(as_cryptography=True)
    assert [c.subject for c in chain] == [pki.server.cert.subject, pki.intermediate.cert.subject]
