"""Tests for twistgate.pathnorm: the canonical request path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twistgate import pathnorm
from twistgate.errors import BadRequest
from twistgate.pathnorm import InvalidPath, normalize_path


@pytest.mark.parametrize(
    "raw, expected",
    [
        # already normal: returned as is
        (b"/", "/"),
        (b"/api/v1/users/42", "/api/v1/users/42"),
        (b"/a/b/", "/a/b/"),
        (b"/a/d:e@f!$&'()*+,=", "/a/d:e@f!$&'()*+,="),
        # an escaped ';' is data inside a segment, like %2F
        (b"/a%3bb=c/d", "/a%3Bb=c/d"),
        (b"/.well-known/x", "/.well-known/x"),
        (b"/...", "/..."),
        # dot segments, never above the root
        (b"/a/./b", "/a/b"),
        (b"/a/b/../c", "/a/c"),
        (b"/public/../admin", "/admin"),
        (b"/..", "/"),
        (b"/../../etc/passwd", "/etc/passwd"),
        (b"/a/.", "/a/"),
        (b"/a/..", "/"),
        (b"/a/b/..", "/a/"),
        (b"/a/b/.", "/a/b/"),
        # encoded dots are dots
        (b"/public/%2e%2e/admin", "/admin"),
        (b"/public/%2E%2e/admin", "/admin"),
        (b"/public/.%2E/admin", "/admin"),
        (b"/a/%2e/b", "/a/b"),
        # duplicate slashes
        (b"//a", "/a"),
        (b"/a//b///c", "/a/b/c"),
        (b"/a//", "/a/"),
        (b"//", "/"),
        (b"/a//../b", "/b"),
        # %2F is data, never a separator; hex is upper-cased
        (b"/a%2fb", "/a%2Fb"),
        (b"/a%2F..%2Fb", "/a%2F..%2Fb"),
        (b"/a/..%2f", "/a/..%2F"),
        (b"/x%5cy", "/x%5Cy"),
        (b"/sp%20ace", "/sp%20ace"),
        (b"/caf%c3%a9", "/caf%C3%A9"),
        # unreserved escapes are decoded
        (b"/%7Euser", "/~user"),
        (b"/%41%62%2D%5F%2e%30", "/Ab-_.0"),
        # bytes that are not allowed raw but harmless are encoded
        (b"/caf\xc3\xa9", "/caf%C3%A9"),
        (b"/a{b}|c", "/a%7Bb%7D%7Cc"),
        (b'/"<>^`[]', "/%22%3C%3E%5E%60%5B%5D"),
    ],
)
def test_normalize_table(raw: bytes, expected: str) -> None:
    """Each raw path becomes its canonical form."""
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"a/b",
        b"*",
        b"http://example.com/a",
        b"/%G1",
        b"/%4",
        b"/a%",
        b"/a%2",
        b"/%+1",
        b"/a%00b",
        b"/a\x00b",
        b"/a\\b",
        b"/a/..\\admin",
        b"/a b",
        b"/a\tb",
        b"/a\r\nb",
        b"/a\x7f",
        b"/a#frag",
        b"/a?q",
        b"/public/..;/admin",
        b"/public/.;x/admin",
        b"/public/%2e%2e;x/admin",
        # path parameters: Tomcat, Jetty and Spring drop ";..." from a segment,
        # so the upstream would serve /private/secret past /private/*'s policies
        b"/private;x=1/secret",
        b"/private;/secret",
        b"/public/..;/private/x",
        b"/a;jsessionid=0123",
        b"/a/b;",
        # an escaped ';' right after a dot segment is as ambiguous
        b"/public/..%3b/private/x",
        b"/public/.%3Bx/private",
    ],
)
def test_normalize_rejects(raw: bytes) -> None:
    """Paths that cannot be normalised safely raise InvalidPath."""
    with pytest.raises(InvalidPath):
        normalize_path(raw)


def test_invalid_path_is_a_400() -> None:
    """InvalidPath is a ValueError and a GatewayError answered with 400."""
    with pytest.raises(InvalidPath) as info:
        normalize_path(b"/a\\b")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, BadRequest)
    assert info.value.status == 400
    assert info.value.code == "invalid_path"


def test_path_parameters_are_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidPath) as info:
        normalize_path(b"/private;x=1/secret")
    assert "';'" in info.value.message and info.value.status == 400


def test_common_paths_take_the_fast_path() -> None:
    """An already-normal path is recognised by the single regex check."""
    for raw in (b"/", b"/api/v1/users/42", b"/static/app.min.js", b"/a/b/"):
        assert pathnorm._NORMAL.fullmatch(raw) is not None
    for raw in (b"/a//b", b"/a/../b", b"/a/./b", b"/%41", b"/a/.", b"/..;x"):
        assert pathnorm._NORMAL.fullmatch(raw) is None


_PIECES = st.sampled_from(
    [
        b"/", b"/", b".", b"..", b"%2e", b"%2E", b"%2f", b"%2F", b"a", b"b",
        b"%41", b"%7e", b"%c3", b"\xc3\xa9", b";", b"~", b"%", b"%0", b"%00",
        b"\\", b" ", b"{", b":", b"@", b"?", b"\x00",
    ]
)
_PATHS = st.one_of(
    st.lists(_PIECES, max_size=20).map(lambda parts: b"/" + b"".join(parts)),
    st.binary(max_size=40).map(lambda raw: b"/" + raw),
)


def _normalise_or_none(raw: bytes) -> "str | None":
    try:
        return normalize_path(raw)
    except InvalidPath:
        return None


@given(_PATHS)
def test_normalize_is_idempotent_and_canonical(raw: bytes) -> None:
    """The output normalises to itself and has no dot segments or '//'."""
    out = _normalise_or_none(raw)
    if out is None:
        return
    assert normalize_path(out.encode("ascii")) == out
    assert out.startswith("/")
    assert out.isascii()
    for bad in ("/../", "/./", "//"):
        assert bad not in out
    assert not out.endswith(("/.", "/.."))
    assert "\\" not in out and " " not in out and "%00" not in out and ";" not in out


@given(_PATHS)
def test_fast_path_agrees_with_the_full_algorithm(raw: bytes) -> None:
    """Whenever the fast check accepts a path, the full algorithm leaves it unchanged."""
    if pathnorm._NORMAL.fullmatch(raw) is not None:
        assert pathnorm._normalize_slow(raw) == raw.decode("ascii")


ROUTED = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams:
  app: {targets: [{url: "http://app.internal:8000"}]}
routes:
  - {name: private, path: "/private/*", upstream: app, plugins: {ip_allow: {cidrs: [10.0.0.0/8]}}}
  - {name: public, path: "/*", upstream: app}
"""


@pytest.mark.parametrize("path", ["/private;x=1/secret", "/public/..;/private/x", "/private;/secret"])
def test_path_parameters_cannot_reach_a_route_past_its_policies(path: str) -> None:
    """Through the whole gateway: 400 before routing, nothing reaches the (Tomcat-like) upstream."""
    import json

    from twisted.web.resource import Resource

    from twistgate.config import load_text
    from twistgate.testing import GatewayHarness

    class Upstream(Resource):
        isLeaf = True
        seen: list = []

        def render(self, request):
            self.seen.append(request.uri)
            return b"secret"

    upstream = Upstream()
    gw = GatewayHarness(load_text(ROUTED, "t.yaml"), upstream)
    response = gw.request("GET", "http://api.example" + path)
    assert response.code == 400
    assert json.loads(gw.content(response))["error"] == "invalid_path"
    assert upstream.seen == []
