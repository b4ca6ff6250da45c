"""
TLS listeners over real sockets: versions, cipher suites, ALPN, HTTP/2
through the same pipeline (and its 413), SNI, and certificates swapped by
reload.  Certificates are generated at test time (tests/tls/certs.py).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.threads import deferToThread

from tests.tls.harness import (  # noqa: F401  (fixtures)
    client_context,
    connect,
    h2_exchange,
    handshake_fails,
    https_get,
    peer_certificate_der,
    pki,
    tls,
)

_DER = Encoding.DER

SERVER = """
certificate: {server.crt}
private_key: {server.key}
"""

WITH_API = SERVER + """
certificates:
  - {certificate: {api.crt}, private_key: {api.key}}
"""


def _negotiated(port, context, server_name="localhost"):
    with connect(port, context, server_name) as tls_socket:
        return tls_socket.version(), tls_socket.cipher()[0], tls_socket.selected_alpn_protocol()


@pytest_twisted.inlineCallbacks
def test_https_request_is_forwarded(tls, pki):
    """A GET over TLS reaches the upstream, which learns that the client used https."""
    up, upstream = tls.upstream()
    gw = tls.gateway(SERVER, up=up)
    status, headers, body = yield deferToThread(https_get, gw, client_context(pki), "/hello?x=1")
    assert (status, body) == (200, b"hello")
    seen = upstream.requests[0]
    assert seen.uri == b"/hello?x=1"
    assert seen.header("x-forwarded-proto") == b"https"
    assert b"proto=https" in seen.header("forwarded")


@pytest_twisted.inlineCallbacks
def test_tls_1_2_is_the_minimum(tls, pki):
    """TLS 1.0 and 1.1 are refused by the server (protocol_version alert); 1.2 and 1.3 work."""
    up, _ = tls.upstream()
    gw = tls.gateway(SERVER, up=up)
    old = client_context(pki, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0")
    refused = yield deferToThread(handshake_fails, gw, old)
    assert "PROTOCOL_VERSION" in refused.upper() or "UNSUPPORTED_PROTOCOL" in refused.upper()
    tls12 = yield deferToThread(_negotiated, gw, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
    tls13 = yield deferToThread(_negotiated, gw, client_context(pki))
    assert (tls12[0], tls13[0]) == ("TLSv1.2", "TLSv1.3")


@pytest_twisted.inlineCallbacks
def test_min_version_1_3(tls, pki):
    up, _ = tls.upstream()
    gw = tls.gateway(SERVER + 'min_version: "1.3"\n', up=up)
    yield deferToThread(handshake_fails, gw, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
    version = yield deferToThread(_negotiated, gw, client_context(pki))
    assert version[0] == "TLSv1.3"


@pytest.mark.parametrize(
    "cipher",
    ["AES128-GCM-SHA256", "AES256-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "DHE-RSA-AES128-GCM-SHA256"],
)
@pytest_twisted.inlineCallbacks
def test_tls12_refuses_suites_without_forward_secrecy_or_aead(tls, pki, cipher):
    """Under TLS 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305 is offered."""
    up, _ = tls.upstream()
    gw = tls.gateway(SERVER, up=up)
    context = client_context(pki, maximum=ssl.TLSVersion.TLSv1_2, ciphers=cipher + ":@SECLEVEL=0")
    yield deferToThread(handshake_fails, gw, context)


@pytest_twisted.inlineCallbacks
def test_tls12_modern_suites(tls, pki):
    up, _ = tls.upstream()
    gw = tls.gateway(SERVER, up=up)
    for cipher in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"):
        context = client_context(pki, maximum=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
        negotiated = yield deferToThread(_negotiated, gw, context)
        assert negotiated[:2] == ("TLSv1.2", cipher)


@pytest_twisted.inlineCallbacks
def test_alpn(tls, pki):
    """h2 is preferred, http/1.1 is offered, no ALPN means HTTP/1.1, and no common protocol is fatal (RFC 7301)."""
    up, _ = tls.upstream()
    gw = tls.gateway(SERVER, up=up)
    both = yield deferToThread(_negotiated, gw, client_context(pki, alpn=["http/1.1", "h2"]))
    http11 = yield deferToThread(_negotiated, gw, client_context(pki, alpn=["http/1.1"]))
    none = yield deferToThread(_negotiated, gw, client_context(pki))
    assert (both[2], http11[2], none[2]) == ("h2", "http/1.1", None)
    refused = yield deferToThread(handshake_fails, gw, client_context(pki, alpn=["spdy/3"]))
    assert "no application protocol" in refused.lower().replace("_", " ")


@pytest_twisted.inlineCallbacks
def test_http2_can_be_turned_off(tls, pki):
    up, _ = tls.upstream()
    gw = tls.gateway(SERVER + "http2: false\n", up=up)
    negotiated = yield deferToThread(_negotiated, gw, client_context(pki, alpn=["h2", "http/1.1"]))
    assert negotiated[2] == "http/1.1"


@pytest_twisted.inlineCallbacks
def test_http2_get_and_post_through_the_pipeline(tls, pki):
    """Concurrent HTTP/2 streams: a GET and a POST with a body reach the upstream as HTTP/1.1 requests."""
    up, upstream = tls.upstream()
    gw = tls.gateway(SERVER, up=up)
    body = os.urandom(200_000)  # bigger than the initial flow-control window
    replies = yield deferToThread(
        h2_exchange,
        gw,
        client_context(pki, alpn=["h2"]),
        [("GET", "/items/1?q=2", b""), ("POST", "/upload", body)],
        extra_headers=[("x-custom", "yes")],
    )
    assert [(status, reply_body) for status, _, reply_body in replies] == [(200, b"hello"), (200, b"hello")]
    assert all(headers.get("x-request-id") and headers.get("via") == "1.1 twistgate" for _, headers, _ in replies)
    by_uri = {r.uri: r for r in upstream.requests}
    assert by_uri[b"/items/1?q=2"].method == b"GET" and by_uri[b"/items/1?q=2"].header("x-custom") == b"yes"
    assert by_uri[b"/upload"].method == b"POST" and by_uri[b"/upload"].body == body
    assert by_uri[b"/upload"].header("x-forwarded-proto") == b"https"


@pytest_twisted.inlineCallbacks
def test_http2_body_limit_answers_413_and_keeps_the_connection(tls, pki):
    """Over the limit: 413 with the JSON body on that stream; the other streams of the connection still work."""
    up, upstream = tls.upstream()
    gw = tls.gateway(SERVER, up=up, extra="limits: {max_request_body: 1000}\n")
    replies = yield deferToThread(
        h2_exchange,
        gw,
        client_context(pki, alpn=["h2"]),
        [("POST", "/too-big", b"x" * 300_000), ("POST", "/fits", b"y" * 1000), ("GET", "/after", b"")],
    )
    (big, big_headers, big_body), fits, after = replies
    assert big == 413 and big_headers["content-type"] == "application/json"
    assert b'"error":"payload_too_large"' in big_body
    assert (fits[0], after[0]) == (200, 200)
    assert sorted(r.uri for r in upstream.requests) == [b"/after", b"/fits"]


@pytest_twisted.inlineCallbacks
def test_curl_http2(tls, pki):
    """An ordinary HTTP/2 client (curl --http2) against the gateway."""
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("CI"):
            pytest.fail("curl is required in CI (tests/run.sh installs it)")
        pytest.skip("curl is not installed")
    up, upstream = tls.upstream()
    gw = tls.gateway(SERVER, up=up)
    command = [
        curl, "-sS", "--http2", "--cacert", pki.root.certificate, "--resolve", f"localhost:{gw}:127.0.0.1",
        "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--data-binary", "hello h2",
        f"https://localhost:{gw}/curl",
    ]
    result = yield deferToThread(subprocess.run, command, capture_output=True, text=True, timeout=20)
    assert result.stdout == "2 200", result.stderr
    assert upstream.requests[0].body == b"hello h2"


@pytest_twisted.inlineCallbacks
def test_sni_chooses_the_certificate(tls, pki):
    """api.example and *.wild.example get the api certificate; localhost, unknown names and no SNI get the first."""
    up, _ = tls.upstream()
    gw = tls.gateway(WITH_API, up=up)
    anything = client_context(pki)
    anything.check_hostname = False
    seen = {}
    for name in ("api.example", "x.wild.example", "localhost", "unknown.example", None):
        der = yield deferToThread(peer_certificate_der, gw, anything, name)
        seen[name] = der
    api, server = pki.api.cert.public_bytes(_DER), pki.server.cert.public_bytes(_DER)
    assert seen == {"api.example": api, "x.wild.example": api, "localhost": server, "unknown.example": server, None: server}
    # And the verified path: a client that checks the name gets through to the upstream.
    status, _, _ = yield deferToThread(https_get, gw, client_context(pki), server_name="api.example")
    assert status == 200


@pytest_twisted.inlineCallbacks
def test_reload_swaps_certificates_without_restart(tls, pki, tmp_path):
    """New files + reload: new connections get the new certificate, an open connection keeps working."""
    crt, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki.server.certificate, crt)
    shutil.copy(pki.server.key, key)
    up, _ = tls.upstream()
    gw = tls.gateway(f"certificate: {crt}\nprivate_key: {key}\n", up=up)
    anything = client_context(pki)
    anything.check_hostname = False
    before = yield deferToThread(peer_certificate_der, gw, anything, "localhost")
    open_connection = yield deferToThread(connect, gw, client_context(pki), "localhost")
    try:
        shutil.copy(pki.api.certificate, crt)
        shutil.copy(pki.api.key, key)
        listener = tls.listeners[0]
        listener.reload(listener.config)
        after = yield deferToThread(peer_certificate_der, gw, anything, "localhost")
        assert before == pki.server.cert.public_bytes(_DER)
        assert after == pki.api.cert.public_bytes(_DER)
        yield deferToThread(open_connection.sendall, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        reply = yield deferToThread(open_connection.recv, 65536)
        assert reply.startswith(b"HTTP/1.1 200")
    finally:
        open_connection.close()

