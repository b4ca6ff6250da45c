"""
The auth stage's shortcut for a JWT seen before (`JwtAuthenticator.recall`):
the identity `verify` would give, or None so that the long way decides and
says why; the route's requirements still decide on every use.
"""

from __future__ import annotations

from types import SimpleNamespace

from tests.auth.helpers import HS_SECRET, NOW, AuthGateway, bearer, token
from twistgate.headers import Headers


def gateway(route_auth: str = "[tokens]") -> AuthGateway:
    return AuthGateway(
        f"""
        auth:
          tokens: {{type: jwt, algorithms: [HS256], secret: "{HS_SECRET}"}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: {route_auth}}}
        """
    )


def test_recall_answers_only_for_a_verified_token_still_good_now():
    gw = gateway()
    authenticator = gw.auth.authenticators["tokens"]

    def recall(headers):
        return authenticator.recall(SimpleNamespace(headers=Headers(headers)))

    good = token(HS_SECRET, "HS256", exp=NOW + 10)
    assert recall({"Authorization": [f"Bearer {good}"]}) is None  # never verified
    assert gw.get(headers=bearer(good)).code == 200
    identity = recall({"Authorization": [f"Bearer {good}"]})
    assert identity is not None and identity.consumer == "alice"
    assert recall({}) is None
    assert recall({"Authorization": [f"Basic {good}"]}) is None  # not a Bearer token
    assert recall({"Authorization": [f"Bearer {good[:-2]}"]}) is None  # another string: never taken for this one
    gw.clock.advance(10)
    assert recall({"Authorization": [f"Bearer {good}"]}) is None  # expired now, remembered or not
    refused = gw.get(headers=bearer(good))
    assert refused.code == 401 and "expired" in refused.header("WWW-Authenticate")[0]


def test_a_recalled_identity_still_meets_the_route_requirements():
    """A token seen before is admitted or refused as the first time: scopes still decide 403 on every use."""
    gw = gateway("{any: [tokens], scopes: [admin]}")
    no_scope = token(HS_SECRET, "HS256", scope="read")
    ok = token(HS_SECRET, "HS256", scope="read admin")
    for _ in range(2):
        refused = gw.get(headers=bearer(no_scope))
        assert refused.code == 403 and refused.json()["error"] == "forbidden"
        assert gw.records[-1].state["auth"]["error"] == "forbidden"
        admitted = gw.get(headers=bearer(ok))
        assert admitted.code == 200 and gw.records[-1].consumer == "alice"


def test_every_spelling_of_the_header_is_recalled_and_both_memories_stay_bounded(monkeypatch):
    """Remembered by the exact header value too: another spelling of the same token is its own entry, within the bound."""
    from twistgate.policies.auth import jwt_auth

    monkeypatch.setattr(jwt_auth, "_VERIFIED_CACHE_SIZE", 3)
    gw = gateway()
    authenticator = gw.auth.authenticators["tokens"]
    tokens = [token(HS_SECRET, "HS256", jti=str(i)) for i in range(5)]
    for value in tokens:
        for spelling in (f"Bearer {value}", f"bearer {value}"):
            assert gw.get(headers={"Authorization": spelling}).code == 200
            assert authenticator.recall(SimpleNamespace(headers=Headers({"Authorization": [spelling]}))) is not None
    assert len(authenticator._verified) == 3 and len(authenticator._by_header) == 3


def test_a_recalled_token_is_refused_exactly_where_verify_refuses_it():
    """exp, nbf and iat against the clock on every use, leeway included, to the boundary: recall and the long way agree."""
    gw = AuthGateway(
        f"""
        auth:
          tokens: {{type: jwt, algorithms: [HS256], secret: "{HS_SECRET}", leeway: 30s}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [tokens]}}
        """
    )
    authenticator = gw.auth.authenticators["tokens"]
    cases = [
        (token(HS_SECRET, "HS256", exp=NOW + 10), [(39.5, True), (40, False)]),  # refused from exp + leeway on
        (token(HS_SECRET, "HS256", nbf=NOW - 5, iat=None), [(-25, True), (-35.5, False)]),  # before nbf - leeway
        (token(HS_SECRET, "HS256", iat=NOW - 2), [(-32, True), (-32.25, False)]),  # an iat in the future
        (token(HS_SECRET, "HS256", nbf=NOW - 20, iat=NOW - 2), [(-32, True), (-32.25, False)]),  # the later of the two
    ]
    for value, moves in cases:
        assert gw.get(headers=bearer(value)).code == 200  # verified now: remembered
        for offset, good in moves:
            gw.clock.rightNow = NOW + offset  # a clock stepped forward or back
            request = SimpleNamespace(headers=Headers({"Authorization": [f"Bearer {value}"]}))
            assert (authenticator.recall(request) is not None) is good, (offset, good)
            assert (gw.get(headers=bearer(value)).code == 200) is good, (offset, good)
        gw.clock.rightNow = NOW


def test_a_recalled_token_never_reaches_the_upstream_unless_the_route_keeps_credentials():
    """A recalled identity's Authorization field goes as `strip` removes it, and stays with keep_credentials."""
    good = token(HS_SECRET, "HS256")
    for route_auth, kept in (("[tokens]", False), ("{any: [tokens], keep_credentials: true}", True)):
        gw = gateway(route_auth)
        for spelling in (f"Bearer {good}", f"bearer {good}", f"Bearer {good}", f"bearer {good}"):  # verified, then recalled
            reply = gw.get(headers={"Authorization": spelling})
            assert reply.code == 200 and gw.records[-1].consumer == "alice"
            assert reply.upstream_headers.get("authorization") == ([spelling] if kept else None)
