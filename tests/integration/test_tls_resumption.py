"""
TLS session resumption on listeners, checked with `openssl s_client`
(-reconnect for TLS 1.2, -sess_out / -sess_in for TLS 1.3 tickets) and
Python's ssl (mTLS identities on a resumed session); key rotation.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from typing import Any, List, Tuple

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread

from tests.ops.live import require_tool
from tests.tls.harness import client_context, pki, tls  # noqa: F401  (fixtures)
from twistgate.config import load_text
from twistgate.listeners import build_listener

SERVER = """
certificate: {server.crt}
private_key: {server.key}
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def _s_client(port: int, pki: Any, *args: str, data: bytes = b"") -> str:
    command = [
        require_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        "-CAfile", pki.root.certificate, *args,
    ]  # fmt: skip
    return subprocess.run(command, input=data, capture_output=True, timeout=30).stdout.decode("latin-1")


def tls12_reconnects(port: int, pki: Any) -> Tuple[int, int]:
    """(new, reused) handshakes of `s_client -reconnect`: one connection and five more with its session."""
    out = _s_client(port, pki, "-reconnect", "-tls1_2")
    return out.count("\nNew, "), out.count("\nReused, ")


def tls13_second_connection(port: int, pki: Any, session: str, rotate: Any = None) -> List[str]:
    """The handshake lines of two connections, the second offering the first's ticket."""
    lines = []
    for flag in ("-sess_out", "-sess_in"):
        if flag == "-sess_in" and rotate is not None:
            rotate()
        out = _s_client(port, pki, "-tls1_3", flag, session, "-ign_eof", data=REQUEST)
        assert "HTTP/1.1 200" in out
        lines += [line.split(",")[0] for line in out.splitlines() if line.startswith(("New, ", "Reused, "))]
    return lines


@pytest_twisted.inlineCallbacks
def test_sessions_resume_by_default_tls12_and_tls13(tls, pki, tmp_path):
    up, _ = tls.upstream()
    port = tls.gateway(SERVER, up=up)
    new, reused = yield deferToThread(tls12_reconnects, port, pki)
    assert (new, reused) == (1, 5)
    lines = yield deferToThread(tls13_second_connection, port, pki, str(tmp_path / "s.pem"))
    assert lines == ["New", "Reused"]


def ticket_lifetime_hint(port: int, pki: Any) -> int:
    """The lifetime the server states with its TLS 1.2 session ticket (RFC 5077), in seconds."""
    out = _s_client(port, pki, "-tls1_2", "-ign_eof", data=REQUEST)
    (hint,) = [line for line in out.splitlines() if "lifetime hint:" in line]
    return int(hint.split("lifetime hint:")[1].split()[0])


@pytest_twisted.inlineCallbacks
def test_the_lifetime_is_what_the_tickets_state(tls, pki):
    """session_resumption.lifetime is applied (default 1h): the ticket's lifetime hint says it."""
    up, _ = tls.upstream()
    default = tls.gateway(SERVER, up=up)
    ten_minutes = tls.gateway(SERVER + "session_resumption: {lifetime: 10m}\n", up=up)
    assert (yield deferToThread(ticket_lifetime_hint, default, pki)) == 3600
    assert (yield deferToThread(ticket_lifetime_hint, ten_minutes, pki)) == 600


@pytest_twisted.inlineCallbacks
def test_resumption_off_means_a_full_handshake_every_time(tls, pki, tmp_path):
    up, _ = tls.upstream()
    port = tls.gateway(SERVER + "session_resumption: false\n", up=up)
    new, reused = yield deferToThread(tls12_reconnects, port, pki)
    assert (new, reused) == (6, 0)
    lines = yield deferToThread(tls13_second_connection, port, pki, str(tmp_path / "s.pem"))
    assert lines == ["New", "New"]


@pytest_twisted.inlineCallbacks
def test_cache_only_and_tickets_only_each_resume(tls, pki, tmp_path):
    up, _ = tls.upstream()
    cache_only = tls.gateway(SERVER + "session_resumption: {tickets: false}\n", up=up)
    tickets_only = tls.gateway(SERVER + "session_resumption: {cache: false}\n", up=up)
    for port in (cache_only, tickets_only):
        assert (yield deferToThread(tls12_reconnects, port, pki)) == (1, 5)
        assert (yield deferToThread(tls13_second_connection, port, pki, str(tmp_path / f"{port}.pem"))) == ["New", "Reused"]


@pytest_twisted.inlineCallbacks
def test_a_rotated_ticket_key_does_not_resume_older_sessions(tls, pki, tmp_path):
    up, _ = tls.upstream()
    port = tls.gateway(SERVER + "session_resumption: {cache: false}\n", up=up)
    rotation = tls.listeners[-1].rotation
    lines = yield deferToThread(tls13_second_connection, port, pki, str(tmp_path / "s.pem"), rotation.rotate)
    assert lines == ["New", "New"] and rotation.rotations == 1
    lines = yield deferToThread(tls13_second_connection, port, pki, str(tmp_path / "t.pem"))
    assert lines == ["New", "Reused"]  # sessions under the new key resume again


MTLS = """
certificate: {server.crt}
private_key: {server.key}
client_ca: {clients_ca.crt}
client_certificate: required
"""


def _two_connections(port: int, context: Any) -> Tuple[List[bool], List[bytes]]:
    import socket

    reused: List[bool] = []
    bodies: List[bytes] = []
    session = None
    for _ in range(2):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with context.wrap_socket(raw, server_hostname="localhost", session=session) as sock:
            sock.sendall(REQUEST)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            reused.append(sock.session_reused)
            session = sock.session
            bodies.append(data)
    return reused, bodies


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest_twisted.inlineCallbacks
def test_mtls_listeners_verify_every_connection_unless_asked_and_keep_the_identity_when_resumed(tls, pki, version):
    up, upstream = tls.upstream()
    context = client_context(pki, client=pki.client, maximum=version)
    default = tls.gateway(MTLS, up=up, plugins="{whoami: {}}")
    reused, answers = yield deferToThread(_two_connections, default, context)
    assert reused == [False, False]  # by default each connection verifies its client afresh
    opted_in = tls.gateway(MTLS + "session_resumption: true\n", up=up, plugins="{whoami: {}}")
    reused, more = yield deferToThread(_two_connections, opted_in, context)
    assert reused == [False, True]
    assert [a.split(b"\r\n", 1)[0] for a in answers + more] == [b"HTTP/1.1 200 OK"] * 4
    identities = [json.loads(r.header("x-test-identity")) for r in upstream.requests]
    assert len(identities) == 4 and all(i == identities[0] for i in identities)
    assert identities[3]["subject"] == "CN=client-1,O=Example"  # the resumed session keeps its verified identity


def test_rotation_runs_on_the_clock_and_stops(pki):
    """The key is rotated every ticket_key_rotation on the listener's clock; reload changes the period."""
    clock = Clock()
    text = (
        "listeners: [{name: t, endpoint: 'tcp:0', tls: {certificate: %s, private_key: %s, "
        "session_resumption: {lifetime: 10m, ticket_key_rotation: 1h}}}]\n"
    )
    listener = build_listener(load_text(text % (pki.server.certificate, pki.server.key)).listeners[0], clock)
    rotation = listener.rotation
    first = rotation.tls.contexts
    rotation.start()
    clock.advance(3599)
    assert rotation.tls.contexts is first
    clock.advance(1)
    assert rotation.tls.contexts is not first and rotation.rotations == 1
    new = load_text(text.replace("1h", "2h") % (pki.server.certificate, pki.server.key)).listeners[0]
    listener.reload(new)
    clock.advance(3600)
    assert rotation.rotations == 1  # the new period counts from the reload
    clock.advance(3600)
    assert rotation.rotations == 2
    rotation.stop()
    clock.advance(10 * 3600)
    assert rotation.rotations == 2 and not clock.getDelayedCalls()


def test_no_rotation_without_tickets(pki):
    clock = Clock()
    text = "listeners: [{name: t, endpoint: 'tcp:0', tls: {certificate: %s, private_key: %s, session_resumption: {tickets: false}}}]\n"
    listener = build_listener(load_text(text % (pki.server.certificate, pki.server.key)).listeners[0], clock)
    listener.rotation.start()
    assert clock.getDelayedCalls() == []
    listener.rotation.stop()


def test_session_resumption_config_forms_and_refusals():
    from twistgate.config import ConfigError

    def resumption(value: str) -> Any:
        text = f"listeners: [{{name: t, endpoint: 'tcp:0', tls: {{certificate: c, private_key: k, session_resumption: {value}}}}}]\n"
        return load_text(text).listeners[0].tls.resumption

    assert resumption("true").enabled and resumption("{lifetime: 5m}").lifetime == 300.0
    assert not resumption("false").enabled and not resumption("{cache: false, tickets: false}").enabled
    for bad, message in (
        ("{lifetime: 2h, ticket_key_rotation: 1h}", "ticket_key_rotation (3600s) is shorter than lifetime (7200s)"),
        ("{lifetime: 500ms}", "must be at least 1s"),
        ("{tikets: true}", "unknown key 'tikets'; did you mean 'tickets'?"),
        ("sometimes", "expected a mapping"),
    ):
        with pytest.raises(ConfigError) as info:
            resumption(bad)
        assert message in str(info.value)
