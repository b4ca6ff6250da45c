"""The edge-routing keys as the loader reads them: each accepted form next to its refusal."""

from __future__ import annotations

import pytest

from tests.config_helpers import config_loader
from twistgate.config import ConfigError, load_text
from twistgate.validation import validate, warnings

HEAD = """\
listeners:
  - {name: plain, endpoint: "tcp:1", redirect_https: 8443}
  - {name: public, endpoint: "tcp:2"}
upstreams:
  api: {targets: [{url: "http://h"}]}
  v2: {targets: [{url: "http://h2"}]}
"""  # 6 lines: what follows starts on line 7

load, issues = config_loader(HEAD)
load_bare, _ = config_loader("listeners: [{name: public, endpoint: 'tcp:2'}]\n")


def messages(text):
    return [message for _, _, message in issues(text)]


# -- defaults and x- keys ----------------------------------------------------------------


def test_defaults_apply_to_routes_without_the_key_and_are_replaced_whole():
    """A default is taken by every route that lacks the key; a route's own key replaces it entirely."""
    config = load(
        """
        x-common: &short {timeout: 5s}
        defaults:
          timeout: 30s
          upstream: api
          headers: {response: {set: {X-Frame-Options: DENY}}}
        routes:
          - {name: a, path: /a}
          - {name: b, path: /b, headers: {response: {set: {X-Other: "1"}}}, <<: *short}
          - {name: c, path: /c, respond: {status: 204}}
        """
    )
    a, b, c = config.routes
    assert (a.upstream, a.timeout) == ("api", 30.0)
    assert a.policies["headers"].response.set[0][0] == "X-Frame-Options"
    assert (b.upstream, b.timeout) == ("api", 5.0)
    assert [name for name, _ in b.policies["headers"].response.set] == ["X-Other"]  # replaced, not merged
    assert c.upstream == "" and c.respond.status == 204  # a route's own answer is never mixed with `upstream`
    assert config.defaults.name == "defaults" and config.defaults.timeout == 30.0


def test_defaults_refuse_per_route_keys_and_report_once():
    """name and path cannot be defaults; a bad default is reported once, at its own line."""
    found = issues(
        """
        defaults:
          path: /x
          timeout: 10
        routes:
          - {name: a, path: /a, upstream: api}
          - {name: b, path: /b, upstream: api}
        """
    )
    assert [(line, path) for line, path, _ in found] == [(8, "defaults.path"), (9, "defaults.timeout")]


def test_only_x_prefixed_unknown_top_level_keys_are_ignored():
    """`x-` keys are a home for anchors; any other unknown top-level key is still an error."""
    load("x-anything: {whatever: [1, 2]}\nroutes: []\n")
    assert messages("extras: 1\n") == ["unknown key 'extras'"]


# -- redirect / respond / listeners -------------------------------------------------------


def test_redirect_and_respond_routes():
    config = load(
        """
        routes:
          - {name: legacy, path: "~^/legacy/(?P<rest>.*)$", redirect: {to: "/api/v1/{rest}", status: 301}}
          - {name: moved, path: /old, redirect: {to: "https://new.example/"}}
          - {name: gone, path: /gone, respond: {status: 410, body: '{"error": "gone"}', headers: {Content-Type: application/json}}}
          - {name: ok, path: /ok, respond: {body: up}}
        """
    )
    legacy, moved, gone, ok = config.routes
    assert (legacy.redirect.to, legacy.redirect.status) == ("/api/v1/{rest}", 301)
    assert moved.redirect.status == 302
    assert gone.respond.headers == ((b"Content-Type", b"application/json"),)
    assert ok.respond.status == 200 and ok.respond.headers == ((b"Content-Type", b"text/plain; charset=utf-8"),)
    assert validate(config) == []


def test_redirect_and_respond_refusals():
    assert messages("routes:\n  - {name: r, path: /, redirect: {to: /x, status: 200}}\n") == [
        "a redirect status is one of 301, 302, 303, 307, 308, got 200"
    ]
    assert messages("routes:\n  - {name: r, path: /, respond: {status: 99}}\n") == [
        "expected a final status from 200 to 599, got 99"
    ]
    assert messages("routes:\n  - {name: r, path: /, respond: {headers: {Content-Length: 3}}}\n") == [
        "'Content-Length' is set by the gateway itself"
    ]
    assert messages("routes:\n  - {name: r, path: /, upstream: api, respond: {status: 200}}\n") == [
        "a route has one of 'upstream', 'split', 'redirect' or 'respond'; this one has 'upstream' and 'respond'"
    ]


def test_redirect_template_names_are_checked():
    """{name} must be a path parameter, a regex group or host/scheme/path."""
    config = load("routes:\n  - {name: r, path: '/u/{id}', redirect: {to: '/users/{id}/{nope}'}}\n")
    (issue,) = validate(config)
    assert issue.location.path == "routes[0].redirect.to"
    assert issue.message == "unknown substitution {nope}; known here: host, id, path, scheme"


def test_route_listeners_must_exist():
    config = load("routes:\n  - {name: r, path: /, upstream: api, listeners: [public]}\n")
    assert config.routes[0].listeners == ("public",) and validate(config) == []
    config = load("routes:\n  - {name: r, path: /, upstream: api, listeners: [publik]}\n")
    assert [i.message for i in validate(config)] == [
        "unknown listener 'publik' (defined: plain, public); did you mean 'public'?"
    ]
    assert messages("routes:\n  - {name: r, path: /, upstream: api, listeners: []}\n") == [
        "must name at least one listener (leave 'listeners' out to serve the route on all)"
    ]


def test_redirect_https_forms_and_refusals():
    config = load("routes: []\n")
    assert [l.redirect_https for l in config.listeners] == [8443, None]
    text = "listeners: [{name: a, endpoint: 'tcp:1', redirect_https: true}]\n"
    assert load_text(text).listeners[0].redirect_https == 443
    with pytest.raises(ConfigError) as info:
        load_text("listeners: [{name: a, endpoint: 'tcp:1', redirect_https: 70000}]\n")
    assert "expected a port from 1 to 65535" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_text(
            "listeners: [{name: a, endpoint: 'tcp:1', redirect_https: true, "
            "tls: {certificate: c.pem, private_key: k.pem}}]\n"
        )
    assert "'redirect_https' goes on a plain listener" in str(info.value)


# -- match, split, sticky ------------------------------------------------------------------


def test_match_conditions():
    config = load(
        """
        routes:
          - name: v2
            path: /api/*
            upstream: v2
            match:
              headers: {x-canary: 1, X-Env: "~^(staging|qa)$", X-Debug: "*"}
              cookies: {beta: "yes"}
              query: {version: "2"}
        """
    )
    match = config.routes[0].match
    assert [(c.name, c.kind, c.text) for c in match.headers] == [
        ("X-Canary", "exact", "1"), ("X-Env", "regex", "~^(staging|qa)$"), ("X-Debug", "present", "*"),
    ]
    assert match.count == 5


def test_match_refusals():
    assert messages("routes:\n  - {name: r, path: /, upstream: api, match: {cookies: {beta: yes}}}\n") == [
        'expected a value, "~regex" or "*", got boolean \'yes\' (quote it: YAML reads yes/no/on/off as booleans)'
    ]
    assert messages("routes:\n  - {name: r, path: /, upstream: api, match: {headers: {X: '~('}}}\n")[0].startswith(
        "invalid regular expression '('"
    )
    assert messages("routes:\n  - {name: r, path: /, upstream: api, match: {}}\n") == [
        "needs at least one condition under headers, cookies or query (or leave 'match' out)"
    ]
    assert messages("routes:\n  - {name: r, path: /, upstream: api, match: {body: {}}}\n") == [
        "unknown key 'body'"
    ]


def test_split_and_sticky():
    config = load(
        """
        routes:
          - name: canary
            path: /api/*
            split: [{upstream: v2, weight: 10}, {upstream: api, weight: 90}]
            sticky: {cookie: tg_affinity, max_age: 1h}
        """
    )
    route = config.routes[0]
    assert route.upstream == "" and route.upstream_names == ("v2", "api")
    assert (route.sticky.cookie, route.sticky.max_age) == ("tg_affinity", 3600.0)


def test_split_and_sticky_refusals():
    assert messages("routes:\n  - {name: r, path: /, split: [{upstream: api, weight: 1}]}\n") == [
        "a split needs at least two arms like {upstream: api-v2, weight: 10}; use 'upstream' for one"
    ]
    assert messages("routes:\n  - {name: r, path: /, split: [{upstream: api, weight: 1}, {upstream: v3, weight: 1}]}\n") == [
        "unknown upstream 'v3'"
    ]
    assert messages("routes:\n  - {name: r, path: /, split: [{upstream: api, weight: 0}, {upstream: v2, weight: 0}]}\n") == [
        "at least one arm needs a weight above 0"
    ]
    assert messages("routes:\n  - {name: r, path: /, upstream: api, sticky: {cookie: 'a b'}}\n") == [
        "'a b' is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"
    ]
    assert messages("routes:\n  - {name: r, path: /, respond: {status: 200}, sticky: {cookie: a}}\n") == [
        "'sticky' pins clients to targets: it needs 'upstream' or 'split'"
    ]


def test_cache_needs_one_upstream():
    config = load(
        "routes:\n  - {name: r, path: /, split: [{upstream: api, weight: 1}, {upstream: v2, weight: 1}], cache: {ttl: 1m}}\n"
    )
    assert [i.message for i in validate(config)] == ["'cache' needs a route with one 'upstream', not a split between upstreams"]


# -- per-route and upstream settings ---------------------------------------------------------


def test_route_body_limit_access_log_and_upstream_write_timeout_and_backup():
    config = load_bare(
        """
        upstreams:
          api:
            targets: [{url: "http://a"}, {url: "http://b", backup: true}]
            timeouts: {connect: 1s, read: 5s, write: 7s}
        limits: {max_connections: 1000}
        routes:
          - {name: up, path: /upload, upstream: api, max_request_body: 100MiB, access_log: false}
        """
    )
    route = config.routes[0]
    assert (route.max_request_body, route.access_log) == (100 * 1024 * 1024, False)
    api = config.upstreams["api"]
    assert [t.backup for t in api.targets] == [False, True] and api.timeouts.write == 7.0
    assert config.limits.max_connections == 1000


def test_body_limit_backup_and_connection_refusals():
    assert messages("routes:\n  - {name: r, path: /, upstream: api, max_request_body: 10MB}\n")[0].startswith(
        "ambiguous size unit 'MB'"
    )
    with pytest.raises(ConfigError) as info:
        load_text("listeners: [{name: a, endpoint: 'tcp:1'}]\nupstreams: {u: {targets: [{url: 'http://a', backup: true}]}}\n")
    assert "every target is a backup" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_text("listeners: [{name: a, endpoint: 'tcp:1'}]\nlimits: {max_connections: 0}\n")
    assert "must be at least 1" in str(info.value)


def test_cache_ttl_per_status():
    config = load("routes:\n  - {name: r, path: /, upstream: api, cache: {ttl: {200: 60s, 404: 10s}}}\n")
    cache = config.routes[0].policies["cache"]
    assert (cache.ttl_for(200), cache.ttl_for(404), cache.ttl_for(500)) == (60.0, 10.0, None)
    assert cache.lists(404) and not cache.lists(301)
    assert messages("routes:\n  - {name: r, path: /, upstream: api, cache: {ttl: {304: 1m}}}\n") == [
        "304 responses are never stored (use a final status from 200 to 599, not 206 or 304)"
    ]
    assert messages("routes:\n  - {name: r, path: /, upstream: api, cache: {ttl: {ok: 1m}}}\n") == [
        "expected a status code like 200 as the key, got 'ok'"
    ]


# -- twistgate check warnings ---------------------------------------------------------------------


def test_warnings_single_target_never_ejected_and_read_beyond_route_timeout():
    config = load_bare(
        """
        upstreams:
          api:
            targets: [{url: "http://a"}]
            timeouts: {read: 90s}
            outlier_detection: {consecutive_failures: 3}
        routes:
          - {name: r, path: /, upstream: api}
          - {name: quick, path: /q, upstream: api, timeout: 10s, timeouts: {read: 5s}}
        """
    )
    found = [w.message for w in warnings(config)]
    assert found == [
        "upstream 'api' has a single target: with max_ejected 50% outlier detection never ejects one "
        "(as nginx ignores max_fails for a single server); add targets, or rely on circuit_breaker and health_check",
        "route 'r': upstream 'api' timeouts.read (90s) is longer than the route's timeout (60s), "
        "so it has no effect: the route answers 504 first",
    ]
    assert validate(config) == []  # warnings, not errors


def test_no_warnings_for_a_sound_config():
    config = load_bare(
        """
        upstreams:
          api:
            targets: [{url: "http://a"}, {url: "http://b"}]
            outlier_detection: {consecutive_failures: 3, max_ejected: 40%}  # two targets can always lose one
        routes:
          - {name: r, path: /, upstream: api}
        """
    )
    assert warnings(config) == []
