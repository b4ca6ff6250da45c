"""
API keys managed through the real admin listener (behind its bearer token)
of a whole GatewayService, and used on the public listener.
"""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.conftest import RecordingUpstream
from tests.ops.live import TOKEN, LiveGateway, request

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: integration-token}
auth:
  keys: {type: api_key, store: "sqlite:{db}", forward_consumer: X-Consumer}
upstreams: {app: {targets: [{url: "http://127.0.0.1:{up}"}]}}
routes:
  - {name: api, path: "/api/*", upstream: app, auth: [keys]}
"""


def call(port, method, path, body=None, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    status, head, raw = request(port, method, path, headers=headers, body=data)
    return status, head, json.loads(raw) if raw else None


@pytest_twisted.inlineCallbacks
def test_keys_through_the_admin_listener(reactor, tmp_path, servers):
    upstream = RecordingUpstream()
    up = servers.upstream(upstream)
    text = CONFIG.replace("{db}", str(tmp_path / "keys.db"))
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", text, up=up)
    yield gateway.start()
    try:
        status, _, _ = yield deferToThread(call, gateway.admin_port, "POST", "/admin/keys", {"consumer": "acme"}, None)
        assert status == 401  # the operator's token is required
        status, head, created = yield deferToThread(call, gateway.admin_port, "POST", "/admin/keys", {"consumer": "acme"})
        assert status == 201 and head["cache-control"] == "no-store"
        status, _, _ = yield deferToThread(request, gateway.port, "POST", "/admin/keys", {"X-API-Key": created["key"]})
        assert status == 404  # not on the public listener
        status, _, _ = yield deferToThread(request, gateway.port, "GET", "/api/x", {"X-API-Key": created["key"]})
        assert status == 200 and upstream.requests[-1].header("x-consumer") == b"acme"
        status, _, listed = yield deferToThread(call, gateway.admin_port, "GET", "/admin/keys")
        assert [k["id"] for k in listed["keys"]] == [created["id"]]
        assert created["key"] not in json.dumps(listed)
        status, _, _ = yield deferToThread(call, gateway.admin_port, "DELETE", f"/admin/keys/{created['id']}")
        assert status == 204
        status, _, _ = yield deferToThread(request, gateway.port, "GET", "/api/x", {"X-API-Key": created["key"]})
        assert status == 401
    finally:
        yield gateway.stop()
