"""
Issue 14: the gateway's own answers never advertise ``Server: TwistedWeb``
(which tells every client the Twisted release to aim at): the public
listener on both engines (its own errors, a forwarded answer, the engine's
refusals), the admin listener and the demo backends, which run on
twisted.web.  An upstream's own ``Server`` field is its business and passes.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from twistgate.testing_twistd import RunningGateway, free_port, http_request

pytestmark = pytest.mark.integration


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.mark.parametrize("engine", ["httptools", "twisted"])
def test_no_answer_names_twisted_web(tmp_path: Path, engine: str) -> None:
    admin, demo = free_port(), free_port()
    gw = RunningGateway(
        f"""
engine: {engine}
admin: {{endpoint: "tcp:{admin}:interface=127.0.0.1", token: s3cret}}
demo: {{endpoint: "tcp:{demo}:interface=127.0.0.1"}}
upstreams: {{demo: {{targets: [{{url: "http://127.0.0.1:{demo}"}}]}}}}
routes: [{{name: api, path: "/api/*", upstream: demo, strip_prefix: /api}}]
""",
        tmp_path,
    )
    try:
        answers = {
            "gateway 404": http_request(gw.url("/nothing")),
            "forwarded from the demo": http_request(gw.url("/api/users")),
            "admin /livez": http_request(f"http://127.0.0.1:{admin}/livez"),
            "admin 401": http_request(f"http://127.0.0.1:{admin}/admin/health"),
            "admin 404": http_request(f"http://127.0.0.1:{admin}/nope"),
            "demo": http_request(f"http://127.0.0.1:{demo}/users"),
        }
        for what, reply in answers.items():
            assert "server" not in reply.headers, (what, reply.headers)
        assert answers["forwarded from the demo"].status == 200
        refused = _raw(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")  # a 400
        assert refused.startswith(b"HTTP/1.1 400 ")
        assert b"\r\nserver:" not in refused.lower()
    finally:
        assert gw.stop() == 0
