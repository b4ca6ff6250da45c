"""
twistgate.config.endpoints: server endpoint strings read without building
anything, and the checks that give each socket one owner.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.config_helpers import config_loader
from twistgate.config.endpoints import (
    EndpointError,
    ServerAddress,
    parse_server_endpoint,
    same_address,
    split_description,
    suggest_endpoint,
    with_default_backlog,
)

load, issues = config_loader()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tcp:8080", ServerAddress(text="tcp:8080", kind="tcp", port=8080)),
        ("tcp:0", ServerAddress(text="tcp:0", kind="tcp", port=0)),
        ("tcp:65535", ServerAddress(text="tcp:65535", kind="tcp", port=65535)),
        ("tcp:8080:interface=127.0.0.1", ServerAddress(text="tcp:8080:interface=127.0.0.1", kind="tcp", port=8080, interface="127.0.0.1")),
        ("tcp:8080:127.0.0.1:100", ServerAddress(text="tcp:8080:127.0.0.1:100", kind="tcp", port=8080, interface="127.0.0.1")),
        ("tcp:port=8080:backlog=100", ServerAddress(text="tcp:port=8080:backlog=100", kind="tcp", port=8080)),
        ("tcp6:8443:interface=\\:\\:1", ServerAddress(text="tcp6:8443:interface=\\:\\:1", kind="tcp", port=8443, interface="::1")),
        ("tcp6:8443", ServerAddress(text="tcp6:8443", kind="tcp", port=8443, interface="::")),
        ("ssl:443:privateKey=k.pem:certKey=c.pem", ServerAddress(text="ssl:443:privateKey=k.pem:certKey=c.pem", kind="tcp", port=443)),
        ("unix:/run/gw.sock:mode=660", ServerAddress(text="unix:/run/gw.sock:mode=660", kind="unix", path="/run/gw.sock")),
        ("systemd:domain=INET:index=0", ServerAddress(text="systemd:domain=INET:index=0", kind="other")),
    ],
)
def test_parses_what_twisted_accepts(text, expected):
    assert parse_server_endpoint(text) == expected


def test_agrees_with_twisted_on_the_listening_address():
    """The pure reader and Twisted's own parser (on a fake reactor, here only) see the same port and interface."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    for text in ("tcp:8080", "tcp:8080:interface=127.0.0.1", "tcp:8080:10.0.0.1:7", "tcp:port=1:interface=\\:\\:1",
                 "tcp6:9000:50:\\:\\:1", "tcp6:port=9000"):
        endpoint = serverFromString(MemoryReactor(), text)
        parsed = parse_server_endpoint(text)
        assert (parsed.port, parsed.interface) == (endpoint._port, endpoint._interface), text


@pytest.mark.parametrize(
    "text, reason",
    [
        ("tcp:80800", "port 80800 is outside 1-65535"),
        ("tcp:-1", "port -1 is outside 1-65535"),
        ("tcp:http", "the port must be a number"),
        ("tcp:80:interface=[\\:\\:1]", "without brackets"),
        ("tcp:80:interface=a b", "neither an IP address nor a host name"),
        ("tcp:80:a:b:c", "too many ':'-separated values"),
        ("tcp:80:backlog=1:backlog=2", "given twice"),
        ("unix:/x:mode=rw", "mode must be octal"),
        ("", "it is empty"),
        (" tcp:80", "spaces"),
        ("tcp:80\\", "lone '\\'"),
    ],
)
def test_refuses_what_cannot_listen(text, reason):
    with pytest.raises(EndpointError, match=None) as error:
        parse_server_endpoint(text)
    assert reason in str(error.value)


@pytest.mark.parametrize(
    "value, suggestion",
    [(8080, "tcp:8080"), ("8080", "tcp:8080"), (":8080", "tcp:8080"), ("*:80", "tcp:80"),
     ("0.0.0.0:80", "tcp:80:interface=0.0.0.0"), ("[::1]:8443", "tcp6:8443:interface=\\:\\:1"),
     ("localhost:8080", "tcp:8080:interface=localhost"), ("tcpx:80", None), (70000, None), (True, None)],
)
def test_suggestions(value, suggestion):
    assert suggest_endpoint(value) == suggestion
    if suggestion is not None:
        parse_server_endpoint(suggestion)  # what we suggest is itself valid


@pytest.mark.parametrize(
    "a, b, clash",
    [
        ("tcp:8080", "tcp:8080", True),
        ("tcp:8080", "tcp:8080:interface=127.0.0.1", True),  # absent interface: every interface
        ("tcp:8080:interface=0.0.0.0", "tcp:8080:interface=10.1.2.3", True),
        ("tcp6:8080", "tcp:8080:interface=127.0.0.1", True),  # :: covers IPv4 too on Linux
        ("tcp:8080:interface=127.0.0.1", "tcp:8080:interface=127.0.0.2", False),
        ("tcp:8080:interface=\\:\\:1", "tcp:8080:interface=0\\:0\\:\\:1", True),
        ("tcp:8080", "tcp:8081", False),
        ("tcp:0", "tcp:0", False),  # any free port: never the same
        ("ssl:443", "tcp:443", True),
        ("unix:/run/a.sock", "unix:/run/./a.sock", True),
        ("unix:/run/a.sock", "unix:/run/b.sock", False),
        ("unix:/run/a.sock", "tcp:80", False),
    ],
)
def test_same_address(a, b, clash):
    assert same_address(a, b) is clash
    assert same_address(b, a) is clash


@given(st.text(max_size=40))
def test_any_string_is_read_or_refused_in_words(text):
    try:
        parse_server_endpoint(text)
    except EndpointError as error:
        assert str(error)


@given(st.text(alphabet=st.sampled_from("ab:=\\"), max_size=20))
def test_split_matches_twisted(text):
    """Escapes, keywords and positions as Twisted's own tokenizer reads them."""
    from twisted.internet.endpoints import _parse

    try:
        ours = split_description(text)
    except EndpointError as error:  # Twisted keeps the last of a repeated option, or fails on a lone "\\"
        assert "given twice" in str(error) or "lone" in str(error)
        return
    assert ours == _parse(text)


# -- in a configuration ------------------------------------------------------------


def test_two_listeners_on_one_port_are_refused():
    found = issues(
        """
        listeners:
          - {name: public, endpoint: "tcp:8080"}
          - {name: local, endpoint: "tcp:8080:interface=127.0.0.1"}
          - {name: other, endpoint: "tcp:8081"}
          - {name: any-a, endpoint: "tcp:0"}
          - {name: any-b, endpoint: "tcp:0"}
        """
    )
    assert found == [
        (3, "listeners[1].endpoint",
         "'tcp:8080:interface=127.0.0.1' binds the same port 8080 as listener 'public' (listeners[0]), line 2; "
         "give each its own port"),
    ]


def test_a_listener_on_the_admin_port_is_refused():
    found = issues(
        """
        listeners: [{name: public, endpoint: "tcp:9901"}]
        admin:
          endpoint: "tcp:9901:interface=127.0.0.1"
          token: x
        """
    )
    assert found[0][:2] == (3, "admin.endpoint")
    assert "same port 9901 as listener 'public'" in found[0][2] and "never be on a public listener" in found[0][2]


def test_a_listener_on_the_demo_port_is_refused():
    found = issues(
        """
        listeners: [{name: public, endpoint: "tcp:5001"}]
        demo: true
        """
    )
    assert found == [
        (2, "demo", "'tcp:5001:interface=127.0.0.1' binds the same port 5001 as listener 'public' (listeners[0]), "
         "line 1; move the demo backends, e.g. demo: {endpoint: 'tcp:5002:interface=127.0.0.1'}"),
    ]
    assert issues('listeners: [{name: p, endpoint: "tcp:6000"}]\ndemo: {endpoint: "tcp:6000"}\n')[0][:2] == (2, "demo.endpoint")


def test_separate_addresses_load():
    config = load(
        """
        listeners:
          - {name: a, endpoint: "tcp:8080:interface=127.0.0.1"}
          - {name: b, endpoint: "tcp:8080:interface=127.0.0.2"}
          - {name: c, endpoint: "unix:/tmp/gw.sock"}
        admin: {endpoint: "tcp:9901:interface=127.0.0.1", token: x}
        demo: true
        """
    )
    assert [listener.location.line for listener in config.listeners] == [2, 3, 4]


def test_the_admin_api_on_the_demo_port_is_refused_with_advice_about_the_demo():
    """Not 'the admin API must never be on a public listener': the demo backends are not one."""
    found = issues(
        """
        listeners: [{name: public, endpoint: "tcp:8080"}]
        admin: {endpoint: "tcp:5001:interface=127.0.0.1", token: x}
        demo: true
        """
    )
    assert found == [
        (3, "demo", "'tcp:5001:interface=127.0.0.1' binds the same port 5001 as the admin API (admin.endpoint), "
         "line 2; move the demo backends, e.g. demo: {endpoint: 'tcp:5002:interface=127.0.0.1'}"),
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tcp:8080", "tcp:8080:backlog=511"),
        ("tcp:8080:interface=127.0.0.1", "tcp:8080:interface=127.0.0.1:backlog=511"),
        ("tcp:8080:127.0.0.1", "tcp:8080:127.0.0.1:backlog=511"),
        ("tcp:8080:127.0.0.1:100", "tcp:8080:127.0.0.1:100"),  # the backlog given positionally
        ("tcp:8080:backlog=9", "tcp:8080:backlog=9"),
        ("tcp6:8080", "tcp6:8080:backlog=511"),
        ("unix:/run/gw.sock", "unix:/run/gw.sock:backlog=511"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),  # not ours to change
    ],
)
def test_a_listener_without_a_backlog_gets_nginx_s(text, expected):
    """Twisted's default of 50 drops connection attempts when a thousand clients connect at once."""
    assert with_default_backlog(text) == expected


def test_listeners_listen_with_the_default_backlog():
    from twisted.internet.testing import MemoryReactorClock
    from twisted.internet.protocol import ServerFactory

    from twistgate.listeners import build_listener

    reactor = MemoryReactorClock()
    config = load("listeners:\n  - {name: a, endpoint: \"tcp:8080\"}\n  - {name: b, endpoint: \"tcp:8081:backlog=7\"}\n")
    for listener in config.listeners:
        build_listener(listener, reactor).endpoint.listen(ServerFactory())
    assert [(port, backlog) for port, _, backlog, _ in reactor.tcpServers] == [(8080, 511), (8081, 7)]
