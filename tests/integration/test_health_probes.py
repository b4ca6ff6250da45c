"""
Issue 14, health for orchestrators, over real sockets: a public listener's
``health_path`` on both HTTP/1.1 engines (answered before routing, never
forwarded), and ``/livez`` / ``/readyz`` on the admin listener of a real
``twistd`` without the token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.conftest import RecordingUpstream, http_request
from twistgate.testing_twistd import RunningGateway, free_port
from twistgate.testing_twistd import http_request as blocking_request

pytestmark = pytest.mark.integration

HEALTH = """
listeners: [{name: public, endpoint: "tcp:0", health_path: /_gateway/health}]
upstreams: {app: {targets: [{url: "http://127.0.0.1:{up}"}]}}
routes: [{name: all, path: "/*", upstream: app}]
"""


@pytest_twisted.inlineCallbacks
def test_health_path_is_answered_by_the_gateway_on_both_engines(servers):
    upstream = RecordingUpstream()
    gw, _ = servers.gateway(HEALTH, listener="public", up=servers.upstream(upstream))
    reply = yield deferToThread(http_request, gw, "GET", "/_gateway/health?probe=1")
    assert reply.status == 200 and reply.json() == {"status": "alive"}
    assert reply.header("Content-Type") == "application/json"
    assert upstream.requests == []
    routed = yield deferToThread(http_request, gw, "GET", "/_gateway/other")
    assert routed.status == 200 and [r.uri for r in upstream.requests] == [b"/_gateway/other"]


def test_livez_and_readyz_need_no_token_under_twistd(tmp_path: Path) -> None:
    admin = free_port()
    gw = RunningGateway(
        f"""
admin: {{endpoint: "tcp:{admin}:interface=127.0.0.1", token: s3cret}}
upstreams: {{app: {{targets: [{{url: "http://127.0.0.1:9"}}]}}}}
routes: [{{name: all, path: "/*", upstream: app}}]
""",
        tmp_path,
    )
    try:
        for path, body in (("/livez", {"status": "alive"}), ("/readyz", {"status": "ready"})):
            reply = blocking_request(f"http://127.0.0.1:{admin}{path}")
            assert (reply.status, reply.json()) == (200, body), path
        assert blocking_request(f"http://127.0.0.1:{admin}/admin/health").status == 401
    finally:
        assert gw.stop() == 0
