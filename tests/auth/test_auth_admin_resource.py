"""``/admin/keys``: the resource the admin listener mounts, driven with StubTreq."""

from __future__ import annotations

import json

import pytest
from treq.testing import StubTreq
from twisted.web.resource import Resource

from tests.auth.helpers import NOW, AuthGateway
from twistgate.testing import result_of


def admin_client(gateway):
    root, admin = Resource(), Resource()
    root.putChild(b"admin", admin)
    admin.putChild(b"keys", gateway.auth.admin_resource())
    return StubTreq(root)


class Admin:
    def __init__(self, gateway):
        self.client = admin_client(gateway)

    def call(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        d = self.client.request(method, "http://admin" + path, data=data)
        self.client.flush()
        response = result_of(d)
        content = result_of(response.content())
        return response, (json.loads(content) if content else None)


@pytest.fixture
def gateway(tmp_path):
    return AuthGateway(
        f"""
        auth:
          keys: {{type: api_key, store: "sqlite:{tmp_path}/keys.db"}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [keys]}}
        """
    )


def test_create_list_use_revoke(gateway):
    admin = Admin(gateway)
    response, created = admin.call("POST", "/admin/keys", {"consumer": "acme", "expires_in": "30d"})
    assert response.code == 201
    assert response.headers.getRawHeaders("Cache-Control") == ["no-store"]
    assert response.headers.getRawHeaders("Location") == [f"/admin/keys/{created['id']}"]
    assert created["key"].startswith(f"tg_{created['id']}_")
    assert created["consumer"] == "acme" and created["authenticator"] == "keys"
    assert created["expires_at"] == "2023-12-14T22:13:20Z"  # NOW + 30 days, RFC 3339
    key = created["key"]

    assert gateway.get(headers={"X-API-Key": key}).code == 200

    response, listed = admin.call("GET", "/admin/keys")
    assert response.code == 200
    assert [k["id"] for k in listed["keys"]] == [created["id"]]
    entry = listed["keys"][0]
    assert entry["active"] is True and entry["revoked_at"] is None
    assert key not in json.dumps(listed) and "hash" not in json.dumps(listed)

    response, one = admin.call("GET", f"/admin/keys/{created['id']}")
    assert response.code == 200 and one["consumer"] == "acme"

    response, _ = admin.call("DELETE", f"/admin/keys/{created['id']}")
    assert response.code == 204
    # the cached lookup is dropped at once: the key stops working now, not after cache_ttl
    assert gateway.get(headers={"X-API-Key": key}).code == 401
    response, again = admin.call("GET", f"/admin/keys/{created['id']}")
    assert again["active"] is False and again["revoked_at"] is not None


def test_unknown_ids_are_404(gateway):
    admin = Admin(gateway)
    for path in ("/admin/keys/0123456789abcdef", "/admin/keys/../../etc", "/admin/keys/x'%20OR%201=1"):
        response, body = admin.call("DELETE", path)
        assert response.code == 404, path
        assert body["error"] == "not_found"


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "'consumer' must be a non-empty string"),
        ({"consumer": ""}, "'consumer' must be a non-empty string"),
        ({"consumer": "a\nb"}, "control characters"),
        ({"consumer": "acme", "expires_in": 30}, "'expires_in' must be a duration string"),
        ({"consumer": "acme", "expires_in": "30"}, "needs a unit"),
        ({"consumer": "acme", "expires_in": "0s"}, "longer than zero"),
        ({"consumer": "acme", "admin": True}, "unknown field 'admin'"),
        (["acme"], "must be a JSON object"),
    ],
)
def test_bad_creation_requests_are_400(gateway, body, message):
    response, answer = Admin(gateway).call("POST", "/admin/keys", body)
    assert response.code == 400
    assert message in answer["message"]
    assert set(answer) == {"error", "message", "request_id"}


def test_not_json_and_unknown_authenticator(gateway):
    admin = Admin(gateway)
    response, answer = admin.call("POST", "/admin/keys", raw=b"{nope")
    assert response.code == 400 and "not valid JSON" in answer["message"]
    response, answer = admin.call("POST", "/admin/keys", {"consumer": "a", "authenticator": "nope"})
    assert response.code == 404


def test_other_methods_are_405(gateway):
    admin = Admin(gateway)
    response, answer = admin.call("PUT", "/admin/keys")
    assert response.code == 405 and response.headers.getRawHeaders("Allow") == ["GET, POST"]
    response, _ = admin.call("POST", "/admin/keys/0123456789abcdef")
    assert response.code == 405


def test_several_api_key_authenticators_need_a_name(tmp_path):
    gateway = AuthGateway(
        f"""
        auth:
          partners: {{type: api_key, store: "sqlite:{tmp_path}/keys.db"}}
          internal: {{type: api_key, store: "sqlite:{tmp_path}/keys.db", header: X-Internal-Key}}
        """
    )
    admin = Admin(gateway)
    response, answer = admin.call("POST", "/admin/keys", {"consumer": "acme"})
    assert response.code == 400 and "internal, partners" in answer["message"]
    response, created = admin.call("POST", "/admin/keys", {"consumer": "acme", "authenticator": "internal"})
    assert response.code == 201
    _, listed = admin.call("GET", "/admin/keys?authenticator=partners")
    assert listed["keys"] == []
    _, listed = admin.call("GET", "/admin/keys")
    assert [k["authenticator"] for k in listed["keys"]] == ["internal"]
    response, _ = admin.call("DELETE", f"/admin/keys/{created['id']}")
    assert response.code == 204


def test_no_api_key_authenticator_no_resource():
    gateway = AuthGateway("auth:\n  c: {type: mtls}\n")
    assert gateway.auth.admin_resource() is None


def test_a_store_failure_is_a_json_503(gateway):
    class Broken:
        def list(self, name):
            from twisted.internet.defer import fail

            return fail(RuntimeError("disk on fire"))

    gateway.auth.authenticators["keys"].store = Broken()
    response, answer = Admin(gateway).call("GET", "/admin/keys")
    assert response.code == 503 and answer["error"] == "store_unavailable"
    assert "disk" not in answer["message"]


def test_times_are_the_gateway_clock(gateway):
    _, created = Admin(gateway).call("POST", "/admin/keys", {"consumer": "acme"})
    assert created["created_at"] == "2023-11-14T22:13:20Z" and NOW == 1_700_000_000.0
    assert created["expires_at"] is None
