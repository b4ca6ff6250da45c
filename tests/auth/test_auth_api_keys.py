"""
The api_key authenticator: keys from a header or a query parameter, checked
against a real SQLite store (run inline on the test's Clock), with a cache in
front of it.
"""

from __future__ import annotations

import sqlite3

import pytest
from twisted.internet.defer import Deferred

from tests.auth.helpers import AuthGateway
from twistgate.policies.auth.keys import hash_key, new_key, parse_key
from twistgate.testing import result_of


@pytest.fixture
def db(tmp_path):
    return tmp_path / "var" / "keys.db"


def keys_gateway(db, extra=""):
    return AuthGateway(
        f"""
        auth:
          keys:
            type: api_key
            store: "sqlite:{db}"
            query: api_key
            cache_ttl: 10s
            forward_consumer: X-Consumer
            {extra}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [keys]}}
          - {{name: keep, path: "/keep/*", upstream: app, auth: {{any: [keys], keep_credentials: true}}}}
        """
    )


def create(gateway, consumer="acme", expires_in=None, name="keys"):
    record, key = new_key(name, consumer, gateway.clock.seconds(), expires_in)
    result_of(gateway.auth.authenticators[name].store.create(record))
    return record, key


class CountingStore:
    """Wraps a store and counts lookups; `hold` makes them wait for the test."""

    def __init__(self, store):
        self.store = store
        self.gets = 0
        self.hold = False
        self.waiting = []
        self.fail = False

    def get(self, authenticator, key_id):
        self.gets += 1
        if self.fail:
            d = Deferred()
            d.errback(RuntimeError("connection refused"))
            return d
        if self.hold:
            d = Deferred()
            self.waiting.append((d, authenticator, key_id))
            return d
        return self.store.get(authenticator, key_id)

    def __getattr__(self, name):
        return getattr(self.store, name)

    def release(self):
        for d, authenticator, key_id in self.waiting:
            d.callback(result_of(self.store.get(authenticator, key_id)))
        self.waiting = []


def test_create_use_revoke(db):
    gateway = keys_gateway(db)
    record, key = create(gateway)
    reply = gateway.get(headers={"X-API-Key": key})
    assert reply.upstream_headers["x-consumer"] == ["acme"]
    assert "x-api-key" not in reply.upstream_headers
    assert gateway.records[-1].consumer == "acme"
    assert gateway.records[-1].state["auth"] == {
        "authenticator": "keys", "type": "api_key", "consumer": "acme", "key_id": record.id,
    }
    authenticator = gateway.auth.authenticators["keys"]
    assert result_of(authenticator.store.revoke("keys", record.id, gateway.clock.seconds()))
    authenticator.forget(record.id)
    refused = gateway.get(headers={"X-API-Key": key})
    assert refused.code == 401
    assert refused.header("WWW-Authenticate") == ['ApiKey realm="twistgate", header="X-API-Key", query="api_key"']
    assert refused.json()["message"] == "The credentials are not valid."


def test_a_key_expires_on_the_gateway_clock(db):
    gateway = keys_gateway(db)
    _, key = create(gateway, expires_in=3600)
    assert gateway.get(headers={"X-API-Key": key}).code == 200
    gateway.clock.advance(3599)
    assert gateway.get(headers={"X-API-Key": key}).code == 200
    gateway.clock.advance(1)
    assert gateway.get(headers={"X-API-Key": key}).code == 401


def test_only_the_hash_is_stored(db):
    gateway = keys_gateway(db)
    record, key = create(gateway)
    rows = sqlite3.connect(str(db)).execute("SELECT * FROM twistgate_api_keys").fetchall()
    assert len(rows) == 1
    flat = " ".join(str(v) for v in rows[0])
    assert key not in flat and key.split("_", 2)[2] not in flat
    assert hash_key(key) in flat
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_a_wrong_secret_with_a_real_id_is_refused(db):
    gateway = keys_gateway(db)
    record, key = create(gateway)
    forged = f"tg_{record.id}_{'A' * 43}"
    assert parse_key(forged) == record.id
    assert gateway.get(headers={"X-API-Key": forged}).code == 401
    assert gateway.get(headers={"X-API-Key": key}).code == 200  # cached record, still compared


def test_query_parameter_is_accepted_and_removed(db):
    gateway = keys_gateway(db)
    _, key = create(gateway)
    reply = gateway.get(f"/api/x?a=1&api_key={key}&b=2")
    assert reply.json()["uri"] == "/api/x?a=1&b=2"


def test_keep_credentials_forwards_the_key(db):
    gateway = keys_gateway(db)
    _, key = create(gateway)
    reply = gateway.get("/keep/x", headers={"X-API-Key": key})
    assert reply.upstream_headers["x-api-key"] == [key]


def test_lookups_are_cached_positive_and_negative(db):
    gateway = keys_gateway(db)
    authenticator = gateway.auth.authenticators["keys"]
    counting = authenticator.store = CountingStore(authenticator.store)
    _, key = create(gateway)
    unknown = "tg_0123456789abcdef_" + "B" * 43
    for _ in range(5):
        assert gateway.get(headers={"X-API-Key": key}).code == 200
        assert gateway.get(headers={"X-API-Key": unknown}).code == 401
    assert counting.gets == 2
    gateway.clock.advance(10)
    gateway.get(headers={"X-API-Key": key})
    gateway.get(headers={"X-API-Key": unknown})
    assert counting.gets == 4


def test_malformed_keys_never_reach_the_store(db):
    gateway = keys_gateway(db)
    authenticator = gateway.auth.authenticators["keys"]
    counting = authenticator.store = CountingStore(authenticator.store)
    for junk in ["nope", "tg_", "tg_xyz_abc", "tg_0123456789abcdeg_" + "A" * 43, "' OR 1=1 --", "tg_" + "a" * 200]:
        assert gateway.get(headers={"X-API-Key": junk}).code == 401
    assert counting.gets == 0


def test_concurrent_misses_share_one_lookup(db):
    gateway = keys_gateway(db)
    authenticator = gateway.auth.authenticators["keys"]
    _, key = create(gateway)
    counting = authenticator.store = CountingStore(authenticator.store)
    counting.hold = True
    pending = [gateway.start(headers={"X-API-Key": key}) for _ in range(5)]
    assert counting.gets == 1
    counting.release()
    assert [gateway.finish(d).code for d in pending] == [200] * 5


def test_a_store_failure_is_503_not_401(db):
    gateway = keys_gateway(db)
    authenticator = gateway.auth.authenticators["keys"]
    _, key = create(gateway)
    authenticator.store = CountingStore(authenticator.store)
    authenticator.store.fail = True
    reply = gateway.get(headers={"X-API-Key": key})
    assert reply.code == 503
    assert reply.json()["error"] == "auth_unavailable"
    authenticator.store.fail = False
    assert gateway.get(headers={"X-API-Key": key}).code == 200  # failures are not cached


def test_the_cache_is_bounded(db):
    gateway = keys_gateway(db, "cache_size: 3")
    cache = gateway.auth.authenticators["keys"].cache
    for i in range(10):
        gateway.get(headers={"X-API-Key": f"tg_{i:016x}_" + "C" * 43})
    assert len(cache._entries) == 3


def test_keys_of_another_authenticator_in_the_same_store_are_refused(tmp_path):
    db = tmp_path / "shared.db"
    gateway = AuthGateway(
        f"""
        auth:
          partners: {{type: api_key, store: "sqlite:{db}"}}
          internal: {{type: api_key, store: "sqlite:{db}", header: X-Internal-Key}}
        routes:
          - {{name: api, path: "/api/*", upstream: app, auth: [internal]}}
        """
    )
    assert gateway.auth.authenticators["partners"].store is gateway.auth.authenticators["internal"].store
    _, partner_key = create(gateway, name="partners")
    assert gateway.get(headers={"X-Internal-Key": partner_key}).code == 401
    _, internal_key = create(gateway, name="internal")
    assert gateway.get(headers={"X-Internal-Key": internal_key}).code == 200


def test_cached_answers_need_no_deferred(db):
    """A cached key is checked synchronously: the stage returns None, not a Deferred."""
    gateway = keys_gateway(db)
    _, key = create(gateway)
    gateway.get(headers={"X-API-Key": key})  # now cached
    from twistgate.headers import Headers

    from twistgate.policies.auth.policy import AuthStage
    from twistgate.messages import ProxyRequest

    auth_stage = AuthStage(
        gateway.harness.generation.config.routes[0].policies["auth"],
        [gateway.auth.authenticators["keys"]],
        gateway.auth.identity_headers,
        "api",
    )
    request = ProxyRequest(method=b"GET", path="/api/x", headers=Headers({b"X-API-Key": [key.encode()]}))
    assert auth_stage.on_request(request) is None
    assert request.consumer == "acme"


def test_store_timeout_is_503(db):
    from twistgate.policies.auth.key_store import KeyStore

    gateway = keys_gateway(db)

    class SlowRunner:
        threaded = True

        def start(self):
            pass

        def run(self, f, *args):
            return Deferred()

    authenticator = gateway.auth.authenticators["keys"]
    authenticator.store = KeyStore(authenticator.store.database, SlowRunner(), gateway.clock, 5.0)
    d = gateway.start(headers={"X-API-Key": "tg_0123456789abcdef_" + "B" * 43})
    gateway.clock.advance(5)
    assert gateway.finish(d).code == 503
