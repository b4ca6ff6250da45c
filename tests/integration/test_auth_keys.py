"""
API keys over real sockets, the same tests against the embedded SQLite store
and a real PostgreSQL server (started by the fixture): created through the
admin resource or the CLI, used, revoked, expired, and shared by two gateways.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.auth.postgres import clear_keys, postgres_url  # noqa: F401  (a session fixture)
from tests.integration.conftest import RecordingUpstream, http_request
from twistgate.policies.auth.keys import new_key


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:{tmp_path}/var/keys.db"
    url = request.getfixturevalue("postgres_url")
    clear_keys(url)
    return url


GATEWAY = """
listeners: [{name: public, endpoint: "tcp:0"}]
auth:
  keys: {type: api_key, store: "STORE", cache_ttl: CACHE, forward_consumer: X-Consumer}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: api, path: "/*", upstream: app, auth: [keys]}
"""


def start_gateway(servers, store, up, cache="10s"):
    port, generation = servers.gateway(GATEWAY.replace("STORE", store).replace("CACHE", cache), up=up)
    generation.start()  # the auth service starts synchronously (its store threads)
    root, admin = Resource(), Resource()
    root.putChild(b"admin", admin)
    admin.putChild(b"keys", generation.services.auth.admin_resource())
    site = Site(root)
    site.log = lambda request: None
    return port, servers.listen(site), generation


def create_key(admin_port, consumer, expires_in=None):
    body = {"consumer": consumer}
    if expires_in:
        body["expires_in"] = expires_in
    reply = http_request(admin_port, "POST", "/admin/keys", [("Content-Type", "application/json")], json.dumps(body).encode())
    assert reply.status == 201, reply.body
    return reply.json()


def get(port, key=None):
    return http_request(port, "GET", "/api/x", [("X-API-Key", key)] if key else [])


@pytest_twisted.inlineCallbacks
def test_create_use_revoke(servers, store_url):
    upstream = RecordingUpstream()
    port, admin, _ = start_gateway(servers, store_url, servers.upstream(upstream))
    created = yield deferToThread(create_key, admin, "acme", "30d")
    reply = yield deferToThread(get, port, created["key"])
    assert reply.status == 200
    assert upstream.requests[-1].header("x-consumer") == b"acme"
    assert upstream.requests[-1].header("x-api-key") is None
    listed = yield deferToThread(http_request, admin, "GET", "/admin/keys")
    assert [k["consumer"] for k in listed.json()["keys"]] == ["acme"]
    revoked = yield deferToThread(http_request, admin, "DELETE", f"/admin/keys/{created['id']}")
    assert revoked.status == 204
    reply = yield deferToThread(get, port, created["key"])
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == 'ApiKey realm="twistgate", header="X-API-Key"'
    assert reply.json()["error"] == "unauthorized"
    missing = yield deferToThread(get, port)
    assert missing.status == 401


@pytest_twisted.inlineCallbacks
def test_an_expired_key_is_refused(servers, store_url, reactor):
    port, _, generation = start_gateway(servers, store_url, servers.upstream(RecordingUpstream()))
    authenticator = generation.services.auth.authenticators["keys"]
    expired, expired_key = new_key("keys", "acme", reactor.seconds() - 7200, 3600)
    current, current_key = new_key("keys", "acme", reactor.seconds(), 3600)
    yield authenticator.store.create(expired)
    yield authenticator.store.create(current)
    assert (yield deferToThread(get, port, expired_key)).status == 401
    assert (yield deferToThread(get, port, current_key)).status == 200


@pytest_twisted.inlineCallbacks
def test_two_gateways_share_the_store(servers, store_url):
    """Keys made through one gateway work on another; its revocation reaches the other (no cache here)."""
    up = servers.upstream(RecordingUpstream())
    port_a, admin_a, _ = start_gateway(servers, store_url, up, cache="0s")
    port_b, _, _ = start_gateway(servers, store_url, up, cache="0s")
    created = yield deferToThread(create_key, admin_a, "acme")
    assert (yield deferToThread(get, port_b, created["key"])).status == 200
    yield deferToThread(http_request, admin_a, "DELETE", f"/admin/keys/{created['id']}")
    assert (yield deferToThread(get, port_b, created["key"])).status == 401


@pytest_twisted.inlineCallbacks
def test_many_concurrent_requests_with_one_key(servers, store_url):
    port, admin, _ = start_gateway(servers, store_url, servers.upstream(RecordingUpstream()))
    created = yield deferToThread(create_key, admin, "acme")
    from twisted.internet.defer import gatherResults

    # (at most 8 blocking clients: they run in the reactor's own 10-thread pool,
    # which the gateway also needs, e.g. to resolve the upstream's address)
    replies = yield gatherResults([deferToThread(get, port, created["key"]) for _ in range(8)])
    assert [r.status for r in replies] == [200] * 8


@pytest_twisted.inlineCallbacks
def test_an_unreachable_store_is_503_and_other_routes_still_work(servers, tmp_path):
    with open(tmp_path / "blocker", "w") as f:
        f.write("a file where the store's directory should be")
    store = "postgresql://nobody@127.0.0.1:1/none"
    for url in (f"sqlite:{tmp_path}/blocker/keys.db", store):
        port, _, _ = start_gateway(servers, url, servers.upstream(RecordingUpstream()))
        reply = yield deferToThread(get, port, "tg_0123456789abcdef_" + "A" * 43)
        assert reply.status == 503, url
        assert reply.json()["error"] == "auth_unavailable"


@pytest_twisted.inlineCallbacks
def test_keys_made_by_the_cli_work_in_the_gateway(servers, store_url, tmp_path, capsys):
    from twistgate.cli import main

    config = tmp_path / "gw.yaml"
    config.write_text(GATEWAY.replace("STORE", store_url).replace("CACHE", "10s").replace("{up}", "1"))
    code = yield deferToThread(main, ["keys", "create", "--config", str(config), "--consumer", "cli-user"])
    assert code == 0
    key = capsys.readouterr().out.strip()
    upstream = RecordingUpstream()
    port, _, _ = start_gateway(servers, store_url, servers.upstream(upstream))
    assert (yield deferToThread(get, port, key)).status == 200
    assert upstream.requests[-1].header("x-consumer") == b"cli-user"
