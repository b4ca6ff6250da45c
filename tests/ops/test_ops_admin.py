"""The admin API: token checks, every endpoint, redaction, reload answers."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from twisted.web.resource import Resource

from tests.ops.helpers import AdminGateway

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: s3cret}
upstreams:
  app: {targets: [{url: "http://app:80"}, {url: "http://app2:80", weight: 3}]}
  db: {targets: [{url: "http://db:80"}]}
routes:
  - {name: api, path: "/api/*", upstream: app, strip_prefix: /api}
  - {name: user, path: "/api/users/{id}", methods: [GET], upstream: db}
plugins:
  demo_secret: {enabled: false, password: hunter2, api_key: abc, dsn: "postgresql://bob:pw@db/x", note: fine}
"""


class Upstream(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"hello"


def nothing(options, context):
    return object()


@pytest.fixture
def gateway(tmp_path):
    return AdminGateway(tmp_path / "gw.yaml", CONFIG, Upstream(), plugins={"demo_secret": nothing})


@pytest.mark.parametrize("path", ["/admin/health", "/admin/routes", "/admin/upstreams", "/admin/stats", "/admin/config", "/admin/explain?path=/", "/admin/keys"])
@pytest.mark.parametrize("token", [None, "wrong", "s3cre", "s3cret-and-more"])
def test_every_admin_endpoint_needs_the_token(gateway, path, token):
    response, body = gateway.admin("GET", path, token=token)
    assert response.code == 401
    challenge = response.headers.getRawHeaders(b"www-authenticate")[0]
    assert challenge.startswith(b'Bearer realm="twistgate-admin"')
    assert (b'error="invalid_token"' in challenge) == (token is not None)
    assert body["error"] == "unauthorized" and body["request_id"]


def test_reload_needs_the_token(gateway):
    response, _ = gateway.admin("POST", "/admin/reload", token="nope")
    assert response.code == 401


def test_other_authorization_schemes_are_refused(gateway):
    response, _ = gateway.admin("GET", "/admin/health", token=None, headers={"Authorization": "Basic czNjcmV0"})
    assert response.code == 401


def test_health(gateway):
    response, body = gateway.admin("GET", "/admin/health")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"cache-control") == [b"no-store"]
    assert body["status"] == "ok" and body["generation"] == 1 and body["routes"] == 2
    assert body["upstreams"] == {"app": {"targets": 2, "healthy": 2}, "db": {"targets": 1, "healthy": 1}}


def test_routes_in_match_order_with_their_pipeline(gateway):
    _, body = gateway.admin("GET", "/admin/routes")
    names = [r["name"] for r in body["routes"]]
    assert names == ["user", "api"]
    user = body["routes"][0]
    assert user["methods"] == "GET" and user["kind"] == "param" and user["upstream"] == "db"
    assert "tracing" in user["stages_and_plugins"]


def test_upstreams_show_targets(gateway):
    _, body = gateway.admin("GET", "/admin/upstreams")
    app = body["upstreams"][0]
    assert app["name"] == "app" and app["balance"] == "round_robin"
    assert [(t["url"], t["weight"], t["healthy"]) for t in app["targets"]] == [("http://app", 1, True), ("http://app2", 3, True)]


def test_stats_after_traffic(gateway):
    gw = gateway.gw
    for _ in range(3):
        gw.content(gw.request("GET", "http://gw/api/x"))
    gw.content(gw.request("GET", "http://gw/nowhere"))
    _, body = gateway.admin("GET", "/admin/stats")
    assert body["total"]["requests"] == 4
    assert body["total"]["status"] == {"2xx": 3, "4xx": 1}
    api = body["routes"]["api"]
    assert api["requests"] == 3 and set(api["latency_ms"]) == {"p50", "p95", "p99"}
    assert body["routes"]["(no route)"]["requests"] == 1


def test_config_is_redacted(gateway):
    response, body = gateway.admin("GET", "/admin/config")
    text = response and str(body)
    assert "s3cret" not in text and "hunter2" not in text and "abc" not in text and ":pw@" not in text
    assert body["config"]["admin"]["token"] == "***"
    options = body["config"]["plugins"][0]["options"]
    assert options["password"] == "***" and options["api_key"] == "***" and options["note"] == "fine"
    assert options["dsn"] == "***"
    assert body["config"]["routes"][0]["name"] == "api"


def test_explain_endpoint(gateway):
    response, body = gateway.admin("GET", "/admin/explain?method=GET&path=/api/users/7")
    assert response.code == 200
    assert body["result"] == "matched" and body["route"]["name"] == "user"
    assert body["route"]["params"] == {"id": "7"}
    response, body = gateway.admin("GET", "/admin/explain")
    assert response.code == 400 and body["error"] == "bad_request"


def test_unknown_paths_and_methods(gateway):
    response, body = gateway.admin("GET", "/admin/nothing")
    assert response.code == 404 and body["error"] == "not_found"
    response, body = gateway.admin("DELETE", "/admin/health")
    assert response.code == 405 and response.headers.getRawHeaders(b"allow") == [b"GET"]
    response, body = gateway.admin("GET", "/admin/reload")
    assert response.code == 405 and response.headers.getRawHeaders(b"allow") == [b"POST"]
    response, _ = gateway.admin("GET", "/elsewhere", token=None)
    assert response.code == 404


def test_keys_without_a_key_store_is_404(gateway):
    response, body = gateway.admin("GET", "/admin/keys")
    assert response.code == 404


def test_keys_are_delegated_to_the_auth_service(gateway):
    class Keys(Resource):
        isLeaf = True

        def render(self, request):
            return b"keys:" + b"/".join(request.postpath)

    class Auth:
        def admin_resource(self):
            return Keys()

    generation = gateway.service.generation
    generation.services = attrs.evolve(generation.services, auth=Auth())
    response, body = gateway.admin("DELETE", "/admin/keys/k123")
    assert response.code == 200 and body == b"keys:k123"
    response, _ = gateway.admin("DELETE", "/admin/keys/k123", token="bad")
    assert response.code == 401


def test_metrics_is_open_by_default_and_can_require_the_token(gateway, tmp_path):
    response, body = gateway.admin("GET", "/metrics", token=None)
    assert response.code == 200 and b"twistgate_requests_in_flight" in body
    assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    closed = AdminGateway(tmp_path / "b.yaml", CONFIG.replace("token: s3cret}", "token: s3cret, metrics_auth: true}"), Upstream(), plugins={"demo_secret": nothing})
    assert closed.admin("GET", "/metrics", token=None)[0].code == 401
    assert closed.admin("GET", "/metrics")[0].code == 200


def test_dashboard_files_are_served_without_the_token(gateway):
    response, body = gateway.admin("GET", "/admin/", token=None)
    assert response.code == 200 and b"<title>twistgate dashboard</title>" in body
    csp = response.headers.getRawHeaders(b"content-security-policy")[0]
    assert b"script-src 'self'" in csp and b"http" not in csp  # nothing from elsewhere
    for name, kind in (("dashboard.js", b"javascript"), ("dashboard.css", b"text/css")):
        response, body = gateway.admin("GET", f"/admin/{name}", token=None)
        assert response.code == 200 and kind in response.headers.getRawHeaders(b"content-type")[0]
    response, _ = gateway.admin("GET", "/admin", token=None, allow_redirects=False)
    assert response.code == 301 and response.headers.getRawHeaders(b"location") == [b"/admin/"]


def test_reload_swaps_and_answers_with_the_changes(gateway):
    gateway.rewrite(CONFIG.replace('path: "/api/*"', 'path: "/v2/*"'))
    response, body = gateway.admin("POST", "/admin/reload")
    assert response.code == 200, body
    assert body["ok"] and body["generation"] == 2
    assert body["changes"]["routes_changed"] == ["api"]
    assert body["changes"]["upstreams_reused"] == ["app", "db"]
    assert gateway.gw.request("GET", "http://gw/v2/x").code == 200
    assert gateway.gw.request("GET", "http://gw/api/x").code == 404


def test_broken_config_is_rejected_with_its_errors_and_the_old_one_serves(gateway):
    gateway.rewrite(CONFIG.replace("upstream: db", "upstream: dbb"))
    response, body = gateway.admin("POST", "/admin/reload")
    assert response.code == 400
    assert body["error"] == "invalid_config" and body["request_id"] and body["message"]
    (issue,) = body["issues"]
    assert issue["path"] == "routes[1].upstream" and issue["line"] == 9 and issue["file"].endswith("gw.yaml")
    assert "did you mean 'db'" in issue["message"]
    assert gateway.gw.request("GET", "http://gw/api/x").code == 200
    _, health = gateway.admin("GET", "/admin/health")
    assert health["generation"] == 1 and health["last_reload"]["ok"] is False


def test_reload_rotates_the_token(gateway):
    gateway.rewrite(CONFIG.replace("token: s3cret", "token: n3w"))
    assert gateway.admin("POST", "/admin/reload")[0].code == 200
    assert gateway.admin("GET", "/admin/health")[0].code == 401
    assert gateway.admin("GET", "/admin/health", token="n3w")[0].code == 200


def test_config_is_the_effective_configuration_without_confusing_nulls(gateway):
    """Issue 14: sections where the file writes them, defaults filled in, no `admin: null` or `sections`."""
    _, body = gateway.admin("GET", "/admin/config")
    config = body["config"]
    assert config["admin"] == {
        "endpoint": "tcp:0:interface=127.0.0.1", "token": "***", "metrics_auth": False, "ready_requires_healthy_target": False,
    }
    assert "sections" not in config and "source" not in config and body["source"].endswith("gw.yaml")
    assert None not in config.values()  # no demo: null, defaults: null
    assert config["limits"]["max_request_body"] == 10 * 1024 * 1024  # a default, filled in
    assert "declared" not in config["plugins"][0]


def test_a_rejected_reload_has_one_request_id(gateway):
    """Issue 14: the body's request_id is the answer's X-Request-Id, generated or the client's."""
    gateway.rewrite(CONFIG.replace("upstream: db", "upstream: dbb"))
    response, body = gateway.admin("POST", "/admin/reload")
    assert response.code == 400
    assert body["request_id"] == response.headers.getRawHeaders(b"x-request-id")[0].decode()
    response, body = gateway.admin("POST", "/admin/reload", headers={"X-Request-ID": "ops-42"})
    assert body["request_id"] == "ops-42" == response.headers.getRawHeaders(b"x-request-id")[0].decode()


def test_reload_reports_a_route_that_only_moved_as_moved(gateway):
    """Issue 14: moving a route in the file is not a change of the route (but its place is reported)."""
    moved = CONFIG.replace(
        '  - {name: api, path: "/api/*", upstream: app, strip_prefix: /api}\n'
        '  - {name: user, path: "/api/users/{id}", methods: [GET], upstream: db}\n',
        '  - {name: user, path: "/api/users/{id}", methods: [GET], upstream: db}\n'
        '  - {name: api, path: "/api/*", upstream: app, strip_prefix: /api}\n',
    )
    assert moved != CONFIG
    gateway.rewrite(moved)
    _, body = gateway.admin("POST", "/admin/reload")
    assert body["changes"]["routes_changed"] == []
    assert len(body["changes"]["routes_moved"]) == 1 and body["changes"]["routes_moved"][0] in ("api", "user")
    # a route added in front moves nothing; a moved and edited route is changed
    gateway.rewrite(moved.replace("routes:\n", 'routes:\n  - {name: first, path: "/first", upstream: app}\n'))
    _, body = gateway.admin("POST", "/admin/reload")
    assert (body["changes"]["routes_added"], body["changes"]["routes_moved"], body["changes"]["routes_changed"]) == (["first"], [], [])
    gateway.rewrite(CONFIG.replace('path: "/api/*"', 'path: "/v2/*"'))
    _, body = gateway.admin("POST", "/admin/reload")
    assert body["changes"]["routes_changed"] == ["api"] and body["changes"]["routes_removed"] == ["first"]
