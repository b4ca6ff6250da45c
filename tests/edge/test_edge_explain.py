"""`twistgate explain`, `twistgate routes` and `twistgate check` on the edge-routing keys."""

from __future__ import annotations

import json

import pytest
from twisted.internet.testing import MemoryReactorClock

from tests.ops.helpers import yaml
from twistgate.cli import main
from twistgate.config import load_text
from twistgate.generation import Generation
from twistgate.ops.explain import explain
from twistgate.routing import format_routes

CONFIG = yaml(
    """
    listeners:
      - {name: plain, endpoint: "tcp:0", redirect_https: 8443}
      - {name: public, endpoint: "tcp:1"}
      - {name: internal, endpoint: "tcp:2"}
    upstreams:
      api: {targets: [{url: "http://api:80"}]}
      v2: {targets: [{url: "http://v2:80"}]}
    routes:
      - {name: stable, path: /api/*, upstream: api, strip_prefix: /api, rewrite: {regex: "^/v1/(.*)$", replacement: "/$1"}}
      - name: canary
        path: /api/*
        upstream: v2
        match: {headers: {X-Canary: "1"}, cookies: {beta: "~^y"}, query: {version: "2"}}
      - {name: admin, path: /admin/*, upstream: api, listeners: [internal]}
      - {name: legacy, path: "~^/legacy/(?P<rest>.*)$", redirect: {to: "/api/v1/{rest}", status: 301}}
      - {name: gone, path: /old, respond: {status: 410}}
      - {name: split, path: /s/*, split: [{upstream: v2, weight: 1}, {upstream: api, weight: 9}], sticky: {cookie: tg}}
    """
)


@pytest.fixture(scope="module")
def generation():
    return Generation(load_text(CONFIG), MemoryReactorClock())


def verdicts(answer):
    return {c["name"]: c["verdict"] for c in answer["considered"]}


def test_explain_shows_which_condition_decided(generation):
    answer = explain(
        generation, "GET", None, "/api/x?version=2", headers={"X-Canary": "1", "Cookie": "beta=yes"}, listener="public"
    )
    assert answer["route"]["name"] == "canary"
    assert [c["condition"] for c in answer["route"]["decided_by"]] == [
        "header X-Canary = '1'", "cookie beta ~ ^y", "query version = '2'",
    ]
    assert verdicts(answer)["stable"] == (
        "outranked by canary: a route with 3 match conditions is more specific than the same path with none, "
        "whatever the order"
    )


def test_explain_shows_the_condition_that_failed(generation):
    answer = explain(generation, "GET", None, "/api/x?version=1", headers={"X-Canary": "1", "Cookie": "beta=yes"})
    assert answer["route"]["name"] == "stable"
    assert verdicts(answer)["canary"] == "match condition query version = '2' does not hold (request has: '1')"
    answer = explain(generation, "GET", None, "/api/x")
    assert verdicts(answer)["canary"] == "match condition header X-Canary = '1' does not hold (request has: absent)"


def test_explain_honours_rewrite_in_the_forwarded_path(generation):
    answer = explain(generation, "GET", None, "/api/v1/users")
    assert answer["route"]["forwarded_path"] == "/users"  # strip_prefix, then the rewrite regex
    assert answer["route"]["rewrite"] == "strip /api, rewrite ^/v1/(.*)$ -> /$1"


def test_explain_listeners_and_redirect_https(generation):
    assert explain(generation, "GET", None, "/admin/x", listener="internal")["route"]["name"] == "admin"
    answer = explain(generation, "GET", None, "/admin/x", listener="public")
    assert answer["result"] == "no_route"
    assert verdicts(answer)["admin"] == "listener public is not in ['internal']"
    answer = explain(generation, "GET", None, "/admin/x", listener="plain")
    assert (answer["result"], answer["status"]) == ("redirect_https", 308)


def test_explain_answers_and_splits(generation):
    answer = explain(generation, "GET", None, "/legacy/a")
    assert answer["answer"] == {"kind": "redirect", "status": 301, "to": "/api/v1/{rest}"} and answer["upstream"] is None
    assert explain(generation, "GET", None, "/old")["answer"]["status"] == 410
    upstream = explain(generation, "GET", None, "/s/x")["upstream"]
    assert upstream["split"] == [{"upstream": "v2", "weight": 1}, {"upstream": "api", "weight": 9}]
    assert upstream["sticky_cookie"] == "tg"


def test_routes_table_shows_rewrites_and_destinations(generation):
    table = format_routes(generation.routes)
    assert "strip /api, rewrite ^/v1/(.*)$ -> /$1" in table
    assert "redirect 301 /api/v1/{rest}" in table and "respond 410" in table and "v2:1,api:9" in table


def test_explain_command_takes_headers_cookies_and_listener(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    argv = ["explain", str(path), "--path", "/api/x?version=2", "--header", "X-Canary: 1", "--cookie", "beta=yes"]
    assert main(argv + ["--listener", "public"]) == 0
    out = capsys.readouterr().out
    assert "route: canary" in out and "match: header X-Canary = '1': held (request has: '1')" in out
    assert main(["explain", str(path), "--path", "/admin/x", "--listener", "public", "--json"]) == 3  # no route
    assert json.loads(capsys.readouterr().out)["result"] == "no_route"
    assert main(["explain", str(path), "--path", "/x", "--header", "no-colon"]) == 2


def test_check_prints_warnings_and_still_accepts(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(
        yaml(
            """
            listeners: [{name: p, endpoint: "tcp:0"}]
            upstreams:
              api: {targets: [{url: "http://a:80"}], timeouts: {read: 2m}, outlier_detection: {consecutive_failures: 3}}
            routes: [{name: r, path: /, upstream: api}]
            """
        )
    )
    assert main(["check", str(path)]) == 0
    captured = capsys.readouterr()
    assert "ok (1 listener, " in captured.out
    assert captured.err.count("warning:") == 2
    assert "never ejects one" in captured.err and "timeouts.read (120s) is longer than the route's timeout (60s)" in captured.err


def test_check_without_warnings_prints_none(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    assert main(["check", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err
