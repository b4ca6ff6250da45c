"""The `websocket` sections and what a route's WebSockets get from them; which requests are handshakes."""

from __future__ import annotations

import pytest

from twistgate.config import ConfigError, load_text
from twistgate.headers import Headers
from twistgate.websocket.config import DEFAULT_DRAIN_TIMEOUT, DEFAULT_IDLE_TIMEOUT, drain_timeout, settings_for
from twistgate.websocket.exchange import websocket_upgrade

BASE = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {a: {targets: [{url: "http://127.0.0.1:1"}]}}
"""


def load(extra: str):
    return load_text(BASE + extra, "t.yaml", environ={})


def test_route_values_replace_the_top_level_and_caps_stack():
    config = load(
        "websocket: {idle_timeout: 10s, max_connections: 100, max_message_size: 1MiB, drain_timeout: 1m}\n"
        "routes:\n"
        "  - {name: r, path: /r, upstream: a, websocket: {idle_timeout: 1h, max_connections: 5}}\n"
        "  - {name: s, path: /s, upstream: a}\n"
    )
    top = config.sections["websocket"]
    r = settings_for(top, config.routes[0].policies.get("websocket"))
    s = settings_for(top, config.routes[1].policies.get("websocket"))
    assert (r.idle_timeout, r.max_message_size, r.route_limit, r.gateway_limit) == (3600.0, 1024 * 1024, 5, 100)
    assert (s.idle_timeout, s.max_message_size, s.route_limit, s.gateway_limit) == (10.0, 1024 * 1024, None, 100)
    assert drain_timeout(top) == 60.0


def test_defaults_without_any_section():
    settings = settings_for(None, None)
    assert (settings.idle_timeout, settings.max_message_size, settings.route_limit, settings.gateway_limit) == (
        DEFAULT_IDLE_TIMEOUT, 0, None, None,
    )
    assert drain_timeout(None) == DEFAULT_DRAIN_TIMEOUT


@pytest.mark.parametrize(
    "section, message",
    [
        ("websocket: {max_connections: 0}", "websocket.max_connections"),
        ("websocket: {idle_timeout: fast}", "websocket.idle_timeout"),
        ("websocket: {max_frame: 1}", "unknown key 'max_frame'"),
        ("routes: [{name: r, path: /r, upstream: a, websocket: {drain_timeout: 1s}}]", "unknown key 'drain_timeout'"),
    ],
)
def test_bad_values_are_refused_with_their_path(section, message):
    with pytest.raises(ConfigError) as error:
        load(section + ("\nroutes: [{name: r, path: /r, upstream: a}]" if not section.startswith("routes") else ""))
    assert message in str(error.value)


class Request:
    def __init__(self, method=b"GET", version=b"HTTP/1.1", body=None, **fields):
        self.method, self.version, self.body = method, version, body
        self.headers = Headers({name.replace("_", "-").encode(): [value] for name, value in fields.items()})


@pytest.mark.parametrize(
    "request_, expected",
    [
        (Request(Upgrade=b"websocket", Connection=b"Upgrade"), [b"websocket"]),
        (Request(Upgrade=b"WebSocket", Connection=b"keep-alive, upgrade"), [b"WebSocket"]),
        (Request(Upgrade=b"h2c", Connection=b"Upgrade, HTTP2-Settings"), None),
        (Request(Upgrade=b"websocket"), None),  # Connection must name upgrade
        (Request(method=b"POST", Upgrade=b"websocket", Connection=b"Upgrade"), None),
        (Request(version=b"HTTP/1.0", Upgrade=b"websocket", Connection=b"Upgrade"), None),
        (Request(body=object(), Upgrade=b"websocket", Connection=b"Upgrade"), None),
    ],
)
def test_what_is_a_websocket_handshake(request_, expected):
    assert websocket_upgrade(request_) == expected
