"""Tests for twistgate.routing: choosing a route for a request."""

from __future__ import annotations

from typing import Any, List, Optional

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twistgate.config.model import ConfigError, Location, RouteConfig
from twistgate.errors import MethodNotAllowed
from twistgate.pathnorm import normalize_path
from twistgate.routing import RouteMatch, RouteTable, format_routes, normalize_host


def route(path: str, name: Optional[str] = None, **kwargs: Any) -> RouteConfig:
    if "methods" in kwargs and kwargs["methods"] is not None:
        kwargs["methods"] = frozenset(kwargs["methods"])
    return RouteConfig(name=name or path, path=path, upstream="up", **kwargs)


def table(*configs: RouteConfig) -> "RouteTable[str]":
    """A table whose payloads are the route names; index = position."""
    return RouteTable((attrs.evolve(c, index=i), c.name) for i, c in enumerate(configs))


def name_of(t: "RouteTable[str]", path: str, method: str = "GET", host: Optional[str] = None) -> Optional[str]:
    found = t.match(method, host, path)
    return None if found is None else found.payload


# -- path forms --------------------------------------------------------------


def test_dot_segments_cannot_escape_a_prefix_route() -> None:
    """`/public/../admin` is judged by the /admin route, never by /public/*."""
    t = table(route("/public/*", "public"), route("/admin", "admin"))
    for raw in (b"/public/../admin", b"/public/%2e%2e/admin", b"/public//..//admin"):
        assert name_of(t, normalize_path(raw)) == "admin"


def test_exact() -> None:
    """An exact path matches only itself: no trailing slash, no deeper path."""
    t = table(route("/users", "users"), route("/", "root"), route("/dir/", "dir"))
    assert name_of(t, "/users") == "users"
    assert name_of(t, "/users/") is None
    assert name_of(t, "/users/1") is None
    assert name_of(t, "/") == "root"
    assert name_of(t, "/dir/") == "dir"
    assert name_of(t, "/dir") is None


def test_prefix_segment_boundary() -> None:
    """`/api/*` matches /api, /api/ and deeper paths, but not /apix or /ap."""
    t = table(route("/api/*", "api"))
    for path in ("/api", "/api/", "/api/users", "/api/a/b/c"):
        assert name_of(t, path) == "api"
    for path in ("/apix", "/apix/y", "/ap", "/", "/x/api"):
        assert name_of(t, path) is None


def test_root_prefix_matches_everything() -> None:
    """`/*` is a catch-all."""
    t = table(route("/*", "all"))
    for path in ("/", "/a", "/a/b/"):
        assert name_of(t, path) == "all"


def test_params() -> None:
    """A parameter is one whole non-empty segment; its value lands in params."""
    t = table(route("/users/{id}", "user"), route("/users/{id}/orders/{oid}", "order"))
    found = t.match("GET", None, "/users/42")
    assert found is not None
    assert (found.payload, found.params) == ("user", {"id": "42"})
    found = t.match("GET", None, "/users/7/orders/9")
    assert found is not None
    assert (found.payload, found.params) == ("order", {"id": "7", "oid": "9"})
    for path in ("/users", "/users/", "/users/42/x", "/users/7/orders/"):
        assert name_of(t, path) is None


def test_params_are_percent_decoded() -> None:
    """Param values are decoded to text, bad UTF-8 replaced; the path stays encoded."""
    t = table(route("/files/{name}"))
    found = t.match("GET", None, normalize_path(b"/files/a%2fb%20caf%C3%A9%FF"))
    assert found is not None
    assert found.params == {"name": "a/b caf\u00e9\ufffd"}
    assert found.rewritten_path == "/files/a%2Fb%20caf%C3%A9%FF"


def test_prefix_with_params() -> None:
    """`/t/{tenant}/*` binds the tenant and matches anything below it."""
    t = table(route("/t/{tenant}/*", "tenant"))
    for path in ("/t/acme", "/t/acme/", "/t/acme/x/y"):
        found = t.match("GET", None, path)
        assert found is not None and found.params == {"tenant": "acme"}
    assert name_of(t, "/t") is None
    assert name_of(t, "/t/") is None


def test_regex_honours_the_users_anchors() -> None:
    """Regex routes use re.match: anchored at the start, the end only if `$` is written."""
    t = table(route("~^/v[0-9]+/items$", "strict"), route("~/open/[a-z]+", "open"))
    assert name_of(t, "/v12/items") == "strict"
    assert name_of(t, "/v12/items/x") is None
    assert name_of(t, "/vx/items") is None
    assert name_of(t, "/open/abc/def") == "open"
    assert name_of(t, "/x/open/abc") is None


def test_regex_named_groups_become_params() -> None:
    """Named groups that took part in the match become decoded params."""
    t = table(route(r"~^/v(?P<version>[0-9]+)/(?P<item>[^/]+)(?:/(?P<extra>x))?$"))
    found = t.match("GET", None, "/v2/caf%C3%A9")
    assert found is not None
    assert found.params == {"version": "2", "item": "caf\u00e9"}


def test_route_literals_are_normalised_like_requests() -> None:
    """A route written with raw UTF-8 or lower-case escapes matches the normalised request."""
    t = table(route("/caf\u00e9/%7euser"))
    assert name_of(t, normalize_path(b"/caf%c3%a9/~user")) == "/caf\u00e9/%7euser"


# -- hosts -------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, expected",
    [
        ("API.Example.COM", "api.example.com"),
        ("api.example.com:8443", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("[::1]:8080", "[::1]"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("10.0.0.1:80", "10.0.0.1"),
        ("", None),
        (None, None),
    ],
)
def test_normalize_host(header: Optional[str], expected: Optional[str]) -> None:
    """Port, case and a trailing dot do not matter; IPv6 keeps its brackets."""
    assert normalize_host(header) == expected


def test_host_exact_and_wildcard() -> None:
    """Exact hosts ignore case and port; `*.x` needs at least one label before .x."""
    t = table(
        route("/a", "exact", host="api.example.com"),
        route("/a", "wild", host="*.example.com"),
        route("/a", "v6", host="[::1]"),
    )
    assert name_of(t, "/a", host="API.example.com:443") == "exact"
    assert name_of(t, "/a", host="api.example.com.") == "exact"
    assert name_of(t, "/a", host="www.example.com") == "wild"
    assert name_of(t, "/a", host="a.b.example.com:80") == "wild"
    assert name_of(t, "/a", host="example.com") is None
    assert name_of(t, "/a", host=".example.com") is None
    assert name_of(t, "/a", host="badexample.com") is None
    assert name_of(t, "/a", host="[::1]:8080") == "v6"
    assert name_of(t, "/a", host=None) is None


def test_host_less_routes_match_any_host() -> None:
    """A route without host matches every Host, and requests without one."""
    t = table(route("/a", "any"))
    assert name_of(t, "/a", host="whatever.test") == "any"
    assert name_of(t, "/a", host=None) == "any"


def test_host_specificity() -> None:
    """Exact host beats a longer wildcard, which beats a shorter one, which beats any."""
    t = table(
        route("/a", "any"),
        route("/a", "short", host="*.com"),
        route("/a", "long", host="*.example.com"),
        route("/a", "exact", host="api.example.com"),
    )
    assert name_of(t, "/a", host="api.example.com") == "exact"
    assert name_of(t, "/a", host="www.example.com") == "long"
    assert name_of(t, "/a", host="other.com") == "short"
    assert name_of(t, "/a", host="other.org") == "any"


# -- precedence --------------------------------------------------------------


def test_priority_beats_specificity() -> None:
    """A higher priority wins over a more specific host and path."""
    t = table(
        route("/api/users", "exact", host="api.example.com"),
        route("/*", "catchall", priority=10),
    )
    assert name_of(t, "/api/users", host="api.example.com") == "catchall"


def test_path_specificity_order() -> None:
    """exact > param > regex > prefix (longer first), whatever the config order."""
    t = table(
        route("/*", "root"),
        route("/users/*", "prefix"),
        route("~^/users/", "regex"),
        route("/users/{id}", "param"),
        route("/users/me", "exact"),
    )
    assert name_of(t, "/users/me") == "exact"
    assert name_of(t, "/users/42") == "param"
    assert name_of(t, "/users/42/orders") == "regex"
    assert name_of(t, "/users") == "prefix"
    assert name_of(t, "/other") == "root"


def test_param_specificity() -> None:
    """Among param routes, more literal segments win."""
    t = table(route("/{a}/{b}/c", "one-literal"), route("/x/{b}/c", "two-literals"))
    assert name_of(t, "/x/y/c") == "two-literals"
    assert name_of(t, "/z/y/c") == "one-literal"


def test_longer_prefix_wins() -> None:
    """Among prefixes, the deeper one wins; at equal depth the more literal one."""
    t = table(
        route("/api/*", "api"),
        route("/api/v1/*", "v1"),
        route("/t/{tenant}/*", "tenant"),
        route("/t/admin/*", "admin"),
    )
    assert name_of(t, "/api/v1/users") == "v1"
    assert name_of(t, "/api/v2/users") == "api"
    assert name_of(t, "/t/admin/x") == "admin"
    assert name_of(t, "/t/acme/x") == "tenant"


def test_regex_routes_keep_config_order() -> None:
    """Two matching regex routes: the first in the file wins."""
    t = table(route("~^/a", "first"), route("~^/a/b$", "second"))
    assert name_of(t, "/a/b") == "first"


def test_method_list_beats_method_less_then_index() -> None:
    """With everything else equal, a route listing methods wins, then file order."""
    t = table(route("/a", "any"), route("/a", "get", methods=["GET"]), route("/a", "get2", methods=["GET"]))
    assert name_of(t, "/a") == "get"
    assert name_of(t, "/a", method="POST") == "any"


# -- methods -----------------------------------------------------------------


def test_method_not_allowed_lists_the_union() -> None:
    """Host and path match but no method does: 405 with the sorted union, HEAD included."""
    t = table(
        route("/a", "read", methods=["GET"]),
        route("/a/*", "write", methods=["PUT", "DELETE"]),
        route("/a", "other-host", methods=["PATCH"], host="other.test"),
    )
    with pytest.raises(MethodNotAllowed) as info:
        t.match("POST", "api.test", "/a")
    assert info.value.allow == ("DELETE", "GET", "HEAD", "PUT")
    assert info.value.status == 405
    assert (b"Allow", b"DELETE, GET, HEAD, PUT") in info.value.headers


def test_no_405_when_a_fallback_accepts_the_method() -> None:
    """A less specific route that accepts the method is chosen instead of a 405."""
    t = table(route("/a", "read", methods=["GET"]), route("/*", "all"))
    assert name_of(t, "/a", method="POST") == "all"


def test_not_found_is_none() -> None:
    """No route for the host and path: None, which the gateway answers with 404."""
    t = table(route("/a", methods=["GET"], host="api.test"))
    assert t.match("POST", "other.test", "/a") is None
    assert t.match("GET", "api.test", "/b") is None


def test_head_is_accepted_by_get_routes() -> None:
    """A route that accepts GET accepts HEAD; one that does not, does not."""
    t = table(route("/a", "get", methods=["GET"]), route("/b", "post", methods=["POST"]))
    assert name_of(t, "/a", method="HEAD") == "get"
    with pytest.raises(MethodNotAllowed) as info:
        t.match("HEAD", None, "/b")
    assert info.value.allow == ("POST",)


# -- rewrites ----------------------------------------------------------------


@pytest.mark.parametrize(
    "strip, add, path, expected",
    [
        ("/api", None, "/api/users", "/users"),
        ("/api", None, "/api", "/"),
        ("/api", None, "/api/", "/"),
        ("/api/", None, "/api/users/", "/users/"),
        ("/api", None, "/apix/users", "/apix/users"),
        ("/api", None, "/other", "/other"),
        (None, "/v1", "/users", "/v1/users"),
        (None, "/v1", "/", "/v1/"),
        (None, "/v1/", "/users", "/v1/users"),
        (None, "/", "/users", "/users"),
        ("/api", "/v1", "/api/users/7", "/v1/users/7"),
        ("/api", "/v1", "/api", "/v1/"),
    ],
)
def test_rewrites(strip: Optional[str], add: Optional[str], path: str, expected: str) -> None:
    """strip_prefix works at segment boundaries, then add_prefix prepends without '//'."""
    t = table(route("/*", strip_prefix=strip, add_prefix=add))
    found = t.match("GET", None, path)
    assert found is not None
    assert found.rewritten_path == expected


def test_match_carries_config_and_payload() -> None:
    """The match hands back the route's own config and payload."""
    config = route("/a")
    t: RouteTable[object] = RouteTable([(config, payload := object())])
    found = t.match("GET", None, "/a")
    assert isinstance(found, RouteMatch)
    assert found.config is config and found.payload is payload


# -- index -------------------------------------------------------------------


def test_candidates_stay_few_with_many_routes() -> None:
    """With 1000 prefix, 1000 exact and 1000 param routes, a match examines only the routes on its path."""
    configs: List[RouteConfig] = []
    for i in range(1000):
        configs.append(route(f"/svc{i}/*", f"prefix{i}"))
        configs.append(route(f"/exact{i}/x", f"exact{i}"))
        configs.append(route(f"/p{i}/{{id}}", f"param{i}"))
    configs.append(route("/svc500/deep/*", "deep"))
    t = table(*configs)
    path = "/svc500/deep/er"
    examined = t._candidates(None, path[1:].split("/"), path)
    assert {r.payload for r in examined} == {"prefix500", "deep"}
    assert name_of(t, path) == "deep"
    path = "/p999/7"
    assert len(t._candidates(None, path[1:].split("/"), path)) == 1
    assert len(t._candidates(None, ["nothing"], "/nothing")) == 0


def test_candidates_per_host_stay_few() -> None:
    """1000 virtual hosts with the same path: only that host's routes (and host-less ones) are examined."""
    t = table(*[route("/*", f"h{i}", host=f"h{i}.example.com") for i in range(1000)], route("/*", "any"))
    examined = t._candidates("h7.example.com", ["x"], "/x")
    assert sorted(r.payload for r in examined) == ["any", "h7"]


_SEGMENTS = st.sampled_from(["a", "b", "c"])


@given(
    prefixes=st.lists(st.lists(_SEGMENTS, max_size=3), max_size=8),
    request=st.lists(st.sampled_from(["a", "b", "c", ""]), min_size=1, max_size=4),
)
def test_trie_finds_exactly_the_matching_prefixes(prefixes: List[List[str]], request: List[str]) -> None:
    """The trie walk returns the same prefix routes as checking each one by hand."""
    t = table(*[route("/" + "/".join(p + ["*"]), name=f"r{i}") for i, p in enumerate(prefixes)])
    path = "/" + "/".join(request)
    expected = {f"r{i}" for i, p in enumerate(prefixes) if request[: len(p)] == p}
    assert {r.payload for r in t._candidates(None, request, path)} == expected


# -- construction and listing ------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"path": "users"}, "path"),
        ({"path": "/a/*/b"}, "path"),
        ({"path": "/a*"}, "path"),
        ({"path": "/a/{id"}, "path"),
        ({"path": "/a/x{id}"}, "path"),
        ({"path": "/a/{id}/{id}"}, "path"),
        ({"path": "/a//b"}, "path"),
        ({"path": "/a/../b"}, "path"),
        ({"path": "/a\\b"}, "path"),
        ({"path": "~^/(unclosed"}, "path"),
        ({"path": "/a", "host": "api.example.com:8080"}, "host"),
        ({"path": "/a", "host": "api.*.com"}, "host"),
        ({"path": "/a", "methods": frozenset()}, "methods"),
        ({"path": "/a", "strip_prefix": "api"}, "strip_prefix"),
    ],
)
def test_bad_routes_are_config_errors(kwargs: Any, key: str) -> None:
    """A route that cannot be compiled is a ConfigError pointing at its key."""
    config = RouteConfig(name="r", upstream="up", location=Location(file="gw.yaml", line=7, path="routes[3]"), **kwargs)
    with pytest.raises(ConfigError) as info:
        RouteTable([(config, None)])
    [issue] = info.value.issues
    assert issue.location.path == f"routes[3].{key}"
    assert issue.location.line == 7


def test_all_bad_routes_reported_at_once() -> None:
    """Every broken route is reported, not just the first."""
    with pytest.raises(ConfigError) as info:
        table(route("nope"), route("/ok"), route("/x", host="a:1"))
    assert len(info.value.issues) == 2


def test_rows_and_format() -> None:
    """rows() lists routes in preference order; format_routes shows every column."""
    t = table(
        route("/*", "catchall"),
        route("/api/*", "api", methods=["GET", "POST"], host="*.example.com", strip_prefix="/api", add_prefix="/v1"),
        route("/admin", "admin", priority=5),
    )
    rows = t.rows()
    assert [r.name for r in rows] == ["admin", "api", "catchall"]
    assert [r.rank for r in rows] == [1, 2, 3]
    assert rows[1].kind == "prefix" and rows[1].methods == "GET,POST" and rows[1].host == "*.example.com"
    text = format_routes(t)
    lines = text.splitlines()
    assert lines[0].split() == ["#", "PRIORITY", "HOST", "METHODS", "PATH", "KIND", "ROUTE", "UPSTREAM", "REWRITE"]
    assert lines[2].split() == ["2", "0", "*.example.com", "GET,POST", "/api/*", "prefix", "api", "up", "strip", "/api,", "add", "/v1"]
    assert lines[3].split() == ["3", "0", "*", "*", "/*", "prefix", "catchall", "up", "-"]


def test_a_path_asked_again_gets_the_same_route_by_host_and_method() -> None:
    """The table remembers a path's candidate routes: the second answer must be the first's, per Host and method."""
    t = table(
        route("/api/*", "any-host"),
        route("/api/*", "example", host="example.com"),
        route("/api/users", "users-post", methods=["POST"]),
        route("/api/{id}", "param"),
    )
    for _ in range(2):
        assert name_of(t, "/api/users", host="example.com") == "example"
        assert name_of(t, "/api/users", host="other.org") == "param"
        assert name_of(t, "/api/users", "POST", host="other.org") == "users-post"
        assert name_of(t, "/api/a/b", host="other.org") == "any-host"
        assert name_of(t, "/api/a/b", host="example.com") == "example"
        assert t.match("GET", "other.org", "/api/x").params == {"id": "x"}


def test_the_remembered_paths_are_bounded() -> None:
    from twistgate.routing import table as table_module

    t = table(route("/*", "all"))
    for n in range(table_module._KNOWN_MAX + 10):
        assert name_of(t, f"/p{n}") == "all"
    assert len(t._known) <= table_module._KNOWN_MAX
    assert name_of(t, "/" + "x" * 300) == "all" and ("/" + "x" * 300) not in t._known  # long paths are not kept


def test_host_forms_are_the_decoded_and_normalised_host_and_stay_bounded() -> None:
    from twistgate.routing import hosts

    assert hosts.host_forms(b"API.Example.com.:8443") == ("API.Example.com.:8443", "api.example.com")
    assert hosts.host_forms(b"API.Example.com.:8443") == ("API.Example.com.:8443", "api.example.com")  # remembered
    assert hosts.host_forms(b"") == (None, "")
    assert hosts.host_forms(b"[::1]:80") == ("[::1]:80", "[::1]")
    for n in range(hosts._FORMS_MAX + 5):
        hosts.host_forms(b"h%d" % n)
    assert len(hosts._FORMS) <= hosts._FORMS_MAX


def test_resolve_normalises_and_matches_and_remembers_only_routes_without_parameters() -> None:
    from twistgate.pathnorm import InvalidPath

    t = table(
        route("/*", "all"),
        route("/admin/*", "admin-post", methods=["POST"]),
        route("/items/{id}", "item"),
        route("/internal/*", "internal", listeners=["private"]),
    )
    for _ in range(2):  # the second time from what the table remembered
        assert t.resolve(b"GET", b"/a/./b//c", None)[0] == "/a/b/c"
        assert t.resolve(b"GET", b"/admin/x", None)[1].payload == "all"
        assert t.resolve(b"POST", b"/admin/x", None)[1].payload == "admin-post"
        assert t.resolve(b"GET", b"/internal/x", None, listener="public")[1].payload == "all"
        assert t.resolve(b"GET", b"/internal/x", None, listener="private")[1].payload == "internal"
        path, match = t.resolve(b"GET", b"/items/%7E7", None)
        assert (path, match.payload, match.params) == ("/items/~7", "item", {"id": "~7"})
        with pytest.raises(InvalidPath):
            t.resolve(b"GET", b"/a/%zz", None)
    assert all(not match.params for _, match in t._resolved.values())
    assert not any(key[1].startswith(b"/items/") for key in t._resolved)  # a match with parameters is never shared


def test_a_plugin_that_writes_request_params_leaves_the_next_request_untouched() -> None:
    """A resolved match is shared between requests: each request still gets its own params dict."""
    from twisted.web.resource import Resource

    from twistgate.config import load_text
    from twistgate.messages import Response
    from twistgate.plugins import hookimpl
    from twistgate.testing import GatewayHarness

    seen: List[dict] = []

    class Scribbler:
        def __init__(self, options: Any, context: Any) -> None:
            pass

        @hookimpl
        def on_request(self, request: Any) -> Any:
            seen.append(dict(request.params))
            request.params["scribbled"] = "yes"
            return Response(status=200, body=b"ok")

    config = load_text(
        'listeners: [{name: p, endpoint: "tcp:0"}]\n'
        'upstreams: {app: {targets: [{url: "http://app:80"}]}}\n'
        'routes: [{name: all, path: "/*", upstream: app, plugins: {scribbler: {}}}]\n'
    )
    gw = GatewayHarness(config, Resource(), plugins={"scribbler": Scribbler})
    for _ in range(3):
        gw.content(gw.request("GET", "http://gw/same"))
    assert seen == [{}, {}, {}]
