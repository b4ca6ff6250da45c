"""
Issue 17 item 11: the ``twistd_gateway`` fixture of twistgate's pytest
plugin runs the real ``twistd -n twistgate`` in front of a real upstream on
free ports, reloads it with SIGHUP and stops it cleanly.
"""

from __future__ import annotations

YAML = """
routes:
  - {name: api, path: "/api/*", upstream: app, strip_prefix: /api}
plugins:
  maintenance: {allow_paths: [/open], retry_after: 30s}   # paths as forwarded (prefix stripped)
"""


def test_twistd_gateway_serves_reloads_and_stops(twistd_gateway):
    gw = twistd_gateway(YAML)
    closed = gw.get("/api/x")
    assert (closed.status, closed.reason, closed.headers["retry-after"]) == (503, "Service Unavailable", "30")
    reply = gw.get("/api/open", headers={"X-Tenant": "acme"})
    assert reply.status == 200 and reply.json()["path"] == "/open"  # through to the real upstream
    assert gw.upstream.requests[-1]["headers"]["X-Tenant"] == "acme"
    assert "configuration reloaded (SIGHUP)" in gw.reload(YAML.replace("maintenance: {", "maintenance: {enabled: false, "))
    assert gw.get("/api/x").status == 200
    assert gw.stop() == 0
    assert "Server Shut Down." in gw.output
