"""
JWKS: fetched with the side client, refreshed on the gateway's clock,
refetched for an unknown kid at a bounded rate, last good set kept, key
rotation without a restart.  The issuer is an in-memory twisted.web resource
behind treq's StubTreq.
"""

from __future__ import annotations

import json

import pytest
from treq.testing import StubTreq
from twisted.logger import capturedLogs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.auth.helpers import NOW, AuthGateway, bearer, jwk_of
from tests.auth.helpers import token as short_lived


def token(*args, **kwargs):
    """Tokens valid long enough for the clock to run through several refreshes."""
    kwargs.setdefault("exp", NOW + 86400)
    return short_lived(*args, **kwargs)


class Issuer(Resource):
    """A JWKS endpoint: serves `keys`, or an error status, or never answers."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.keys = []
        self.status = 200
        self.body = None
        self.hang = False
        self.hits = []

    def render(self, request):
        self.hits.append(request.uri)
        if self.hang:
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        request.setHeader(b"Content-Type", b"application/json")
        if self.body is not None:
            return self.body
        return json.dumps({"keys": self.keys}).encode()


class JwksGateway(AuthGateway):
    def __init__(self, issuer: Issuer, extra: str = "") -> None:
        super().__init__(
            f"""
            auth:
              tokens:
                type: jwt
                algorithms: [RS256, ES256]
                jwks_url: https://idp.example/.well-known/jwks.json
                jwks_refresh: 5m
                jwks_min_interval: 30s
                jwks_timeout: 2s
                {extra}
            routes:
              - {{name: api, path: "/api/*", upstream: app, auth: [tokens]}}
            """
        )
        self.issuer = issuer
        self.stub = StubTreq(issuer)
        self.key_set = self.auth.key_sets[0]
        self.key_set.http_client = self.stub

    def pump(self):
        for _ in range(5):
            self.stub.flush()
            self.harness.flush()

    def call(self, tok):
        d = self.start(headers=bearer(tok))
        self.pump()
        return self.finish(d)


@pytest.fixture
def issuer(rsa_key):
    issuer = Issuer()
    issuer.keys = [jwk_of(rsa_key, "k1", "RS256")]
    return issuer


def test_keys_load_at_start_and_verify(issuer, rsa_key):
    gw = JwksGateway(issuer)
    gw.key_set.start()
    gw.pump()
    assert len(issuer.hits) == 1 and issuer.hits[0] == b"/.well-known/jwks.json"
    assert gw.call(token(rsa_key, headers={"kid": "k1"})).code == 200
    assert len(issuer.hits) == 1  # a known kid needs no fetch
    gw.key_set.stop()


def test_first_token_with_unknown_kid_fetches_lazily(issuer, rsa_key):
    gw = JwksGateway(issuer)
    assert gw.call(token(rsa_key, headers={"kid": "k1"})).code == 200
    assert len(issuer.hits) == 1


def test_a_new_key_is_accepted_without_restart(issuer, rsa_key, rsa_key_2):
    gw = JwksGateway(issuer)
    gw.key_set.start()
    gw.pump()
    issuer.keys.append(jwk_of(rsa_key_2, "k2", "RS256"))  # the issuer rotates
    gw.clock.advance(31)  # past the minimum interval
    assert gw.call(token(rsa_key_2, headers={"kid": "k2"})).code == 200
    assert len(issuer.hits) == 2
    gw.key_set.stop()


def test_a_removed_key_is_refused_after_the_refresh(issuer, rsa_key, rsa_key_2):
    issuer.keys.append(jwk_of(rsa_key_2, "k2", "RS256"))
    gw = JwksGateway(issuer)
    gw.key_set.start()
    gw.pump()
    old = token(rsa_key, headers={"kid": "k1"})
    assert gw.call(old).code == 200
    issuer.keys = [jwk_of(rsa_key_2, "k2", "RS256")]  # k1 retired
    assert gw.call(old).code == 200  # until the next refresh
    gw.clock.advance(300)  # the background refresh
    gw.pump()
    assert len(issuer.hits) == 2
    assert gw.call(old).code == 401
    assert gw.call(token(rsa_key_2, headers={"kid": "k2"})).code == 200
    gw.key_set.stop()


def test_a_flood_of_unknown_kids_fetches_at_a_bounded_rate(issuer, rsa_key):
    gw = JwksGateway(issuer)
    gw.key_set.start()
    gw.pump()
    for i in range(200):
        reply = gw.call(token(rsa_key, headers={"kid": f"random-{i}"}))
        assert reply.code == 401
    assert len(issuer.hits) == 1  # the start fetch was less than jwks_min_interval ago
    for round_ in range(1, 4):
        gw.clock.advance(31)
        for i in range(50):
            assert gw.call(token(rsa_key, headers={"kid": f"again-{round_}-{i}"})).code == 401
        assert len(issuer.hits) == 1 + round_  # one refetch per interval, whatever the flood
    gw.key_set.stop()


def test_concurrent_unknown_kids_share_one_fetch(issuer, rsa_key, rsa_key_2):
    issuer.keys = []
    gw = JwksGateway(issuer)
    issuer.keys = [jwk_of(rsa_key_2, "k2", "RS256")]
    pending = [gw.start(headers=bearer(token(rsa_key_2, headers={"kid": "k2"}))) for _ in range(10)]
    gw.pump()
    replies = [gw.finish(d) for d in pending]
    assert [r.code for r in replies] == [200] * 10
    assert len(issuer.hits) == 1


def test_the_last_good_set_is_kept_when_the_issuer_fails(issuer, rsa_key):
    gw = JwksGateway(issuer)
    gw.key_set.start()
    gw.pump()
    good = token(rsa_key, headers={"kid": "k1"})
    for failure in ("status", "junk", "empty", "hang"):
        issuer.status, issuer.body, issuer.hang = 200, None, False
        if failure == "status":
            issuer.status = 503
        elif failure == "junk":
            issuer.body = b"<html>oops</html>"
        elif failure == "empty":
            issuer.body = b'{"keys": []}'
        else:
            issuer.hang = True
        with capturedLogs() as events:
            gw.clock.advance(300)
            gw.pump()
            gw.clock.advance(2)  # the fetch timeout, for the hanging issuer
            gw.pump()
        assert any("keeping the last good key set" in str(e.get("log_format")) for e in events), failure
        assert gw.call(good).code == 200, failure
    gw.key_set.stop()


def test_no_key_set_yet_and_issuer_down_is_503(issuer, rsa_key):
    issuer.status = 500
    gw = JwksGateway(issuer)
    first = gw.call(token(rsa_key, headers={"kid": "k1"}))
    assert first.code == 503 and first.json()["error"] == "auth_unavailable"
    assert first.header("Retry-After") == ["5"]
    second = gw.call(token(rsa_key, headers={"kid": "k1"}))  # within the minimum interval: no new fetch
    assert second.code == 503 and len(issuer.hits) == 1


def test_keys_from_the_set_are_bound_to_their_algorithms(issuer, rsa_key, ec_key):
    """A JWK's kty and alg decide the algorithm: an EC key cannot verify RS256, an RS256 JWK not PS256."""
    issuer.keys = [jwk_of(rsa_key, "rsa", "RS256"), jwk_of(ec_key, "ec")]
    gw = JwksGateway(issuer)
    assert gw.call(token(ec_key, "ES256", headers={"kid": "ec"})).code == 200
    assert gw.call(token(rsa_key, headers={"kid": "ec"})).code == 401


def test_symmetric_and_encryption_keys_in_the_set_are_ignored(rsa_key):
    issuer = Issuer()
    issuer.keys = [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
        {**jwk_of(rsa_key, "enc"), "use": "enc"},
        jwk_of(rsa_key, "k1", "RS256"),
    ]
    gw = JwksGateway(issuer)
    gw.key_set.start()
    gw.pump()
    assert sorted(gw.key_set.by_kid) == ["k1"]
    gw.key_set.stop()


def test_jku_never_makes_the_gateway_fetch_elsewhere(issuer, rsa_key, rsa_key_2):
    gw = JwksGateway(issuer)
    gw.key_set.start()
    gw.pump()
    forged = token(rsa_key_2, headers={"kid": "k1", "jku": "https://evil.example/jwks.json"})
    assert gw.call(forged).code == 401
    assert all(hit == b"/.well-known/jwks.json" for hit in issuer.hits)
    gw.key_set.stop()


def test_a_repeated_token_is_not_verified_again_but_still_expires(issuer, rsa_key, monkeypatch):
    """Verified tokens are cached (no second signature check), yet exp is checked on every use."""
    from twistgate.policies.auth.jwt_auth import JwtAuthenticator

    parsed = []
    original = JwtAuthenticator._parse
    monkeypatch.setattr(JwtAuthenticator, "_parse", lambda self, raw: parsed.append(raw) or original(self, raw))
    gw = JwksGateway(issuer)
    tok = short_lived(rsa_key, headers={"kid": "k1"}, exp=NOW + 60)
    assert gw.call(tok).code == 200
    assert gw.call(tok).code == 200
    assert len(parsed) == 1  # the second use came from the cache
    gw.clock.advance(61)
    assert gw.call(tok).code == 401  # expired, cache or not
