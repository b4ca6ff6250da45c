"""
The route policy: any one authenticator suffices, 401 vs 403, challenges,
credential and identity-header hygiene, the consumer for later stages.
"""

from __future__ import annotations

import pytest

from tests.auth.helpers import HS_SECRET, NOW, AuthGateway, bearer, token
from twistgate.policies.auth.keys import new_key
from twistgate.testing import result_of


@pytest.fixture
def gateway(tmp_path):
    gw = AuthGateway(
        f"""
        auth:
          tokens:
            type: jwt
            algorithms: [HS256]
            secret: "{HS_SECRET}"
            forward_claims: {{sub: X-User-Id, roles: X-User-Roles}}
          keys:
            type: api_key
            store: "sqlite:{tmp_path}/keys.db"
            forward_consumer: X-Consumer
        routes:
          - {{name: either, path: "/either/*", upstream: app, auth: [tokens, keys]}}
          - {{name: keys-only, path: "/keys/*", upstream: app, auth: [keys]}}
          - {{name: partners, path: "/partners/*", upstream: app, auth: {{any: [keys, tokens], consumers: [acme]}}}}
          - {{name: public, path: "/public/*", upstream: app}}
        """
    )
    record, key = new_key("keys", "acme", NOW, None)
    result_of(gw.auth.authenticators["keys"].store.create(record))
    other, other_key = new_key("keys", "globex", NOW, None)
    result_of(gw.auth.authenticators["keys"].store.create(other))
    gw.key, gw.other_key = key, other_key
    return gw


def test_any_one_authenticator_suffices(gateway):
    assert gateway.get("/either/x", headers=bearer(token(HS_SECRET, "HS256"))).code == 200
    assert gateway.get("/either/x", headers={"X-API-Key": gateway.key}).code == 200
    # a bad token does not spoil a good key, in either order
    both = {"Authorization": "Bearer not.a.token", "X-API-Key": gateway.key}
    reply = gateway.get("/either/x", headers=both)
    assert reply.code == 200 and gateway.records[-1].consumer == "acme"
    assert "authorization" not in reply.upstream_headers and "x-api-key" not in reply.upstream_headers


def test_401_lists_a_challenge_per_authenticator(gateway):
    reply = gateway.get("/either/x")
    assert reply.code == 401
    assert reply.header("WWW-Authenticate") == ['Bearer realm="twistgate"', 'ApiKey realm="twistgate", header="X-API-Key"']
    assert reply.json()["error"] == "unauthorized"
    assert reply.header("Content-Type") == ["application/json"]
    assert gateway.records[-1].state["auth"] == {"error": "no_credentials"}
    assert gateway.records[-1].consumer is None


def test_invalid_credentials_are_reported_per_authenticator_without_secrets(gateway):
    reply = gateway.get("/either/x", headers={"Authorization": "Bearer a.b.c", "X-API-Key": "tg_nope"})
    assert reply.code == 401
    state = gateway.records[-1].state["auth"]
    assert state["error"] == "invalid_credentials"
    assert set(state["rejected"]) == {"tokens", "keys"}
    assert "tg_nope" not in repr(state) and "a.b.c" not in repr(state)
    assert reply.header("WWW-Authenticate")[0].startswith('Bearer realm="twistgate", error="invalid_token"')


def test_authenticated_but_not_allowed_is_403(gateway):
    assert gateway.get("/partners/x", headers={"X-API-Key": gateway.key}).code == 200
    reply = gateway.get("/partners/x", headers={"X-API-Key": gateway.other_key})
    assert reply.code == 403
    assert reply.json()["error"] == "forbidden"
    assert gateway.records[-1].state["auth"]["consumer"] == "globex"
    # one identity not allowed, another one allowed: the allowed one wins
    acme_token = token(HS_SECRET, "HS256", sub="acme")
    mixed = {"X-API-Key": gateway.other_key, "Authorization": f"Bearer {acme_token}"}
    assert gateway.get("/partners/x", headers=mixed).code == 200
    assert gateway.records[-1].consumer == "acme"


def test_spoofed_identity_headers_never_reach_the_upstream(gateway):
    spoofed = {"X-User-Id": "root", "X-User-Roles": "admin", "X-Consumer": "root"}
    via_key = gateway.get("/keys/x", headers={**spoofed, "X-API-Key": gateway.key}).upstream_headers
    assert via_key["x-consumer"] == ["acme"]
    assert "x-user-id" not in via_key and "x-user-roles" not in via_key
    via_token = gateway.get("/either/x", headers={**spoofed, **bearer(token(HS_SECRET, "HS256", roles=["a", "b"]))})
    seen = via_token.upstream_headers
    assert seen["x-user-id"] == ["alice"] and seen["x-user-roles"] == ["a, b"]
    assert "x-consumer" not in seen


def test_spoofed_identity_headers_are_removed_on_public_routes_too(gateway):
    seen = gateway.get("/public/x", headers={"X-User-Id": "root", "X-Consumer": "root", "X-Other": "kept"}).upstream_headers
    assert "x-user-id" not in seen and "x-consumer" not in seen
    assert seen["x-other"] == ["kept"]


SPELLINGS = ("X_User_Id", "x-user_id", "X_USER-ID", "x_user_id")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_underscore_spellings_of_identity_headers_are_removed(gateway, spelling):
    """CGI/WSGI map `-` and `_` to one variable (HTTP_X_USER_ID): every spelling is a forgery."""
    for path, headers in (
        ("/public/x", {}),
        ("/keys/x", {"X-API-Key": gateway.key}),
        ("/either/x", bearer(token(HS_SECRET, "HS256"))),
    ):
        seen = gateway.get(path, headers={spelling: "root", "X_Consumer": "root", "X_Other": "kept", **headers}).upstream_headers
        forged = [name for name, values in seen.items() if name.replace("_", "-") in ("x-user-id", "x-consumer") and "root" in values]
        assert forged == [], (path, seen)
        assert seen["x_other"] == ["kept"]  # only identity headers are scrubbed


def test_a_credential_of_another_kind_is_left_alone(gateway):
    """On a keys-only route, an Authorization header is not the gateway's credential: it is forwarded."""
    reply = gateway.get("/keys/x", headers={"X-API-Key": gateway.key, "Authorization": "Bearer for-the-upstream"})
    assert reply.upstream_headers["authorization"] == ["Bearer for-the-upstream"]


def test_identity_is_visible_to_plugins_and_observers(gateway):
    gateway.get("/either/x", headers=bearer(token(HS_SECRET, "HS256", sub="bob", scope="read write")))
    record = gateway.records[-1]
    assert record.consumer == "bob"
    assert record.state["auth"]["scopes"] == ["read", "write"]
    assert "secret" not in repr(record.state).lower()


def test_ordering_tries_authenticators_in_the_routes_order(gateway):
    """Both valid: the first listed authenticator names the consumer."""
    both = {"X-API-Key": gateway.key, **bearer(token(HS_SECRET, "HS256", sub="bob"))}
    gateway.get("/either/x", headers=both)
    assert gateway.records[-1].consumer == "bob"
    gateway.get("/partners/x", headers={"X-API-Key": gateway.key, **bearer(token(HS_SECRET, "HS256", sub="acme"))})
    assert gateway.records[-1].state["auth"]["authenticator"] == "keys"
