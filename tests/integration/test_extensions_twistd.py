"""
The example extension package as users run it: installed with pip into a
directory of its own, on PYTHONPATH of a real `twistd -n twistgate` process,
all four extension points serving real upstreams; a misbehaving
authenticator answers 503 on its route while the gateway serves on.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest

from tests.integration.procs import wait_port
from tests.integration.test_twistd import Twistd
from twistgate.testing_twistd import free_port

TOKEN = "token-for-acme-0001"


def named_server(name: str) -> Tuple[http.server.ThreadingHTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture
def upstreams() -> Iterator[Dict[str, int]]:
    running = [named_server("a"), named_server("b")]
    yield {"a": running[0][1], "b": running[1][1]}
    for server, _ in running:
        server.shutdown()
        server.server_close()


def get(port: int, path: str, headers: Dict[str, str]) -> Tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_example_package_in_a_twistd_gateway(extension_packages, upstreams, tmp_path: Path):
    gw = free_port()
    targets = tmp_path / "users.targets"
    targets.write_text(f"http://127.0.0.1:{upstreams['a']}\nhttp://127.0.0.1:{upstreams['b']}\n")
    drained = tmp_path / "drained"
    drained.write_text("")
    mode = tmp_path / "mode"
    mode.write_text("raise")
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""
listeners: [{{name: public, endpoint: "tcp:{gw}:interface=127.0.0.1"}}]
upstreams:
  users:
    targets_from: {{type: example_file, path: "{targets}", interval: 200ms}}
    balance: {{type: example_pinned, header: X-Pin}}
    health_check: {{type: example_drain_file, path: "{drained}", interval: 200ms, timeout: 100ms, unhealthy_threshold: 1}}
auth:
  partners: {{type: example_tokens, tokens: {{"{TOKEN}": acme}}}}
  fragile: {{type: broken, mode_file: "{mode}"}}
routes:
  - {{name: users, path: /users/*, upstream: users, auth: [partners]}}
  - {{name: fragile, path: /fragile/*, upstream: users, auth: [fragile]}}
"""
    )
    twistd = Twistd(config, tmp_path, {"PYTHONPATH": str(extension_packages)})
    try:
        wait_port(gw, twistd.proc)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert get(gw, "/users/1", {})[0] == 401
        b = f"127.0.0.1:{upstreams['b']}"
        assert get(gw, "/users/1", {**auth, "X-Pin": b}) == (200, b"b")

        drained.write_text(f"http://{b}\n")
        deadline = time.monotonic() + 10
        while get(gw, "/users/1", {**auth, "X-Pin": b})[1] != b"a" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [get(gw, "/users/1", {**auth, "X-Pin": b}) for _ in range(3)] == [(200, b"a")] * 3

        status, body = get(gw, "/fragile/x", {})
        assert status == 503 and json.loads(body)["error"] == "auth_unavailable"
        assert get(gw, "/users/1", auth)[0] == 200  # the gateway serves on
    finally:
        code = twistd.stop()
    output = "".join(twistd.output)
    assert code in (0, -signal.SIGTERM), output
    assert "twistgate.authenticators extension 'broken' (auth.fragile) failed in authenticate()" in output
    assert os.path.exists(extension_packages / "twistgate_example_extensions.py")
