"""
A fleet: three gateway processes sharing a real redis-server (rate limits)
and a real PostgreSQL (API keys), all started here on free ports.  Node A
runs two workers, B and C one process each: what the issue promises holds
whatever the process model of each node.

* a key created through A authorises on B and C;
* a key revoked through B is refused on A and C within the lookup cache TTL;
* a 10/min limit on Redis holds for the fleet (10 or 11 of 30 requests);
* Redis stopped: ``on_backend_error: allow`` keeps serving; limits resume when it is back;
* PostgreSQL stopped: cached keys keep working, new lookups fail closed
  (503), and the nodes recover by themselves when it is back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from tests.auth.postgres import PostgresServer
from tests.integration.procs import Gateway, Upstream, free_port, http_get, wait_until
from tests.integration.test_ratelimit_redis import RedisServer

pytestmark = pytest.mark.integration

TTL = 4.0  # the API key lookup cache, seconds

NODE = """
{workers}
listeners: [{{name: public, endpoint: "tcp:{port}:interface=127.0.0.1"}}]
admin: {{endpoint: "tcp:{admin}:interface=127.0.0.1", token: s3cret}}
rate_limiting: {{backend: "redis://127.0.0.1:{redis}/0", on_backend_error: allow, timeout: 250ms}}
auth:
  keys: {{type: api_key, header: X-API-Key, store: "{store}", cache_ttl: {ttl}s, store_timeout: 2s}}
upstreams:
  app: {{targets: [{{url: "http://127.0.0.1:{up}"}}]}}
routes:
  - {{name: fleet-limit, path: /limited, upstream: app, rate_limit: {{rate: 10/min, key: route}}}}
  - {{name: outage-limit, path: /outage, upstream: app, rate_limit: {{rate: 10/min, key: route}}}}
  - {{name: private, path: "/private/*", upstream: app, auth: [keys]}}
"""


class Fleet:
    def __init__(self, tmp_path: Path, redis: RedisServer, postgres: PostgresServer, upstream: Upstream) -> None:
        self.redis, self.postgres = redis, postgres
        self.nodes: Dict[str, Dict[str, Any]] = {}
        for name, workers in (("a", "workers: 2"), ("b", ""), ("c", "")):
            port, admin = free_port(), free_port()
            text = NODE.format(workers=workers, port=port, admin=admin, redis=redis.port, store=postgres.url,
                               ttl=TTL, up=upstream.port)
            self.nodes[name] = {"port": port, "admin": admin, "gateway": Gateway(tmp_path, text, name=name)}
        for node in self.nodes.values():
            node["gateway"].wait_ready(node["admin"])

    def get(self, name: str, path: str, key: str = "") -> int:
        headers = {"X-API-Key": key} if key else {}
        return http_get(self.nodes[name]["port"], path, headers)[0]

    def create_key(self, name: str, consumer: str) -> Dict[str, Any]:
        status, _, body = http_get(
            self.nodes[name]["admin"], "/admin/keys", {"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
            method="POST", body=json.dumps({"consumer": consumer}).encode(),
        )
        assert status == 201, body
        return json.loads(body)

    def revoke(self, name: str, key_id: str) -> int:
        return http_get(self.nodes[name]["admin"], f"/admin/keys/{key_id}", {"Authorization": "Bearer s3cret"}, method="DELETE")[0]

    def close(self) -> None:
        for node in self.nodes.values():
            node["gateway"].stop(signal.SIGTERM, timeout=20)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: Any) -> Iterator[Fleet]:
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (tests/run.sh installs it)")
        pytest.skip("redis-server is not installed")
    redis = RedisServer(executable)
    redis.start()
    postgres = PostgresServer()
    upstream = Upstream()
    fleet = None
    try:
        fleet = Fleet(tmp_path_factory.mktemp("fleet"), redis, postgres, upstream)
        yield fleet
    finally:
        if fleet is not None:
            fleet.close()
        upstream.close()
        postgres.close()
        redis.stop()


def test_a_key_created_on_one_node_authorises_on_every_node(fleet):
    key = fleet.create_key("a", "acme")["key"]
    assert [fleet.get(n, "/private/x", key) for n in "abc"] == [200, 200, 200]
    assert [fleet.get(n, "/private/x", "tg_nope") for n in "abc"] == [401, 401, 401]


def test_a_key_revoked_on_one_node_is_refused_everywhere_within_the_cache_ttl(fleet):
    created = fleet.create_key("c", "revoked-soon")
    key = created["key"]
    for _ in range(2):  # every node (both workers of A) has it cached as valid
        assert [fleet.get(n, "/private/x", key) for n in "abc"] == [200, 200, 200]
    revoked_at = time.monotonic()
    assert fleet.revoke("b", created["id"]) == 204
    assert fleet.get("b", "/private/x", key) == 401  # at once where it was revoked
    for name in "ac":
        wait_until(lambda: fleet.get(name, "/private/x", key) == 401, timeout=TTL + 2, what=f"revocation seen on {name}")
    assert time.monotonic() - revoked_at <= TTL + 2


def test_a_redis_limit_holds_for_the_fleet(fleet):
    statuses = [fleet.get("abc"[i % 3], "/limited") for i in range(30)]
    assert 10 <= statuses.count(200) <= 11 and statuses.count(200) + statuses.count(429) == 30


def test_redis_down_keeps_serving_and_limits_resume_when_it_is_back(fleet):
    fleet.redis.stop()
    statuses = [fleet.get("abc"[i % 3], "/outage") for i in range(30)]
    assert statuses == [200] * 30  # on_backend_error: allow
    fleet.redis.start()

    def limiting_again() -> bool:
        return all(fleet.get(n, "/outage") == 429 for n in "abc" for _ in range(5))

    wait_until(limiting_again, timeout=20, interval=0.5, what="limits enforced again after Redis came back")


def test_postgres_down_cached_keys_work_new_lookups_fail_closed_and_recovery_is_automatic(fleet):
    cached = fleet.create_key("b", "cached")["key"]
    unseen = fleet.create_key("b", "unseen")["key"]
    assert [fleet.get(n, "/private/x", cached) for n in "abc"] == [200, 200, 200]
    fleet.postgres.stop()
    try:
        assert [fleet.get(n, "/private/x", cached) for n in "bc"] == [200, 200]  # from the cache
        assert [fleet.get(n, "/private/x", unseen) for n in "abc"] == [503, 503, 503]  # fail closed
    finally:
        fleet.postgres.start()
    wait_until(lambda: all(fleet.get(n, "/private/x", unseen) == 200 for n in "abc"), timeout=20, interval=0.5,
               what="new lookups working again")
