"""
The jwt authenticator against the known attacks and the claim rules, with
keys from a secret and from a PEM file (JWKS has its own module).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest

from tests.auth.helpers import HS_SECRET, NOW, AuthGateway, bearer, pem_public, token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


def hs256(header: dict, payload: dict, secret: bytes) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def rs_gateway(tmp_path, rsa_key):
    key_file = tmp_path / "issuer.pem"
    key_file.write_bytes(pem_public(rsa_key))
    return AuthGateway(
        f"""
        auth:
          tokens:
            type: jwt
            algorithms: [RS256, HS256]
            public_key: {key_file}
            secret: "{HS_SECRET}"
            issuer: https://idp.example/
            audience: [my-api, other-api]
            forward_claims: {{sub: X-User-Id, email: X-User-Email}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [tokens]}}
          - {{name: admin, path: "/admin/*", upstream: app, auth: {{any: [tokens], scopes: [admin], roles: [ops, root]}}}}
        """
    )


def valid(key, alg="RS256", **extra):
    return token(key, alg, iss="https://idp.example/", aud="my-api", **extra)


def test_a_valid_token_authenticates_and_forwards_claims(rs_gateway, rsa_key):
    reply = rs_gateway.get(headers=bearer(valid(rsa_key, email="alice@example.com")))
    seen = reply.upstream_headers
    assert seen["x-user-id"] == ["alice"]
    assert seen["x-user-email"] == ["alice@example.com"]
    assert "authorization" not in seen  # credentials are not forwarded
    record = rs_gateway.records[-1]
    assert record.consumer == "alice"
    assert record.state["auth"]["authenticator"] == "tokens"
    assert record.state["auth"]["claims"]["iss"] == "https://idp.example/"


def test_the_hs256_secret_also_verifies(rs_gateway):
    reply = rs_gateway.get(headers=bearer(valid(HS_SECRET, "HS256")))
    assert reply.upstream_headers["x-user-id"] == ["alice"]


def expect_invalid(reply):
    assert reply.code == 401, reply.body
    assert reply.json()["error"] == "unauthorized"
    challenge = reply.header("WWW-Authenticate")
    assert challenge and challenge[0].startswith('Bearer realm="twistgate"')
    return challenge[0]


def test_no_token_is_401_with_a_plain_challenge(rs_gateway):
    reply = rs_gateway.get()
    assert expect_invalid(reply) == 'Bearer realm="twistgate"'  # RFC 6750 §3: no error code without a token
    assert reply.json()["message"] == "Authentication is required."


def test_alg_none_is_rejected(rs_gateway):
    unsigned = forge({"alg": "none", "typ": "JWT"}, {"sub": "admin", "exp": NOW + 300, "iss": "https://idp.example/", "aud": "my-api"})
    assert 'error="invalid_token"' in expect_invalid(rs_gateway.get(headers=bearer(unsigned)))
    for alg in ("None", "NONE", "nOnE"):
        forged = forge({"alg": alg}, {"sub": "admin", "exp": NOW + 300})
        expect_invalid(rs_gateway.get(headers=bearer(forged)))


def test_hs256_signed_with_the_rsa_public_key_is_rejected(rs_gateway, rsa_key):
    """The classic key confusion: the attacker signs with HMAC, using the public PEM as the secret."""
    payload = {"sub": "admin", "exp": NOW + 300, "iss": "https://idp.example/", "aud": "my-api"}
    confused = hs256({"alg": "HS256", "typ": "JWT"}, payload, pem_public(rsa_key))
    expect_invalid(rs_gateway.get(headers=bearer(confused)))


def test_rs256_header_on_an_hmac_signature_is_rejected(rs_gateway):
    payload = {"sub": "admin", "exp": NOW + 300, "iss": "https://idp.example/", "aud": "my-api"}
    signing_input = f"{b64(json.dumps({'alg': 'RS256'}).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(HS_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    expect_invalid(rs_gateway.get(headers=bearer(f"{signing_input}.{b64(signature)}")))


def test_an_algorithm_off_the_allowlist_is_rejected_even_with_a_good_signature(rs_gateway, rsa_key):
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, "PS256"))))


@pytest.mark.parametrize(
    "kid",
    ["../../../../etc/passwd", "/dev/null", "' OR '1'='1", "x'; DROP TABLE keys; --", "a" * 300, "\u0000"],
)
def test_kid_injection_is_only_an_unknown_kid(rs_gateway, rsa_key, kid):
    """kid is a dictionary key, never a path or a query: a forged kid finds nothing."""
    payload = {"sub": "admin", "exp": NOW + 300, "iss": "https://idp.example/", "aud": "my-api"}
    forged = hs256({"alg": "HS256", "kid": kid}, payload, b"")  # empty key, as /dev/null would give
    expect_invalid(rs_gateway.get(headers=bearer(forged)))
    # and a properly signed token is not broken by an odd kid either (static keys ignore it)
    ok = rs_gateway.get(headers=bearer(valid(rsa_key, headers={"kid": kid[:200]})))
    assert ok.code == 200


def test_expired_and_not_yet_valid_tokens_are_rejected(rs_gateway, rsa_key):
    challenge = expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, exp=NOW - 1))))
    assert 'error_description="The access token expired"' in challenge
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, exp=NOW))))  # exp is exclusive
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, nbf=NOW + 60))))
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, iat=NOW + 60))))
    assert rs_gateway.get(headers=bearer(valid(rsa_key, nbf=NOW))).code == 200


def test_time_comes_from_the_gateway_clock(rs_gateway, rsa_key):
    good = valid(rsa_key, exp=NOW + 60)
    assert rs_gateway.get(headers=bearer(good)).code == 200
    rs_gateway.clock.advance(61)
    expect_invalid(rs_gateway.get(headers=bearer(good)))


def test_missing_or_malformed_exp_is_rejected(rs_gateway, rsa_key):
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, exp=None))))
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, exp="tomorrow"))))
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, exp=True))))


def test_wrong_issuer_or_audience_is_rejected(rs_gateway, rsa_key):
    expect_invalid(rs_gateway.get(headers=bearer(token(rsa_key, iss="https://evil.example/", aud="my-api"))))
    expect_invalid(rs_gateway.get(headers=bearer(token(rsa_key, aud="my-api"))))  # no iss
    expect_invalid(rs_gateway.get(headers=bearer(token(rsa_key, iss="https://idp.example/", aud="their-api"))))
    expect_invalid(rs_gateway.get(headers=bearer(token(rsa_key, iss="https://idp.example/"))))  # no aud
    listed = token(rsa_key, iss="https://idp.example/", aud=["their-api", "other-api"])
    assert rs_gateway.get(headers=bearer(listed)).code == 200


def test_a_tampered_payload_is_rejected(rs_gateway, rsa_key):
    header, payload, signature = valid(rsa_key).split(".")
    claims_ = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims_["sub"] = "admin"
    tampered = f"{header}.{b64(json.dumps(claims_).encode())}.{signature}"
    expect_invalid(rs_gateway.get(headers=bearer(tampered)))
    # and a flipped signature bit
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[-1] ^= 1
    expect_invalid(rs_gateway.get(headers=bearer(f"{header}.{payload}.{b64(bytes(raw))}")))


def test_jku_x5u_and_embedded_keys_are_never_trusted(rs_gateway, rsa_key_2):
    """A token signed by the attacker's key, pointing at it every way JOSE allows, is rejected without a fetch."""
    from tests.auth.helpers import jwk_of

    for extra in (
        {"jku": "https://evil.example/jwks.json", "kid": "evil"},
        {"x5u": "https://evil.example/cert.pem"},
        {"jwk": jwk_of(rsa_key_2, "evil")},
    ):
        forged = token(rsa_key_2, iss="https://idp.example/", aud="my-api", headers=extra)
        expect_invalid(rs_gateway.get(headers=bearer(forged)))


def test_crit_headers_and_duplicate_claims_are_rejected(rs_gateway, rsa_key):
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, headers={"crit": ["exp"], "exp": 1}))))
    header = b64(json.dumps({"alg": "HS256"}).encode())
    body = '{"sub":"alice","sub":"admin","exp":%d,"iss":"https://idp.example/","aud":"my-api"}' % (NOW + 300)
    signing_input = f"{header}.{b64(body.encode())}"
    signature = hmac.new(HS_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    expect_invalid(rs_gateway.get(headers=bearer(f"{signing_input}.{b64(signature)}")))


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b", "a.b.c.d", "!!!.???.###", "e30.e30.", "W10.e30.c2ln", "x" * 9000],
)
def test_malformed_tokens_are_401_not_500(rs_gateway, garbage):
    expect_invalid(rs_gateway.get(headers=bearer(garbage)))


def test_scopes_and_roles_decide_403(rs_gateway, rsa_key):
    ok = valid(rsa_key, scope="read admin", roles=["ops"])
    assert rs_gateway.get("/admin/x", headers=bearer(ok)).code == 200
    no_scope = rs_gateway.get("/admin/x", headers=bearer(valid(rsa_key, scope="read", roles=["ops"])))
    assert no_scope.code == 403
    assert no_scope.json()["error"] == "forbidden"
    assert no_scope.header("WWW-Authenticate") == ['Bearer realm="twistgate", error="insufficient_scope", scope="admin"']
    no_role = rs_gateway.get("/admin/x", headers=bearer(valid(rsa_key, scope="admin", roles=["dev"])))
    assert no_role.code == 403 and no_role.header("WWW-Authenticate") == []
    assert rs_gateway.records[-1].state["auth"]["error"] == "forbidden"
    # an invalid token on the same route is still 401, not 403
    assert rs_gateway.get("/admin/x", headers=bearer(valid(rsa_key, exp=NOW - 5))).code == 401


def test_scp_list_claim_counts_as_scopes(rs_gateway, rsa_key):
    ok = valid(rsa_key, scp=["admin"], roles="root")
    assert rs_gateway.get("/admin/x", headers=bearer(ok)).code == 200


def test_other_schemes_in_authorization_are_not_bearer(rs_gateway):
    reply = rs_gateway.get(headers={"Authorization": "Basic YTpi"})
    assert reply.code == 401 and reply.json()["message"] == "Authentication is required."


def test_a_token_without_sub_is_rejected(rs_gateway, rsa_key):
    expect_invalid(rs_gateway.get(headers=bearer(valid(rsa_key, sub=None))))


def test_a_claim_that_would_inject_a_header_is_not_forwarded(rs_gateway, rsa_key):
    reply = rs_gateway.get(headers=bearer(valid(rsa_key, email="a@example.com\r\nX-Admin: yes")))
    seen = reply.upstream_headers
    assert "x-user-email" not in seen and "x-admin" not in seen


def test_audience_in_token_without_configured_audience_is_rejected(tmp_path):
    gateway = AuthGateway(
        f"""
        auth:
          tokens: {{type: jwt, algorithms: [HS256], secret: "{HS_SECRET}", required_claims: [tenant]}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [tokens]}}
        """
    )
    assert gateway.get(headers=bearer(token(HS_SECRET, "HS256", tenant="t1"))).code == 200
    expect_invalid(gateway.get(headers=bearer(token(HS_SECRET, "HS256", tenant="t1", aud="someone"))))  # RFC 7519 §4.1.3
    expect_invalid(gateway.get(headers=bearer(token(HS_SECRET, "HS256"))))  # required claim missing


def test_leeway_tolerates_small_clock_skew():
    gateway = AuthGateway(
        f"""
        auth:
          tokens: {{type: jwt, algorithms: [HS256], secret: "{HS_SECRET}", leeway: 30s}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [tokens]}}
        """
    )
    assert gateway.get(headers=bearer(token(HS_SECRET, "HS256", exp=NOW - 20))).code == 200
    assert gateway.get(headers=bearer(token(HS_SECRET, "HS256", nbf=NOW + 20))).code == 200
    assert gateway.get(headers=bearer(token(HS_SECRET, "HS256", exp=NOW - 31))).code == 401


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_ec_and_eddsa_public_keys(tmp_path, ec_key, ed_key, alg):
    private = ec_key if alg == "ES256" else ed_key
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(pem_public(private))
    gateway = AuthGateway(
        f"""
        auth:
          tokens: {{type: jwt, algorithms: [ES256, EdDSA, RS256], public_key: {key_file}}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [tokens]}}
        """
    )
    assert gateway.get(headers=bearer(token(private, alg))).code == 200
    other = "EdDSA" if alg == "ES256" else "ES256"
    header, payload, signature = token(private, alg).split(".")
    relabelled = f"{b64(json.dumps({'alg': other}).encode())}.{payload}.{signature}"
    assert gateway.get(headers=bearer(relabelled)).code == 401


def test_pyjwt_round_trip_sanity(rsa_key):
    """The test tokens are what pyjwt itself accepts (so rejections above are ours, not malformed fixtures)."""
    decoded = jwt.decode(
        valid(rsa_key), rsa_key.public_key(), algorithms=["RS256"], audience="my-api", options={"verify_exp": False}
    )
    assert decoded["sub"] == "alice"


def signed_raw(body: str) -> str:
    """An HS256 token over a payload written by hand (numbers JSON libraries would not emit)."""
    signing_input = f"{b64(json.dumps({'alg': 'HS256'}).encode())}.{b64(body.encode())}"
    signature = hmac.new(HS_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize("exp", ["NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 400, "null", '"2099-01-01"'])
def test_numeric_dates_that_would_never_expire_are_rejected(rs_gateway, exp):
    body = '{"sub":"alice","iss":"https://idp.example/","aud":"my-api","exp":%s}' % exp
    expect_invalid(rs_gateway.get(headers=bearer(signed_raw(body))))
    assert rs_gateway.records[-1].state["auth"]["error"] == "invalid_credentials"  # refused, not a crash


def test_odd_claim_shapes_are_401_not_500(rs_gateway):
    odd = '{"sub":"alice","iss":["https://idp.example/"],"aud":[{"x":1}],"exp":%d}' % (NOW + 60)
    expect_invalid(rs_gateway.get(headers=bearer(signed_raw(odd))))
    nested = '{"sub":{"id":1},"iss":"https://idp.example/","aud":"my-api","exp":%d}' % (NOW + 60)
    expect_invalid(rs_gateway.get(headers=bearer(signed_raw(nested))))
    good = '{"sub":42,"iss":"https://idp.example/","aud":"my-api","exp":%d,"email":{"a":[1,2]}}' % (NOW + 60)
    reply = rs_gateway.get(headers=bearer(signed_raw(good)))
    assert reply.upstream_headers["x-user-id"] == ["42"]
    assert reply.upstream_headers["x-user-email"] == ['{"a":[1,2]}']


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def signed_header(header_json: str, body: str) -> str:
    signing_input = f"{b64(header_json.encode())}.{b64(body.encode())}"
    signature = hmac.new(HS_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize("depth", [40, 1000, 2900])
def test_deeply_nested_json_is_401_quickly_not_a_crash(rs_gateway, depth):
    """Within the size cap, nesting is refused before json.loads can recurse (a RecursionError was a 503)."""
    import time

    claims = '"sub":"alice","iss":"https://idp.example/","aud":"my-api","exp":%d' % (NOW + 60)
    for raw in (
        signed_header('{"alg":"HS256","x":%s}' % nested(depth), "{%s}" % claims),
        signed_raw('{%s,"x":%s}' % (claims, nested(depth))),
        forge({"alg": "HS256"}, {}).split(".")[0] + "." + b64(nested(depth).encode()) + ".c2ln",
    ):
        assert len(raw) <= 8192
        started = time.perf_counter()
        expect_invalid(rs_gateway.get(headers=bearer(raw)))
        assert time.perf_counter() - started < 0.5
        assert rs_gateway.records[-1].state["auth"]["error"] == "invalid_credentials"


def test_reasonable_nesting_is_still_accepted(rs_gateway):
    claims = '"sub":"alice","iss":"https://idp.example/","aud":"my-api","exp":%d' % (NOW + 60)
    reply = rs_gateway.get(headers=bearer(signed_raw('{%s,"realm_access":{"roles":[["a"]]}}' % claims)))
    assert reply.code == 200


def test_the_token_size_cap_is_configurable(tmp_path):
    """max_token_size: larger tokens are refused before any decoding; the default is 8 KiB."""
    gateway = AuthGateway(
        f"""
        auth:
          tokens: {{type: jwt, algorithms: [HS256], secret: "{HS_SECRET}", max_token_size: 1KiB}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [tokens]}}
        """
    )
    small = token(HS_SECRET, "HS256")
    assert gateway.get(headers=bearer(small)).code == 200
    big = token(HS_SECRET, "HS256", padding="x" * 1200)
    reply = gateway.get(headers=bearer(big))
    assert reply.code == 401 and gateway.records[-1].state["auth"]["rejected"]["tokens"] == "empty or oversized token"


def test_the_token_size_cap_is_validated():
    from tests.config_helpers import config_loader

    _, issues = config_loader('listeners: [{name: p, endpoint: "tcp:0"}]\n')
    found = issues(
        f"""
        auth:
          tokens: {{type: jwt, algorithms: [HS256], secret: "{HS_SECRET}", max_token_size: 10}}
        """
    )
    assert [(path, "at least" in message) for _, path, message in found] == [("auth.tokens.max_token_size", True)]


def test_a_remembered_token_still_expires_on_time():
    """The verified-token cache skips the signature, never the clock: exp (with leeway) is checked on every request."""
    gateway = AuthGateway(
        f"""
        auth:
          tokens: {{type: jwt, algorithms: [HS256], secret: "{HS_SECRET}", leeway: 5s}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [tokens]}}
        """
    )
    remembered = token(HS_SECRET, "HS256", exp=NOW + 10)
    assert gateway.get(headers=bearer(remembered)).code == 200
    gateway.clock.advance(14.5)
    assert gateway.get(headers=bearer(remembered)).code == 200  # within the leeway, from the cache
    gateway.clock.advance(0.5)
    challenge = expect_invalid(gateway.get(headers=bearer(remembered)))
    assert 'error="invalid_token"' in challenge and "expired" in challenge
