"""`explain` on tricky overlaps (the routing docs' examples), and the `twistgate explain` command."""

from __future__ import annotations

import json

import pytest
from twisted.internet.testing import MemoryReactorClock

from tests.ops.helpers import yaml
from twistgate.cli import main
from twistgate.config import load_text
from twistgate.generation import Generation
from twistgate.ops.explain import explain

CONFIG = yaml(
    """
    listeners: [{name: p, endpoint: "tcp:0"}]
    upstreams:
      web: {targets: [{url: "http://web:80"}]}
      api: {targets: [{url: "http://api:80"}, {url: "http://api2:80"}]}
      users: {targets: [{url: "http://users:80"}]}
      tenants: {targets: [{url: "http://tenants:80"}]}
      maintenance: {targets: [{url: "http://m:80"}]}
    routes:
      - {name: catchall, path: /*,            upstream: web}
      - {name: api,      path: /api/*,        upstream: api, strip_prefix: /api}
      - {name: me,       path: /api/users/me, upstream: api}
      - {name: user,     path: "/api/users/{id}", methods: [GET], upstream: users, plugins: {ip_allow: {cidrs: [10.0.0.0/8]}}}
      - {name: versions, path: "~^/api/v[0-9]+/", upstream: api}
      - {name: tenant,   path: /api/*, host: "*.example.com", upstream: tenants}
      - {name: outage,   path: /api/users/*, priority: 10, upstream: maintenance}
    """
)


@pytest.fixture(scope="module")
def generation():
    return Generation(load_text(CONFIG), MemoryReactorClock())


def verdicts(answer):
    return {c["name"]: c["verdict"] for c in answer["considered"]}


def test_priority_wins(generation):
    answer = explain(generation, "GET", None, "/api/users/me")
    assert answer["route"]["name"] == "outage"
    v = verdicts(answer)
    assert v["me"] == "outranked by outage: priority 10 beats 0"
    assert v["tenant"].startswith("host (none) does not match")


def test_longer_prefix_beats_catch_all(generation):
    answer = explain(generation, "GET", "x.test", "/api/orders")
    assert answer["route"]["name"] == "api" and answer["route"]["forwarded_path"] == "/orders"
    assert "deeper or more literal prefix /api/*" in verdicts(answer)["catchall"]
    assert verdicts(answer)["me"].startswith("path /api/orders does not match")


def test_regex_beats_prefix(generation):
    answer = explain(generation, "GET", None, "/api/v2/x")
    assert answer["route"]["name"] == "versions"
    assert "a regex path (~^/api/v[0-9]+/) beats a prefix path (/api/*)" in verdicts(answer)["api"]


def test_host_specificity_comes_before_path(generation):
    answer = explain(generation, "GET", "a.example.com", "/api/v2/x")
    assert answer["route"]["name"] == "tenant"
    assert verdicts(answer)["versions"] == "outranked by tenant: wildcard host *.example.com is more specific than no host"


def test_method_and_pipeline_and_candidates(generation):
    answer = explain(generation, "POST", None, "/api/users/7")
    assert verdicts(answer)["user"] == "method POST is not in ['GET']"
    answer = explain(generation, "GET", None, "/api/users/7/")
    assert answer["route"]["name"] == "outage"
    answer = explain(generation, "HEAD", "x.test", "/api/users/%37")
    assert answer["route"]["name"] == "outage"


def test_stages_and_plugins_in_order(generation):
    gen = Generation(load_text(CONFIG.replace("priority: 10", "priority: -10")), MemoryReactorClock())
    answer = explain(gen, "GET", None, "/api/users/7")
    assert answer["route"]["name"] == "user" and answer["route"]["params"] == {"id": "7"}
    pipeline = answer["pipeline"]
    assert pipeline["stages_and_plugins"] == ["tracing", "ip_allow"]
    assert pipeline["stages"] == ["tracing"] and pipeline["plugins"] == ["ip_allow"]
    assert pipeline["hook_order"]["on_request"] == ["tracing", "ip_allow"]
    upstream = answer["upstream"]
    assert upstream["name"] == "users" and upstream["candidates"] == ["http://users"]


def test_no_route_and_bad_path(generation):
    gen = Generation(load_text(CONFIG.replace("  - {name: catchall, path: /*,            upstream: web}\n", "")), MemoryReactorClock())
    answer = explain(gen, "GET", None, "/elsewhere")
    assert (answer["result"], answer["status"]) == ("no_route", 404)
    assert all(not c["path_matches"] for c in answer["considered"])
    answer = explain(gen, "GET", None, "/a/%2e%2e/%00")
    assert answer["status"] == 400


def test_method_not_allowed(generation):
    gen = Generation(load_text(yaml("""
        listeners: [{name: p, endpoint: "tcp:0"}]
        upstreams: {u: {targets: [{url: "http://u:80"}]}}
        routes: [{name: r, path: /x, methods: [GET, PUT], upstream: u}]
        """)), MemoryReactorClock())
    answer = explain(gen, "DELETE", None, "/x")
    assert (answer["result"], answer["status"], answer["allow"]) == ("method_not_allowed", 405, ["GET", "HEAD", "PUT"])


def test_command_explains_offline(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    assert main(["explain", str(path), "--method", "GET", "--host", "a.example.com", "--path", "/api/x"]) == 0
    out = capsys.readouterr().out
    assert "route: tenant" in out and "upstream: tenants" in out and "outranked by tenant" in out
    assert main(["explain", str(path), "--path", "/api/users/me", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["route"]["name"] == "outage"


def test_command_exit_codes(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG.replace("  - {name: catchall, path: /*,            upstream: web}\n", ""))
    assert main(["explain", str(path), "--path", "/nothing"]) == 3
    path.write_text("listeners: []\n")
    assert main(["explain", str(path), "--path", "/"]) == 1
    assert "listeners: must not be empty" in capsys.readouterr().err
