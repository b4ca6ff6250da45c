"""Tests for the routes section: paths, hosts, methods, references, plugins."""


import pytest

from twistgate.plugins import ip_allow
from twistgate.plugins.options import options_spec
from twistgate.config import (
    ConfigError,
    Location,
    PluginSection,
    RouteConfig,
    load_text,
)
from tests.config_helpers import config_loader

HEAD = """\
listeners: [{name: a, endpoint: "tcp:1"}]
upstreams:
  users: {targets: [{url: "http://h"}]}
  orders: {targets: [{url: "http://o"}]}
"""  # 4 lines: routes start on line 5


load, issues = config_loader(HEAD)


def one_route(**fields):
    """A routes section with one route of the given extra fields, in flow style."""
    fields = {"name": "r", "path": "/", "upstream": "users", **fields}
    return "routes:\n  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}\n"


def test_route_full():
    """Every key is read into RouteConfig, with index and location."""
    config = load(
        """
        routes:
          - name: first
            path: /health
            upstream: orders
          - name: users
            path: /api/users/{id}
            upstream: users
            methods: [get, PUT]
            host: API.example.com
            priority: 10
            strip_prefix: /api
            add_prefix: /v1
            preserve_host: true
            timeout: 10s
            plugins:
              ip_allow: {cidrs: [10.0.0.0/8]}
              audit: {enabled: false, level: 2}
        """
    )
    assert config.routes[0] == RouteConfig(
        name="first",
        path="/health",
        upstream="orders",
        index=0,
        location=Location(file="gw.yaml", line=6, path="routes[0]"),
    )
    assert config.routes[1] == RouteConfig(
        name="users",
        path="/api/users/{id}",
        upstream="users",
        methods=frozenset({"GET", "PUT"}),
        host="api.example.com",
        priority=10,
        strip_prefix="/api",
        add_prefix="/v1",
        preserve_host=True,
        timeout=10.0,
        plugins=(
            PluginSection(
                name="ip_allow",
                options={"cidrs": ["10.0.0.0/8"], "allow": [], "deny": []},  # declared options: defaults filled in
                location=Location(file="gw.yaml", line=20, path="routes[1].plugins.ip_allow"),
                declared=options_spec(ip_allow.make_plugin),
            ),
            PluginSection(
                name="audit",
                enabled=False,
                options={"level": 2},
                location=Location(file="gw.yaml", line=21, path="routes[1].plugins.audit"),
            ),
        ),
        index=1,
        location=Location(file="gw.yaml", line=9, path="routes[1]"),
    )


def test_routes_may_be_empty_or_absent():
    """No routes is valid (the gateway answers 404)."""
    assert load("routes: []\n").routes == ()
    assert load("routes:\n").routes == ()
    assert load("").routes == ()


def test_typo_key_reports_line_path_and_suggestion():
    """A misspelt key on line 7 is one issue at routes[0].upstrem suggesting 'upstream'."""
    found = issues(
        """
        routes:
          - name: users
            path: /api/*
            upstrem: users
        """
    )
    assert found == [(8, "routes[0].upstrem", "unknown key 'upstrem'; did you mean 'upstream'?")]


def test_required_keys():
    """name, path and upstream are required."""
    assert issues("routes:\n  - {priority: 1}\n") == [
        (6, "routes[0].name", "required key 'name' is missing"),
        (6, "routes[0].path", "required key 'path' is missing"),
        (6, "routes[0].upstream", "required key 'upstream' is missing"),
    ]


def test_unknown_upstream_suggests_closest():
    """A route naming an upstream that does not exist gets the closest name."""
    found = issues("routes:\n  - {name: r, path: /, upstream: user}\n")
    assert found == [(6, "routes[0].upstream", "unknown upstream 'user'; did you mean 'users'?")]


def test_unknown_upstream_when_none_defined():
    """Without any upstreams the message says so."""
    with pytest.raises(ConfigError) as info:
        load_text('listeners: [{name: a, endpoint: "tcp:1"}]\nroutes: [{name: r, path: /, upstream: x}]\n', environ={})
    assert info.value.issues[0].message == "unknown upstream 'x': no upstreams are defined (add it under 'upstreams')"


def test_invalid_upstream_still_counts_as_defined():
    """A broken upstream is reported once; routes naming it are not also errors."""
    with pytest.raises(ConfigError) as info:
        load_text(
            'listeners: [{name: a, endpoint: "tcp:1"}]\n'
            "upstreams: {u: {targets: [{url: 'ftp://x'}]}}\n"
            "routes: [{name: r, path: /, upstream: u}]\n",
            environ={},
        )
    assert [i.location.path for i in info.value.issues] == ["upstreams.u.targets[0].url"]


def test_duplicate_route_names():
    """Route names are unique."""
    found = issues(
        """
        routes:
          - {name: r, path: /a, upstream: users}
          - {name: r, path: /b, upstream: users}
        """
    )
    assert found == [(7, "routes[1]", "duplicate route name 'r' (first on line 6)")]


@pytest.mark.parametrize(
    "path",
    ["/", "/exact", "/prefix/*", "/*", "/items/{id}", "/a/{x}/b/{y_2}", "/items/{id}/*", "~^/v[0-9]+/.*$"],
)
def test_valid_paths(path):
    """Every documented path form is accepted as written."""
    assert load(one_route(path=f"'{path}'")).routes[0].path == path


@pytest.mark.parametrize(
    "path, message",
    [
        ("api", "must start with '/' (or '~' for a regex)"),
        ("/a/*/b", "'*' is only allowed as a trailing '/*'"),
        ("/a*", "'*' is only allowed as a trailing '/*'"),
        ("/items/id{id}", "a parameter must be a whole segment like /{id}"),
        ("/items/{id", "a parameter must be a whole segment"),
        ("/items/{1d}", "invalid parameter name '1d'"),
        ("/items/{}", "invalid parameter name ''"),
        ("/a/{id}/b/{id}", "parameter {id} appears twice"),
        ("/a?b=1", "must not contain '?', '#' or whitespace"),
        ("/a b", "must not contain '?', '#' or whitespace"),
        ("~", "a regex path needs a pattern after '~'"),
        ("~^/(unclosed", "invalid regular expression '^/(unclosed'"),
    ],
)
def test_invalid_paths(path, message):
    """Each path rule has its own message at routes[i].path."""
    found = issues(one_route(path=f"'{path}'"))
    assert len(found) == 1
    assert found[0][:2] == (6, "routes[0].path")
    assert message in found[0][2]


@pytest.mark.parametrize(
    "host, expected",
    [
        ("Api.Example.COM", "api.example.com"),
        ("*.example.com", "*.example.com"),
        ("localhost", "localhost"),
        ("10.0.0.1", "10.0.0.1"),
        ("api.example.com.", "api.example.com"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("*", None),
    ],
)
def test_valid_hosts(host, expected):
    """Exact names, a leading wildcard and IPv6 literals are accepted, normalised; * is any host."""
    assert load(one_route(host=f"'{host}'")).routes[0].host == expected


@pytest.mark.parametrize(
    "host, message",
    [
        ("api.example.com:443", "must not include a port"),
        ("api.*.com", "expected a host name like api.example.com"),
        ("*example.com", "expected a host name"),
        ("-bad.example.com", "expected a host name"),
        ("a..b", "expected a host name"),
        ("[nope]", "expected an IPv6 address in brackets"),
        ("::1", "must not include a port (IPv6 addresses go in brackets)"),
    ],
)
def test_invalid_hosts(host, message):
    """Ports, misplaced wildcards and malformed names are refused."""
    found = issues(one_route(host=f"'{host}'"))
    assert found[0][1] == "routes[0].host" and message in found[0][2]


def test_methods():
    """Methods are upper-cased into a frozenset; extension methods are allowed."""
    route = load(one_route(methods="[get, Post, PROPFIND, GET]")).routes[0]
    assert route.methods == frozenset({"GET", "POST", "PROPFIND"})
    assert load(one_route()).routes[0].methods is None


def test_method_errors():
    """Near misses of standard methods, non-tokens and an empty list are refused."""
    found = issues(
        """
        routes:
          - name: r
            path: /
            upstream: users
            methods: [GTE, "GET POST", DELTE]
          - {name: s, path: /, upstream: users, methods: []}
        """
    )
    assert found == [
        (9, "routes[0].methods[0]", "unknown method 'GTE'; did you mean 'GET'?"),
        (9, "routes[0].methods[1]", "expected an HTTP method like GET, got 'GET POST'"),
        (9, "routes[0].methods[2]", "unknown method 'DELTE'; did you mean 'DELETE'?"),
        (10, "routes[1].methods", "must list at least one method; leave 'methods' out to allow any"),
    ]


def test_scalar_field_errors():
    """priority is an int, prefixes start with '/', preserve_host is a bool, timeout a duration."""
    found = issues(
        """
        routes:
          - name: r
            path: /
            upstream: users
            priority: high
            strip_prefix: api
            add_prefix: v1/
            preserve_host: "yes"
            timeout: 0s
        """
    )
    assert found == [
        (9, "routes[0].priority", "expected an integer, got string 'high'"),
        (10, "routes[0].strip_prefix", "must start with '/', got 'api'"),
        (11, "routes[0].add_prefix", "must start with '/', got 'v1/'"),
        (12, "routes[0].preserve_host", "expected true or false, got string 'yes'"),
        (13, "routes[0].timeout", "must be longer than zero"),
    ]


def test_routes_must_be_a_list():
    """routes is a list of mappings."""
    assert issues("routes: {a: 1}\n") == [(5, "routes", "expected a list, got mapping")]
    assert issues("routes: [x]\n") == [(5, "routes[0]", "expected a mapping, got string 'x'")]


@pytest.mark.parametrize("key, value, expected", [("path", "12", "a path like /api/*"),
                                                  ("path", "1.5", "a path like /api/*"),
                                                  ("host", "8080", "a host name like api.example.com")])
def test_a_number_where_a_path_or_host_belongs_is_an_issue_not_a_crash(key, value, expected):
    """Issue 14: `path: 12` crashed the loader (AttributeError) in `twistgate check` and in a reload."""
    found = issues(one_route(**{key: value}))
    assert found[0][1] == f"routes[0].{key}" and f"expected {expected}, got" in found[0][2]
