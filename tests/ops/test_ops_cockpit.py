"""
The operator's endpoints in memory: draining targets, the history and audit
answers, and the audit of every admin action (never a secret).
"""

from __future__ import annotations

import json
from typing import Any, List

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.ops.helpers import AdminGateway
from twistgate.ops.audit import AuditTrail
from twistgate.ops.cockpit import action_of
from twistgate.ops.drain import BadDrainRequest, drain_request
from twistgate.ops.reload import moved
from twistgate.testing import result_of

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: s3cret}
upstreams:
  app: {targets: [{url: "http://one:80"}, {url: "http://two:80"}]}
routes:
  - {name: api, path: "/api/*", upstream: app}
  - {name: idle, path: "/idle/*", upstream: app}
"""


class Hosts(Resource):
    """Records the Host of each request; ``/hold`` requests wait until released."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hosts: List[str] = []
        self.held: List[Any] = []

    def render(self, request: Any) -> Any:
        self.hosts.append(request.getHeader(b"host").decode())
        if request.path.endswith(b"/hold"):
            self.held.append(request)
            return NOT_DONE_YET
        return b"ok"

    def release(self) -> None:
        for request in self.held:
            request.write(b"done")
            request.finish()
        self.held = []


@pytest.fixture
def gateway(tmp_path):
    return AdminGateway(tmp_path / "gw.yaml", CONFIG, Hosts())


def post(gateway: AdminGateway, path: str, body: Any, **kwargs: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return gateway.admin("POST", path, data=data, headers={"Content-Type": "application/json"}, **kwargs)


def spread(gateway: AdminGateway, n: int = 8) -> List[str]:
    upstream = gateway.upstream
    upstream.hosts.clear()
    for _ in range(n):
        assert gateway.gw.request("GET", "http://gw/api/x").code == 200
    return sorted(set(upstream.hosts))


def target(gateway: AdminGateway, url: str) -> Any:
    _, body = gateway.admin("GET", "/admin/upstreams")
    (app,) = body["upstreams"]
    return next(t for t in app["targets"] if t["url"] == url)


def test_a_drained_target_gets_no_new_request_and_undrain_restores_it(gateway):
    """Drain: traffic moves to the other target and /admin/upstreams says draining; undrain: both serve again."""
    assert spread(gateway) == ["one", "two"]
    response, body = post(gateway, "/admin/upstreams/app/drain", {"target": "http://one:80"})
    assert response.code == 200, body
    assert body["draining"] is True and body["changed"] is True and body["upstream"] == "app"
    assert target(gateway, "http://one")["draining"] is True
    assert target(gateway, "http://two")["draining"] is False
    assert spread(gateway) == ["two"]
    _, explained = gateway.admin("GET", "/admin/explain?path=/api/x")
    assert explained["upstream"]["candidates"] == ["http://two"]  # explain says where requests go now
    response, body = post(gateway, "/admin/upstreams/app/drain", {"target": "http://one:80/"})
    assert response.code == 200 and body["changed"] is False  # again: nothing to change
    response, body = post(gateway, "/admin/upstreams/app/undrain", {"target": "http://one:80"})
    assert response.code == 200 and body["draining"] is False and body["changed"] is True
    assert target(gateway, "http://one")["draining"] is False
    assert spread(gateway) == ["one", "two"]


def test_requests_in_flight_on_a_drained_target_finish(gateway):
    """Drain leaves what is in flight alone: it finishes on the drained target."""
    upstream = gateway.upstream
    held = [gateway.gw.client.get("http://gw/api/hold") for _ in range(2)]
    gateway.gw.flush()
    assert sorted(upstream.hosts) == ["one", "two"] and len(upstream.held) == 2
    response, body = post(gateway, "/admin/upstreams/app/drain", {"target": "http://one:80"})
    assert body["in_flight"] == 1
    assert spread(gateway) == ["two"]
    upstream.release()
    gateway.gw.flush()
    responses = [result_of(d) for d in held]
    assert [r.code for r in responses] == [200, 200]
    assert [result_of(r.content()) for r in responses] == [b"done", b"done"]
    assert target(gateway, "http://one")["in_flight"] == 0


def test_draining_every_target_warns_and_answers_503(gateway):
    """The operator may drain all of them; the answer says what that means."""
    post(gateway, "/admin/upstreams/app/drain", {"target": "http://one:80"})
    response, body = post(gateway, "/admin/upstreams/app/drain", {"target": "http://two:80"})
    assert response.code == 200 and "503" in body["warning"] and body["available_targets"] == 0
    assert gateway.gw.request("GET", "http://gw/api/x").code == 503


def test_a_drain_holds_across_a_reload_that_rebuilds_the_upstream(gateway):
    """The drained set is the gateway's: a rebuilt upstream (its config changed) keeps the drain."""
    post(gateway, "/admin/upstreams/app/drain", {"target": "http://one:80"})
    gateway.rewrite(CONFIG.replace('{url: "http://two:80"}', '{url: "http://two:80", weight: 2}'))
    response, body = gateway.admin("POST", "/admin/reload")
    assert response.code == 200 and body["changes"]["upstreams_rebuilt"] == ["app"]
    assert target(gateway, "http://one")["draining"] is True
    assert spread(gateway) == ["two"]


@pytest.mark.parametrize("path, body", [
    ("/admin/upstreams/nope/drain", {"target": "http://one:80"}),
    ("/admin/upstreams/app/drain", {"target": "http://three:80"}),
    ("/admin/upstreams/app/undrain", {"target": "http://three:80"}),
])
def test_unknown_upstream_or_target_is_404_json(gateway, path, body):
    response, answer = post(gateway, path, body)
    assert response.code == 404
    assert answer["error"] == "not_found" and answer["request_id"] and answer["message"]
    assert spread(gateway) == ["one", "two"]


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"target": 3}', b'{"url": "http://one:80"}',
                                  b'{"target": "http://one:80", "extra": 1}', b'{"target": "  "}'])
def test_a_bad_drain_body_is_400_json(gateway, body):
    response, answer = post(gateway, "/admin/upstreams/app/drain", body)
    assert response.code == 400 and answer["error"] == "bad_request" and answer["request_id"]


def test_drain_needs_the_token_and_post(gateway):
    response, _ = post(gateway, "/admin/upstreams/app/drain", {"target": "http://one:80"}, token="wrong")
    assert response.code == 401
    response, answer = gateway.admin("GET", "/admin/upstreams/app/drain")
    assert response.code == 405 and response.headers.getRawHeaders(b"allow") == [b"POST"]
    response, answer = gateway.admin("GET", "/admin/upstreams/app/other")
    assert response.code == 404 and answer["error"] == "not_found"
    assert spread(gateway) == ["one", "two"]


def test_drain_request_bodies():
    assert drain_request(b'{"target": " http://a:1/ "}') == "http://a:1"
    with pytest.raises(BadDrainRequest):
        drain_request(b"x" * 20000)


def test_history_endpoint_shows_every_route(gateway):
    """``GET /admin/stats/history``: total and every configured route, idle ones included; ?route= selects."""
    spread(gateway, 4)
    response, body = gateway.admin("GET", "/admin/stats/history")
    assert response.code == 200 and body["bucket_seconds"] == 10 and body["span_seconds"] == 900
    assert set(body["routes"]) == {"api", "idle"} and body["generation"] == 1
    assert body["total"][-1]["requests"] == 4 and body["routes"]["idle"][-1]["requests"] == 0
    _, only = gateway.admin("GET", "/admin/stats/history?route=idle")
    assert list(only["routes"]) == ["idle"]
    assert gateway.admin("POST", "/admin/stats/history")[0].code == 405
    assert gateway.admin("GET", "/admin/stats/history", token=None)[0].code == 401


def test_every_action_is_audited_and_never_with_a_secret(gateway):
    """Reloads, drains (refused ones too) go to /admin/audit, newest first, and to the log as JSON."""
    with capturedLogs() as events:
        post(gateway, "/admin/upstreams/app/drain", {"target": "http://one:80"})
        post(gateway, "/admin/upstreams/app/undrain", {"target": "http://nowhere:80"})
        post(gateway, "/admin/upstreams/app/drain", {"target": "http://two:80"}, token="wrong-token-value")
        gateway.admin("POST", "/admin/reload")
        gateway.admin("GET", "/admin/upstreams")  # reading is no action
    response, body = gateway.admin("GET", "/admin/audit")
    assert response.code == 200 and body["recorded"] == 4 and body["capacity"] == 500
    reload_, refused, unknown, drained = body["entries"]
    assert drained["action"] == "drain" and drained["outcome"] == "ok" and drained["status"] == 200
    assert drained["details"] == {"upstream": "app", "target": "http://one:80"}  # as the operator wrote it
    assert drained["via"] == "api" and drained["request_id"] and drained["time"].endswith("Z")
    assert unknown["action"] == "undrain" and unknown["outcome"] == "refused" and unknown["status"] == 404
    assert refused["status"] == 401 and refused["details"] == {"upstream": "app"}  # no body read without the token
    assert reload_["action"] == "reload" and reload_["details"]["generation"] == 2
    logged = [e for e in events if "audit" in e]
    assert len(logged) == 4 and json.loads(logged[0]["audit_json"])["action"] == "drain"
    everything = json.dumps(body) + "".join(e["audit_json"] for e in logged)
    assert "s3cret" not in everything and "wrong-token-value" not in everything
    _, newest = gateway.admin("GET", "/admin/audit?limit=1")
    assert [e["action"] for e in newest["entries"]] == ["reload"]
    assert gateway.admin("GET", "/admin/audit?limit=x")[0].code == 400


def test_a_refused_reload_is_audited_without_its_messages(gateway):
    """The issues of a refused file may quote configuration values: the entry counts them, the log of the reload has them."""
    gateway.rewrite(CONFIG.replace("upstream: app}", "upstream: nope-secret-value}", 1))
    assert gateway.admin("POST", "/admin/reload")[0].code == 400
    _, body = gateway.admin("GET", "/admin/audit")
    (entry,) = body["entries"]
    assert entry["outcome"] == "refused" and entry["details"] == {"generation": 1, "issues": 1}
    assert "nope-secret-value" not in json.dumps(body)


def test_the_audit_trail_is_bounded():
    clock = MemoryReactorClock()
    trail = AuditTrail(clock, capacity=3)
    for n in range(5):
        trail.record("drain", "ok", details={"n": n})
    answer = trail.answer()
    assert answer["recorded"] == 5 and [e["details"]["n"] for e in answer["entries"]] == [4, 3, 2]


@pytest.mark.parametrize("method, path, action", [
    (b"POST", "reload", "reload"), (b"GET", "reload", None), (b"POST", "keys", "key_create"),
    (b"POST", "keys/", "key_create"), (b"DELETE", "keys/0123456789abcdef", "key_revoke"),
    (b"GET", "keys", None), (b"POST", "upstreams/app/drain", "drain"), (b"POST", "upstreams/app/undrain", "undrain"),
    (b"POST", "upstreams/app/other", None), (b"GET", "audit", None),
])
def test_which_requests_are_actions(method, path, action):
    found = action_of(method, [s.encode() for s in path.split("/")])
    assert (found[0] if found else None) == action


def test_moved_names_the_routes_that_changed_place():
    """Moving one route up names that route, not every route it passed."""
    assert moved(list("abcde"), list("eabcd")) == ["e"]
    assert moved(list("abc"), list("abc")) == []
    assert moved(list("abc"), list("xcab")) == ["c"]


def test_reload_reports_moved_routes(gateway):
    swapped = CONFIG.replace(
        '  - {name: api, path: "/api/*", upstream: app}\n  - {name: idle, path: "/idle/*", upstream: app}',
        '  - {name: idle, path: "/idle/*", upstream: app}\n  - {name: api, path: "/api/*", upstream: app}',
    )
    gateway.rewrite(swapped)
    response, body = gateway.admin("POST", "/admin/reload")
    assert response.code == 200 and len(body["changes"]["routes_moved"]) == 1 and body["changes"]["routes_changed"] == []
    _, health = gateway.admin("GET", "/admin/health")
    assert health["last_reload"]["changes"] == body["changes"] and health["api_keys"] is False


def test_key_create_and_revoke_are_audited_without_the_secret(tmp_path):
    """The new key's secret is in the 201 answer only: neither the audit entry nor its JSON log line carries it."""
    config = CONFIG + f'auth:\n  keys: {{type: api_key, store: "sqlite:{tmp_path}/keys.db"}}\n'
    gateway = AdminGateway(tmp_path / "gw.yaml", config, Hosts())
    with capturedLogs() as events:
        response, created = post(gateway, "/admin/keys", {"consumer": "acme"})
        assert response.code == 201 and created["key"].startswith("tg_")
        assert gateway.admin("DELETE", f"/admin/keys/{created['id']}")[0].code == 204
    _, body = gateway.admin("GET", "/admin/audit")
    revoked, made = body["entries"]
    assert (made["action"], made["outcome"], made["status"]) == ("key_create", "ok", 201)
    assert made["details"]["key_id"] == created["id"] and made["details"]["consumer"] == "acme"
    assert (revoked["action"], revoked["outcome"], revoked["details"]["key_id"]) == ("key_revoke", "ok", created["id"])
    logged = [e["audit_json"] for e in events if "audit" in e]
    assert [json.loads(line)["action"] for line in logged] == ["key_create", "key_revoke"]
    secret = created["key"].split("_", 2)[2]  # tg_<id>_<secret>: the secret itself may hold "_"
    everything = json.dumps(body) + "".join(logged)
    assert created["key"] not in everything and secret not in everything and "s3cret" not in everything
