"""
A gateway service on real sockets, in the test process (for tests/integration):
listeners and the admin API on free ports of 127.0.0.1, plus blocking clients
to run in threads.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import textwrap
from typing import Any, Dict, Optional, Tuple

import pytest
from twisted.internet.defer import inlineCallbacks

from twistgate.config import load_file
from twistgate.service import GatewayService

TOKEN = "integration-token"


def require_tool(name: str) -> str:
    """The path of a command the test needs: skip without it, fail when CI is set."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package: {'prometheus' if name == 'promtool' else name})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI requires it")
        pytest.skip(message)
    return path


class LiveGateway:
    def __init__(self, reactor: Any, path: Any, text: str, **ports: int) -> None:
        self.reactor = reactor
        self.path = path
        self.write(text, **ports)
        self.service = GatewayService(load_file(str(path)), reactor, handle_signals=False)
        self.port = 0
        self.admin_port = 0

    def write(self, text: str, **ports: int) -> None:
        text = textwrap.dedent(text)
        for name, port in ports.items():
            text = text.replace("{" + name + "}", str(port))
        self.path.write_text(text)

    @inlineCallbacks
    def start(self) -> Any:
        self.service.startService()
        yield self.service.ready
        ports = yield self.service.listening_ports()
        self.admin_port = ports["admin"].getHost().port
        self.port = next(p for name, p in ports.items() if name.startswith("listener:")).getHost().port

    def stop(self) -> Any:
        return self.service.stopService()


def request(port: int, method: str = "GET", path: str = "/", headers: Optional[Dict[str, str]] = None, body: Optional[bytes] = None, timeout: float = 10.0) -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def admin(port: int, method: str, path: str, token: Optional[str] = TOKEN) -> Tuple[int, Dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, head, body = request(port, method, path, headers=headers)
    if head.get("content-type", "").startswith("application/json"):
        return status, head, json.loads(body)
    return status, head, body
