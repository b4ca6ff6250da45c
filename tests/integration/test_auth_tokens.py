"""
JWT with a JWKS served over a real socket (rotation, issuer down), and Basic
with bcrypt checked in the gateway's thread pool, end to end.
"""

from __future__ import annotations

import base64
import json

import bcrypt
import jwt
import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource

from tests.auth.helpers import jwk_of
from tests.integration.conftest import RecordingUpstream, http_request


@pytest.fixture(scope="module")
def keys():
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


class Issuer(Resource):
    isLeaf = True

    def __init__(self, jwks):
        super().__init__()
        self.jwks = jwks
        self.hits = 0

    def render(self, request):
        self.hits += 1
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"keys": self.jwks}).encode()


GATEWAY = """
listeners: [{name: public, endpoint: "tcp:0"}]
auth:
  tokens:
    type: jwt
    algorithms: [RS256]
    jwks_url: "http://127.0.0.1:{jwks}/.well-known/jwks.json"
    jwks_min_interval: 1ms
    issuer: https://idp.example/
    audience: api
    forward_claims: {sub: X-User-Id}
  staff: {type: basic, htpasswd: "HTPASSWD", realm: Staff}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: api, path: "/api/*", upstream: app, auth: [tokens]}
  - {name: staff, path: "/staff/*", upstream: app, auth: [staff]}
"""


def signed(key, kid, **extra):
    from twisted.internet import reactor

    now = reactor.seconds()  # the gateway's clock here
    claims = {"sub": "alice", "iss": "https://idp.example/", "aud": "api", "exp": now + 600, "iat": now, **extra}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def bearer(port, tok, path="/api/x"):
    return http_request(port, "GET", path, [("Authorization", f"Bearer {tok}")])


@pytest.fixture
def setup(servers, keys, tmp_path):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_bytes(b"carol:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)) + b"\n")
    issuer = Issuer([jwk_of(keys[0], "k1", "RS256")])
    jwks_port = servers.upstream(issuer)
    upstream = RecordingUpstream()
    yaml = GATEWAY.replace("HTPASSWD", str(htpasswd))
    port, generation = servers.gateway(yaml, jwks=jwks_port, up=servers.upstream(upstream))
    generation.start()
    return port, generation, issuer, upstream, servers.ports[0], servers


@pytest_twisted.inlineCallbacks
def test_tokens_verified_against_the_jwks_and_rotation(setup, keys):
    port, generation, issuer, upstream, jwks_listener, setup_servers = setup
    key_set = generation.services.auth.key_sets[0]
    reply = yield deferToThread(bearer, port, signed(keys[0], "k1"))
    assert reply.status == 200
    assert upstream.requests[-1].header("x-user-id") == b"alice"
    assert upstream.requests[-1].header("authorization") is None

    # rotation: a new key appears, the old one goes; no restart
    issuer.jwks = [jwk_of(keys[1], "k2", "RS256")]
    reply = yield deferToThread(bearer, port, signed(keys[1], "k2"))
    assert reply.status == 200  # unknown kid: refetched
    reply = yield deferToThread(bearer, port, signed(keys[0], "k1"))
    assert reply.status == 401  # k1 is gone from the refreshed set

    # the issuer goes down: the last good set keeps working
    yield jwks_listener.stopListening()
    setup_servers.ports.remove(jwks_listener)
    yield key_set.fetch()
    reply = yield deferToThread(bearer, port, signed(keys[1], "k2"))
    assert reply.status == 200
    reply = yield deferToThread(bearer, port, signed(keys[1], "k2", aud="other"))
    assert reply.status == 401
    assert 'error="invalid_token"' in reply.header("WWW-Authenticate")


@pytest_twisted.inlineCallbacks
def test_an_attackers_key_and_jku_are_refused(setup, keys, reactor):
    port = setup[0]
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {"sub": "admin", "iss": "https://idp.example/", "aud": "api", "exp": reactor.seconds() + 600},
        attacker,
        algorithm="RS256",
        headers={"kid": "k1", "jku": "http://127.0.0.1:1/evil.json", "jwk": jwk_of(attacker, "k1")},
    )
    reply = yield deferToThread(bearer, port, forged)
    assert reply.status == 401


@pytest_twisted.inlineCallbacks
def test_basic_with_bcrypt_in_the_thread_pool(setup):
    port, upstream = setup[0], setup[3]

    def basic(password):
        credentials = base64.b64encode(b"carol:" + password).decode()
        return http_request(port, "GET", "/staff/x", [("Authorization", f"Basic {credentials}")])

    good = yield deferToThread(basic, b"s3cret")
    assert good.status == 200
    assert upstream.requests[-1].header("authorization") is None
    bad = yield deferToThread(basic, b"wrong")
    assert bad.status == 401
    assert bad.header("WWW-Authenticate") == 'Basic realm="Staff", charset="UTF-8"'
    again = yield deferToThread(basic, b"s3cret")  # from the success cache
    assert again.status == 200
