"""
TLS listener hardening over a real socket: the key exchange groups offered
and session resumption (as `openssl s_client` sees them), and the
security_headers preset on an HTTPS route.

Mozilla's "intermediate" profile (and most compliance scanners) accept
X25519, P-256 and P-384 only; OpenSSL's defaults also offer X448, P-521 and
the finite-field groups.  docs/security.md says resumption is off: a
client that saves its session and offers it again gets a full handshake.
(Under TLS 1.3 OpenSSL still sends session tickets, and pyOpenSSL cannot
turn them off, but they name a session cache the listener keeps off, so
none resumes: the docs say so.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.tls.harness import needs_groups, pki, tls  # noqa: F401  (fixtures)

CERT = """
certificate: {server.crt}
private_key: {server.key}
"""


def s_client(port: int, pki, *args: str) -> str:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is required (tests/run.sh installs it)")
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
               "-CAfile", pki.root.certificate, *args]
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    # -ign_eof: send the request, then read to the end, so post-handshake messages (tickets) arrive
    result = subprocess.run([*command, "-ign_eof"], input=request, capture_output=True, timeout=30)
    return (result.stdout + result.stderr).decode("utf-8", "replace")


def negotiated(output: str) -> bool:
    return "Verify return code: 0 (ok)" in output and "Cipher is (NONE)" not in output


def handshake(port: int, pki, group: str, version: str) -> bool:
    return negotiated(s_client(port, pki, version, "-groups", group))


@needs_groups
@pytest_twisted.inlineCallbacks
def test_default_groups_are_x25519_p256_p384_only(tls, pki):
    up, _ = tls.upstream()
    port = tls.gateway(CERT, up=up)
    for version in ("-tls1_3", "-tls1_2"):
        offered: List[str] = []
        for group in ("X25519", "P-256", "P-384", "X448", "P-521", "ffdhe2048"):
            if (yield deferToThread(handshake, port, pki, group, version)):
                offered.append(group)
        assert offered == ["X25519", "P-256", "P-384"], version


@needs_groups
@pytest_twisted.inlineCallbacks
def test_groups_are_configurable(tls, pki):
    up, _ = tls.upstream()
    port = tls.gateway(CERT + "groups: [P-384]\n", up=up)
    assert (yield deferToThread(handshake, port, pki, "P-384", "-tls1_3"))
    assert not (yield deferToThread(handshake, port, pki, "X25519:P-256", "-tls1_3"))


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
@pytest_twisted.inlineCallbacks
def test_no_session_resumption_when_turned_off(tls, pki, tmp_path, version):
    """With ``session_resumption: false`` a saved session (ticket or id) never resumes: every connection is a full handshake."""
    up, _ = tls.upstream()
    port = tls.gateway(CERT + "session_resumption: false\n", up=up)
    session = str(tmp_path / "session.pem")
    first = yield deferToThread(s_client, port, pki, version, "-sess_out", session)
    assert negotiated(first) and "HTTP/1.1 200" in first
    if not os.path.exists(session):
        return  # nothing resumable was given at all (TLS 1.2: no session id, no ticket)
    second = yield deferToThread(s_client, port, pki, version, "-sess_in", session)
    assert negotiated(second)
    assert "Reused," not in second and "New," in second


@pytest_twisted.inlineCallbacks
def test_security_headers_on_an_https_route(tls, pki):
    """security_headers: true over a real TLS listener: HSTS (HTTPS only), nosniff, referrer, framing."""
    from tests.tls.harness import client_context, https_get

    up, _ = tls.upstream()
    port = tls.gateway(CERT, up=up, route="security_headers: true")
    status, headers, _ = yield deferToThread(https_get, port, client_context(pki), "/x")
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert headers["content-security-policy"] == "frame-ancestors 'none'"
