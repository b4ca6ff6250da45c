"""HTTP Basic against an htpasswd file of bcrypt entries."""

from __future__ import annotations

import base64

import bcrypt
import pytest
from twisted.internet.defer import Deferred, maybeDeferred

from tests.auth.helpers import AuthGateway
from twistgate.policies.auth.basic import HtpasswdError, parse_htpasswd


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class SpyRunner:
    """Runs checks inline and counts them; with `hold`, keeps them waiting."""

    threaded = False

    def __init__(self):
        self.calls = 0
        self.hold = False
        self.waiting = []

    def start(self):
        pass

    def stop(self):
        pass

    def run(self, f, *args):
        self.calls += 1
        if self.hold:
            d = Deferred()
            self.waiting.append(d)
            return d
        return maybeDeferred(f, *args)


@pytest.fixture
def gateway(tmp_path):
    htpasswd = tmp_path / "htpasswd"
    alice = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4))
    bob = bcrypt.hashpw("pässwörd".encode(), bcrypt.gensalt(4)).replace(b"$2b$", b"$2y$")  # as `htpasswd -B` writes
    htpasswd.write_bytes(b"# staff\nalice:" + alice + b"\n\nbob:" + bob + b"\n")
    gw = AuthGateway(
        f"""
        auth:
          staff: {{type: basic, htpasswd: {htpasswd}, realm: "Staff area", cache_ttl: 60s, forward_consumer: X-User}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [staff]}}
        """
    )
    gw.runner = gw.auth.authenticators["staff"].runner = SpyRunner()
    return gw


def test_good_credentials_pass_and_are_not_forwarded(gateway):
    seen = gateway.get(headers=basic("alice", "wonderland")).upstream_headers
    assert seen["x-user"] == ["alice"]
    assert "authorization" not in seen
    assert gateway.records[-1].consumer == "alice"


def test_2y_entries_and_utf8_passwords(gateway):
    assert gateway.get(headers=basic("bob", "pässwörd")).code == 200


@pytest.mark.parametrize("user, password", [("alice", "wrong"), ("mallory", "wonderland"), ("alice", "")])
def test_bad_credentials_are_401_with_the_realm(gateway, user, password):
    reply = gateway.get(headers=basic(user, password))
    assert reply.code == 401
    assert reply.header("WWW-Authenticate") == ['Basic realm="Staff area", charset="UTF-8"']


def test_unknown_users_cost_a_bcrypt_check_too(gateway):
    """So that response time does not tell which user names exist."""
    gateway.get(headers=basic("mallory", "x"))
    assert gateway.runner.calls == 1


@pytest.mark.parametrize("value", ["Basic", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + base64.b64encode(b"\xff:x").decode()])
def test_malformed_credentials_are_401(gateway, value):
    assert gateway.get(headers={"Authorization": value}).code == 401


def test_a_recent_success_is_remembered_not_the_password(gateway):
    for _ in range(3):
        assert gateway.get(headers=basic("alice", "wonderland")).code == 200
    assert gateway.runner.calls == 1
    remembered = gateway.auth.authenticators["staff"]._recent
    assert b"wonderland" not in b"".join(remembered)
    assert gateway.get(headers=basic("alice", "wrong")).code == 401  # a wrong password is not a hit
    gateway.clock.advance(61)
    assert gateway.get(headers=basic("alice", "wonderland")).code == 200
    assert gateway.runner.calls == 3


def test_too_many_pending_checks_is_503(gateway):
    from twistgate.policies.auth.basic import MAX_PENDING

    gateway.runner.hold = True
    pending = [gateway.start(headers=basic("alice", f"guess-{i}")) for i in range(MAX_PENDING)]
    reply = gateway.get(headers=basic("alice", "one-more"))
    assert reply.code == 503
    for d in gateway.runner.waiting:
        d.callback(False)
    assert {gateway.finish(d).code for d in pending} == {401}


def test_htpasswd_parsing():
    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode()
    assert parse_htpasswd(f"a:{hashed}\n# c\n\nb:{hashed}".encode()) == {"a": hashed.encode(), "b": hashed.encode()}
    for bad in (b"nocolon", b"a:{SHA}abc", b"a:plaintext", f"a:{hashed}\na:{hashed}".encode(), b"a:$1$salt$hash"):
        with pytest.raises(HtpasswdError):
            parse_htpasswd(bad)
