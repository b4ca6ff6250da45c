"""
mTLS termination over real sockets: which client certificates pass the
handshake, and the verified identity requests see (HTTP/1.1 and HTTP/2),
read through `twistgate.tls.peer_identity` by a test plugin that passes it
upstream in X-Test-Identity.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.tls.harness import (  # noqa: F401  (fixtures)
    client_context,
    connect,
    h2_exchange,
    handshake_fails,
    https_get,
    pki,
    tls,
)

REQUIRED = """
certificate: {server.crt}
private_key: {server.key}
client_ca: {clients_ca.crt}
client_certificate: required
"""
OPTIONAL = REQUIRED.replace("required", "optional")
WHOAMI = "{whoami: {}}"


def identity_seen(upstream, index=-1):
    value = upstream.requests[index].header("x-test-identity")
    return None if value == b"none" else json.loads(value)


@pytest.mark.parametrize("who", [None, "other_client", "expired_client", "server_as_client"])
@pytest_twisted.inlineCallbacks
def test_required_refuses_the_handshake(tls, pki, who):
    """No certificate, another CA's, an expired one, one not issued for client auth: no request gets through."""
    up, upstream = tls.upstream()
    gw = tls.gateway(REQUIRED, up=up, plugins=WHOAMI)
    context = client_context(pki, client=getattr(pki, who) if who else None)
    seen = yield deferToThread(handshake_fails, gw, context)
    expected = {
        None: "certificate required",
        "other_client": "unknown ca",
        "expired_client": "certificate expired",
        "server_as_client": "unsupported certificate",
    }[who]
    assert expected in seen.lower().replace("_", " ")
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_required_over_tls_1_2_fails_in_the_handshake_itself(tls, pki):
    """With TLS 1.2 the client learns during the handshake (TLS 1.3 reports it on the first read)."""
    import ssl

    up, upstream = tls.upstream()
    gw = tls.gateway(REQUIRED, up=up)
    context = client_context(pki, client=pki.other_client, maximum=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError, match="(?i)unknown.ca"):
        yield deferToThread(connect, gw, context)
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_valid_certificate_identity_over_http11(tls, pki):
    """The verified certificate's subject, issuer, SANs and SHA-256 fingerprint, on every request of the connection."""
    up, upstream = tls.upstream()
    gw = tls.gateway(REQUIRED, up=up, plugins=WHOAMI)
    status, _, body = yield deferToThread(https_get, gw, client_context(pki, client=pki.client))
    assert (status, body) == (200, b"hello")
    assert identity_seen(upstream) == {
        "subject": "CN=client-1,O=Example",
        "issuer": "CN=Test Clients CA,O=Twistgate Tests",
        "sans": [
            "DNS:client-1.example",
            "IP:10.1.2.3",
            "URI:spiffe://example.org/client-1",
            "email:client-1@example.org",
        ],
        "fingerprint": pki.client.fingerprint,
    }


@pytest_twisted.inlineCallbacks
def test_valid_certificate_identity_over_http2(tls, pki):
    """HTTP/2 streams (the request's transport is the stream) see the same identity."""
    up, upstream = tls.upstream()
    gw = tls.gateway(REQUIRED, up=up, plugins=WHOAMI)
    replies = yield deferToThread(
        h2_exchange,
        gw,
        client_context(pki, client=pki.client, alpn=["h2"]),
        [("GET", "/a", b""), ("POST", "/b", b"body")],
    )
    assert [status for status, _, _ in replies] == [200, 200]
    assert [identity_seen(upstream, i)["fingerprint"] for i in range(2)] == [pki.client.fingerprint] * 2


@pytest_twisted.inlineCallbacks
def test_each_connection_has_its_own_identity(tls, pki):
    """Two clients on one listener, keep-alive requests in between: identities never cross connections."""
    up, upstream = tls.upstream()
    gw = tls.gateway(REQUIRED, up=up, plugins=WHOAMI)

    def two_requests(client):
        with connect(gw, client_context(pki, client=client)) as sock:
            for close in (False, True):
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n")
                data = b""
                while data.count(b"hello") < (2 if close else 1):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk

    yield deferToThread(two_requests, pki.client)
    yield deferToThread(two_requests, pki.client2)
    subjects = [identity_seen(upstream, i)["subject"] for i in range(4)]
    assert subjects == ["CN=client-1,O=Example"] * 2 + ["CN=client-2,O=Example"] * 2


@pytest_twisted.inlineCallbacks
def test_optional_client_certificate(tls, pki):
    """optional: without a certificate the request passes with no identity; with one it is verified."""
    up, upstream = tls.upstream()
    gw = tls.gateway(OPTIONAL, up=up, plugins=WHOAMI)
    status, _, _ = yield deferToThread(https_get, gw, client_context(pki))
    assert status == 200 and identity_seen(upstream) is None
    status, _, _ = yield deferToThread(https_get, gw, client_context(pki, client=pki.client))
    assert status == 200 and identity_seen(upstream)["subject"] == "CN=client-1,O=Example"
    yield deferToThread(handshake_fails, gw, client_context(pki, client=pki.other_client))
    yield deferToThread(handshake_fails, gw, client_context(pki, client=pki.expired_client))
    assert len(upstream.requests) == 2


@pytest_twisted.inlineCallbacks
def test_no_client_ca_means_no_identity(tls, pki):
    """A plain TLS listener never asks for a certificate, so none becomes an identity."""
    up, upstream = tls.upstream()
    gw = tls.gateway("certificate: {server.crt}\nprivate_key: {server.key}\n", up=up, plugins=WHOAMI)
    status, _, _ = yield deferToThread(https_get, gw, client_context(pki, client=pki.client))
    assert status == 200 and identity_seen(upstream) is None


@pytest_twisted.inlineCallbacks
def test_client_ca_change_applies_on_reload(tls, pki):
    """Reload re-reads client_ca too: after trusting only the other CA, client-1 is refused and the other client admitted."""
    import attrs

    up, upstream = tls.upstream()
    gw = tls.gateway(REQUIRED, up=up, plugins=WHOAMI)
    listener = tls.listeners[0]
    new_tls = attrs.evolve(listener.config.tls, client_ca=pki.other_ca.certificate)
    listener.reload(attrs.evolve(listener.config, tls=new_tls))
    yield deferToThread(handshake_fails, gw, client_context(pki, client=pki.client))
    status, _, _ = yield deferToThread(https_get, gw, client_context(pki, client=pki.other_client))
    assert status == 200 and identity_seen(upstream)["issuer"] == "CN=Other CA,O=Twistgate Tests"
